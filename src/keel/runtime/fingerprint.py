"""Code fingerprints for step caching: what a step's result can depend on, as stable hashes.

A step's fingerprint has named parts, so ``keel cache explain`` can say which one changed:

- ``code``: the step's normalised AST (docstrings dropped; comments and formatting never
  reach the AST) and, transitively, that of every function and class of the user's own code
  it reaches, through globals, module attributes (``helpers.clean``), closures and methods
  called on ``self``;
- ``globals``: module-level constants it reads (numbers, strings, tuples, frozen data, NumPy
  arrays by content), closure values and default arguments;
- ``decorators``: the settings of decorators that change results (not ``@resources``,
  ``@timeout``, ``@retry``, placement);
- ``python``: the Python minor version; ``packages``: versions of the packages its code
  imports.

A value that cannot be fingerprinted deterministically (an open file, a lock, an object
whose pickle changes between runs) makes the step uncacheable: :class:`Fingerprint` carries
the reason, naming the value. Fingerprints are memoised per process (functions by identity),
so a step's key costs microseconds after the first.
"""

from __future__ import annotations

import ast
import inspect
import io
import pickle
import sys
import sysconfig
import textwrap
import types
import weakref
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable

import xxhash

from keel.errors import Unfingerprintable


#: Bumped when the way keys are computed changes: an old entry then misses, never errors.
KEY_SCHEMA = 1

# Decorators that do not change what a step computes.
_NEUTRAL_DECORATORS = frozenset({"resources", "timeout", "retry", "ray", "kubernetes", "cache", "card"})
_STDLIB = {sysconfig.get_paths()["stdlib"], sysconfig.get_paths()["platstdlib"]}
_SITE = tuple(p for p in {sysconfig.get_paths()["purelib"], sysconfig.get_paths()["platlib"]} if p)


@dataclass(frozen=True)
class Fingerprint:
    """The parts of a step's code key. ``reason`` is set when the step cannot be cached."""

    parts: dict[str, str]
    reason: str | None = None
    packages: dict[str, str] = field(default_factory=dict)

    @property
    def cacheable(self) -> bool:
        return self.reason is None


def _h(*chunks: bytes | str) -> str:
    h = xxhash.xxh3_128()
    for c in chunks:
        h.update(c.encode() if isinstance(c, str) else c)
        h.update(b"\x00")
    return h.hexdigest()


def _is_user_file(path: str | None) -> bool:
    """True for the user's own source: not the standard library, site-packages or Keel."""
    if not path or path.startswith("<"):
        return False
    if any(path.startswith(p) for p in _STDLIB) or any(path.startswith(p) for p in _SITE):
        return False
    keel_root = __file__.rsplit("/runtime/", 1)[0]
    return not path.startswith(keel_root)


class _StripDocstrings(ast.NodeTransformer):
    def _strip(self, node: Any) -> Any:
        self.generic_visit(node)
        body = node.body
        if body and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant) \
                and isinstance(body[0].value.value, str):
            node.body = body[1:] or [ast.Pass()]
        return node

    visit_FunctionDef = visit_AsyncFunctionDef = visit_ClassDef = visit_Module = _strip


def normalised_ast(source: str) -> str:
    """The AST of ``source`` without docstrings, positions or decorators, as text."""
    tree = ast.parse(textwrap.dedent(source))
    tree = _StripDocstrings().visit(tree)
    for node in ast.walk(tree):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)) and node is tree.body[0]:
            node.decorator_list = []   # the step's own decorators are fingerprinted as settings
    return ast.dump(tree, annotate_fields=False, include_attributes=False)


def value_digest(value: Any, name: str) -> str:
    """A deterministic digest of a constant, or :class:`Unfingerprintable` naming it."""
    if value is None or isinstance(value, (bool, int, float, complex, str, bytes)):
        return _h(type(value).__name__, repr(value))
    if isinstance(value, (tuple, list, frozenset, set)):
        items = sorted(value, key=repr) if isinstance(value, (set, frozenset)) else value
        return _h(type(value).__name__, *(value_digest(v, f"{name}[{i}]") for i, v in enumerate(items)))
    if isinstance(value, dict):
        return _h("dict", *(value_digest(k, name) + value_digest(v, f"{name}[{k!r}]")
                            for k, v in sorted(value.items(), key=lambda kv: repr(kv[0]))))
    mod = type(value).__module__
    if mod == "numpy" and type(value).__name__ == "ndarray":
        if value.dtype.hasobject:
            raise Unfingerprintable(f"{name} is a NumPy array of Python objects")
        return _h("ndarray", str(value.dtype), repr(value.shape), value.tobytes())
    if mod.startswith("numpy"):
        return _h(type(value).__name__, repr(value))
    if isinstance(value, (io.IOBase, types.GeneratorType)) or hasattr(value, "acquire"):
        raise Unfingerprintable(f"{name} is a {type(value).__name__}, which has no stable value")
    try:
        first = pickle.dumps(value, protocol=4)
        if pickle.dumps(value, protocol=4) != first:
            raise Unfingerprintable(f"{name} ({type(value).__name__}) pickles differently each time")
    except Unfingerprintable:
        raise
    except Exception as exc:  # noqa: BLE001 - any pickling failure means "no stable value"
        raise Unfingerprintable(f"{name} ({type(value).__name__}) cannot be pickled: {exc}") from None
    return _h("pickle", first)


def _top_package(module: types.ModuleType) -> str | None:
    name = getattr(module, "__name__", "") or ""
    return name.split(".", 1)[0] or None


def package_version(top: str) -> str | None:
    from importlib import metadata

    dists = _packages_distributions().get(top)
    for dist in dists or [top]:
        try:
            return f"{dist}=={metadata.version(dist)}"
        except metadata.PackageNotFoundError:
            continue
    return None


_PKG_DISTS: dict[str, list[str]] | None = None


def _packages_distributions() -> dict[str, list[str]]:
    global _PKG_DISTS
    if _PKG_DISTS is None:
        from importlib import metadata

        _PKG_DISTS = dict(metadata.packages_distributions())
    return _PKG_DISTS


class _Walker:
    """Collects the code and values a function reaches, transitively."""

    def __init__(self) -> None:
        self.code: dict[str, str] = {}       # qualified name -> AST digest
        self.values: dict[str, str] = {}     # name -> value digest
        self.packages: dict[str, str] = {}   # top-level package -> "dist==version"
        self._seen: set[int] = set()

    def function(self, fn: Callable[..., Any], label: str, owner: type | None = None) -> None:
        fn = inspect.unwrap(fn)
        if id(fn) in self._seen or not isinstance(fn, types.FunctionType):
            return
        self._seen.add(id(fn))
        if not _is_user_file(fn.__code__.co_filename):
            self._package_of(fn)
            return
        try:
            self.code[label] = _h(normalised_ast(inspect.getsource(fn)))
        except (OSError, TypeError, SyntaxError):
            self.code[label] = _h(fn.__code__.co_code, repr(fn.__code__.co_consts))
        for i, default in enumerate(fn.__defaults__ or ()):
            self.values[f"{label}.default[{i}]"] = self._value(default, f"default argument {i} of {label}")
        for k, default in sorted((fn.__kwdefaults__ or {}).items()):
            self.values[f"{label}.default[{k}]"] = self._value(default, f"default argument {k} of {label}")
        for cname, cell in zip(fn.__code__.co_freevars, fn.__closure__ or ()):
            try:
                val = cell.cell_contents
            except ValueError:
                continue
            self._reach(val, f"{label}.<closure {cname}>", f"closure value {cname!r} of {label}")
        self._names(fn, fn.__code__, label, owner)

    def _names(self, fn: types.FunctionType, code: types.CodeType, label: str, owner: type | None) -> None:
        g = fn.__globals__
        builtins = g.get("__builtins__", {})
        for name in code.co_names:
            if name in g:
                val = g[name]
                if isinstance(val, types.ModuleType):
                    self._module_attrs(val, code, name)
                else:
                    self._reach(val, name, f"module-level {name!r} read by {label}")
            elif owner is not None and hasattr(owner, name):
                # self.helper(...) or self.CONST: methods and class attributes of the flow
                attr = inspect.getattr_static(owner, name)
                if isinstance(attr, (staticmethod, classmethod)):
                    attr = attr.__func__
                if isinstance(attr, types.FunctionType):
                    if not getattr(attr, "_keel_step", False):
                        self.function(attr, f"{owner.__name__}.{name}", owner)
                elif not isinstance(attr, (property, types.MemberDescriptorType)) and name not in vars(object):
                    if not _is_parameter(attr):
                        self.values[f"{owner.__name__}.{name}"] = self._value(attr, f"class attribute {name!r}")
            elif isinstance(builtins, dict) and name in builtins:
                continue
        for const in code.co_consts:
            if isinstance(const, types.CodeType):
                self._names(fn, const, label, owner)

    def _module_attrs(self, module: types.ModuleType, code: types.CodeType, alias: str) -> None:
        path = getattr(module, "__file__", None)
        if not _is_user_file(path):
            self._package_of(module)
            return
        # a user module: fingerprint the attributes the code names (helpers.clean -> clean)
        for name in code.co_names:
            if name != alias and hasattr(module, name):
                self._reach(getattr(module, name), f"{module.__name__}.{name}",
                            f"{module.__name__}.{name}")

    def _reach(self, val: Any, label: str, what: str) -> None:
        if isinstance(val, types.FunctionType):
            self.function(val, label)
        elif isinstance(val, type):
            self._class(val, label)
        elif isinstance(val, types.ModuleType):
            self._package_of(val)
        elif isinstance(val, (types.BuiltinFunctionType, types.MethodType)) or callable(val) and not _is_data(val):
            self._package_of(val)
        else:
            self.values[label] = self._value(val, what)

    def _class(self, cls: type, label: str) -> None:
        if id(cls) in self._seen:
            return
        self._seen.add(id(cls))
        try:
            src_file = inspect.getsourcefile(cls)
        except TypeError:
            src_file = None
        if not _is_user_file(src_file):
            self._package_of(cls)
            return
        try:
            self.code[label] = _h(normalised_ast(inspect.getsource(cls)))
        except (OSError, TypeError, SyntaxError):
            self.code[label] = _h(label)
        for name, attr in vars(cls).items():
            if isinstance(attr, (staticmethod, classmethod)):
                attr = attr.__func__
            if isinstance(attr, types.FunctionType):
                self.function(attr, f"{label}.{name}", cls)

    def _package_of(self, obj: Any) -> None:
        mod = obj if isinstance(obj, types.ModuleType) else sys.modules.get(getattr(obj, "__module__", "") or "")
        if mod is None:
            return
        top = _top_package(mod)
        if not top or top in self.packages or top in sys.stdlib_module_names or top in ("builtins", "keel"):
            return
        version = package_version(top)
        if version:
            self.packages[top] = version

    def _value(self, val: Any, what: str) -> str:
        return value_digest(val, what)


def _is_parameter(attr: Any) -> bool:
    return type(attr).__name__ in ("Parameter", "IncludeFile", "Config")


def _is_data(val: Any) -> bool:
    return type(val).__module__.startswith("numpy")


_MEMO: "weakref.WeakKeyDictionary[type, dict[tuple[str, tuple[str, ...]], Fingerprint]]" = weakref.WeakKeyDictionary()


def step_fingerprint(flow_cls: type, step_name: str, decorators: Iterable[Any] = (),
                     ignore: Iterable[str] = ()) -> Fingerprint:
    """The fingerprint of ``flow_cls.step_name`` (memoised per class and step in this process).

    ``decorators`` are the step's :class:`~keel.flow.decorators.StepDecorator` records;
    ``ignore`` names globals, closure values or helpers to leave out of the key.
    """
    memo = _MEMO.setdefault(flow_cls, {})
    memo_key = (step_name, tuple(sorted(ignore)))
    hit = memo.get(memo_key)
    if hit is not None:
        return hit
    fn = getattr(flow_cls, step_name)
    walker = _Walker()
    reason = None
    try:
        walker.function(fn, f"{flow_cls.__name__}.{step_name}", flow_cls)
    except Unfingerprintable as exc:
        reason = str(exc)
    skip = set(ignore)
    code = {k: v for k, v in walker.code.items() if k.rsplit(".", 1)[-1] not in skip and k not in skip}
    values = {k: v for k, v in walker.values.items()
              if k.rsplit(".", 1)[-1] not in skip and k not in skip and k.split(".<closure ", 1)[-1].rstrip(">") not in skip}
    settings = {d.name: {k: v for k, v in d.attributes.items()} for d in decorators
                if d.name not in _NEUTRAL_DECORATORS}
    try:
        deco_digest = value_digest(settings, "decorator settings")
    except Unfingerprintable as exc:
        reason, deco_digest = reason or str(exc), ""
    parts = {
        "schema": str(KEY_SCHEMA),
        "code": _h(*(f"{k}={v}" for k, v in sorted(code.items()))),
        "globals": _h(*(f"{k}={v}" for k, v in sorted(values.items()))),
        "decorators": deco_digest,
        "python": f"{sys.version_info.major}.{sys.version_info.minor}",
        "packages": _h(*(f"{k}={v}" for k, v in sorted(walker.packages.items()))),
    }
    result = Fingerprint(parts=parts, reason=reason, packages=dict(sorted(walker.packages.items())))
    memo[memo_key] = result
    return result


def combine(parts: dict[str, str]) -> str:
    """One key from named parts (order-independent)."""
    return _h(*(f"{k}={v}" for k, v in sorted(parts.items())))
