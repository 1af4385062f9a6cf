"""The exception tree: one module, every class raised somewhere, none defined elsewhere."""

from __future__ import annotations

import ast
import inspect
from pathlib import Path

import keel
import keel.errors

SRC = Path(keel.__file__).parent


def _trees() -> list[tuple[Path, ast.Module]]:
    return [(p, ast.parse(p.read_text(encoding="utf-8"), str(p))) for p in sorted(SRC.rglob("*.py"))]


def _names(node: ast.AST) -> set[str]:
    return {n.id for n in ast.walk(node) if isinstance(n, ast.Name)} | \
           {n.attr for n in ast.walk(node) if isinstance(n, ast.Attribute)}


def _raised_names() -> set[str]:
    """Names inside `raise ...` statements, and the return types of functions that build an
    exception for a caller to raise (`raise self._corrupted(...)`)."""
    raised: set[str] = set()
    for _, tree in _trees():
        for node in ast.walk(tree):
            if isinstance(node, ast.Raise) and node.exc is not None:
                raised |= _names(node.exc)
            elif isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and node.returns is not None \
                    and _builds_exception(node):
                raised |= _names(node.returns)
    return raised


def _builds_exception(fn: ast.FunctionDef | ast.AsyncFunctionDef) -> bool:
    """A factory: it returns a call whose callee is an exception class of keel.errors."""
    classes = _error_classes()
    for node in ast.walk(fn):
        if isinstance(node, ast.Return) and isinstance(node.value, ast.Call):
            if _names(node.value.func) & classes.keys():
                return True
        if isinstance(node, ast.Assign) and isinstance(node.value, ast.Call) and \
                _names(node.value.func) & classes.keys():
            return True
    return False


def _error_classes() -> dict[str, type[BaseException]]:
    return {name: obj for name, obj in vars(keel.errors).items()
            if inspect.isclass(obj) and issubclass(obj, BaseException) and obj.__module__ == "keel.errors"
            and not name.startswith("_")}


def test_every_error_class_is_raised_or_is_the_base_of_one_that_is() -> None:
    raised = _raised_names()
    classes = _error_classes()
    assert len(classes) > 10
    never = [name for name, cls in classes.items()
             if not any(name_ in raised and issubclass(other, cls) for name_, other in classes.items())]
    assert never == [], f"classes in keel/errors.py never raised (raise them where they fit, or delete them): {never}"


def test_no_exception_class_is_defined_outside_errors_py() -> None:
    import builtins

    exception_bases = {"Exception", "BaseException"} | set(_error_classes()) | \
        {n for n in dir(builtins) if n.endswith(("Error", "Exception"))}
    outside = []
    for path, tree in _trees():
        if path.name == "errors.py" and path.parent == SRC:
            continue
        for node in ast.walk(tree):
            if isinstance(node, ast.ClassDef) and any(_names(b) & exception_bases for b in node.bases):
                outside.append(f"{path.relative_to(SRC.parent)}:{node.lineno}: class {node.name}")
    assert outside == [], "exception classes belong in keel/errors.py:\n" + "\n".join(outside)


def test_no_bare_keel_error_is_raised() -> None:
    bare = []
    for path, tree in _trees():
        for node in ast.walk(tree):
            if isinstance(node, ast.Raise) and isinstance(node.exc, ast.Call) and \
                    isinstance(node.exc.func, ast.Name) and node.exc.func.id == "KeelError":
                bare.append(f"{path.relative_to(SRC.parent)}:{node.lineno}")
    assert bare == [], f"raise a specific subclass of KeelError, not KeelError itself: {bare}"


def test_the_docstring_draws_every_class() -> None:
    doc = keel.errors.__doc__ or ""
    missing = [name for name in _error_classes() if name not in doc]
    assert missing == [], f"add these to the tree in keel/errors.py's docstring: {missing}"


def test_old_import_paths_still_work() -> None:
    from keel.runtime.parallel import ParallelMapError, WorkerDied
    from keel.serve.model import BadInput
    from keel.store.serializers import SerializationError
    from keel.ui.data import NotFound

    assert (ParallelMapError, WorkerDied, BadInput, SerializationError, NotFound) == (
        keel.errors.ParallelMapError, keel.errors.WorkerDied, keel.errors.BadInput,
        keel.errors.SerializationError, keel.errors.NotFoundError)
