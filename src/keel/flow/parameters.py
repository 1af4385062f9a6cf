"""Run parameters: ``Parameter`` (typed from its default) and ``IncludeFile``.

A parameter is a read-only artifact of every task of the run::

    class Train(FlowSpec):
        alpha = Parameter("alpha", default=0.5, help="learning rate")   # --alpha 0.1
        layers = Parameter("layers", default=[64, 64])                   # JSON: --layers '[8]'
        data = IncludeFile("data", default="movies.csv")                 # the file's text
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Callable

from keel.errors import DefinitionError, ParameterError, clip


class JSONType:
    """Marks a parameter whose value is parsed as JSON (the default for dict and list defaults)."""

    name = "JSON"


_TYPE_NAMES = {int: "an integer", float: "a number", bool: "true or false", str: "a string",
               JSONType: "JSON"}


def _infer_type(default: Any) -> type:
    if isinstance(default, bool):
        return bool
    if isinstance(default, int):
        return int
    if isinstance(default, float):
        return float
    if isinstance(default, (dict, list)):
        return JSONType
    return str


class Parameter:
    """A value given on the command line (``--name VALUE``), typed from ``default`` or ``type``."""

    def __init__(self, name: str, default: Any = None, type: type | None = None, help: str | None = None,
                 required: bool = False, **kwargs: Any):
        if not isinstance(name, str) or not name.replace("_", "a").replace("-", "a").isalnum():
            raise DefinitionError(f"Parameter name {name!r} must be letters, digits, '_' or '-'")
        self.name = name
        self.attr = name.replace("-", "_")
        self._default = default
        self.type = type if type is not None else _infer_type(default() if callable(default) else default)
        if self.type not in _TYPE_NAMES:
            raise DefinitionError(f"Parameter {name!r}: type must be int, float, bool, str or JSONType, "
                                  f"not {getattr(self.type, '__name__', self.type)!r}")
        self.help = help or ""
        self.required = required
        self.kwargs = kwargs

    def __set_name__(self, owner: type, attr: str) -> None:
        self.attr = attr

    def __get__(self, obj: Any, owner: type | None = None) -> Any:
        if obj is None:
            return self
        return obj._keel_artifact(self.attr)

    def __set__(self, obj: Any, value: Any) -> None:
        raise AttributeError(f"parameter {self.name!r} is read-only inside a run; "
                             f"set it on the command line with --{self.name}")

    @property
    def default(self) -> Any:
        return self._default() if callable(self._default) else self._default

    @property
    def type_name(self) -> str:
        return _TYPE_NAMES[self.type]

    def parse(self, text: str) -> Any:
        """The value of ``--name text``; ParameterError when it does not fit the type."""
        kind = self.type
        try:
            if kind is bool:
                low = text.strip().lower()
                if low in ("true", "1", "yes", "y", "on"):
                    return True
                if low in ("false", "0", "no", "n", "off"):
                    return False
                raise ValueError(text)
            if kind is JSONType:
                return json.loads(text)
            return kind(text)
        except ValueError:
            example = {int: "5", float: "0.5", bool: "true", JSONType: "'{\"k\": 1}'"}.get(kind, "text")
            raise ParameterError(f"--{self.name} expects {self.type_name}, got {clip(text)} "
                                 f"(e.g. --{self.name} {example})") from None

    def resolve(self, raw: str | None) -> Any:
        """The parameter's value for a run: parsed from ``raw`` or the default."""
        if raw is None:
            if self.required and self._default is None:
                raise ParameterError(f"--{self.name} is required ({self.help or self.type_name})")
            return self.default
        return self.parse(raw)


class IncludeFile(Parameter):
    """A parameter whose value is a file's content, kept with the run so it can be reproduced.

    ``--name path`` picks another file; the text (or bytes with ``is_text=False``) is the value.
    """

    def __init__(self, name: str, default: str | None = None, is_text: bool = True,
                 encoding: str = "utf-8", help: str | None = None, required: bool = False):
        super().__init__(name, default=default, type=str, help=help, required=required)
        self.is_text = is_text
        self.encoding = encoding

    @property
    def type_name(self) -> str:
        return "a file path"

    def parse(self, text: str) -> Any:
        path = Path(text).expanduser()
        try:
            data = path.read_bytes()
        except OSError as exc:
            raise ParameterError(f"--{self.name}: cannot read {clip(text, 200)} ({exc.strerror}); "
                                 f"give the path of an existing file") from None
        return data.decode(self.encoding) if self.is_text else data

    def resolve(self, raw: str | None) -> Any:
        if raw is None:
            if self._default is None:
                if self.required:
                    raise ParameterError(f"--{self.name} is required: give a file path")
                return None
            return self.parse(str(self.default))
        return self.parse(raw)


def flow_parameters(flow_cls: type) -> dict[str, Parameter]:
    """The flow's parameters by CLI name, in definition order (base classes first)."""
    found: dict[str, Parameter] = {}
    for klass in reversed(flow_cls.__mro__):
        for value in vars(klass).values():
            if isinstance(value, Parameter):
                found[value.name] = value
    return found


def as_text(value: Any) -> str:
    """A value as it is written on a command line (``true``, JSON for lists and dicts)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (dict, list)):
        return json.dumps(value)
    return str(value)


def resolve_parameters(flow_cls: type, given: dict[str, Any]) -> dict[str, Any]:
    """Values for every parameter of the run from values as written on a command line (a project
    job's ``params:``, a sweep trial): each parsed by its Parameter, defaults for the rest. Names
    may use ``-`` or ``_``; an unknown one is a ParameterError that lists the flow's parameters."""
    params = flow_parameters(flow_cls)
    by_attr = {p.attr: p for p in params.values()}
    raw: dict[str, str] = {}
    for key, value in given.items():
        p = params.get(key) or by_attr.get(key) or params.get(key.replace("_", "-")) or by_attr.get(key.replace("-", "_"))
        if p is None:
            import difflib

            hint = difflib.get_close_matches(key, list(params), n=1)
            known = ", ".join(f"--{n}" for n in params) or "none"
            guess = f" Did you mean --{hint[0]}?" if hint else ""
            raise ParameterError(f"unknown parameter --{key}.{guess} The flow's parameters are: {known}")
        raw[p.name] = as_text(value)
    return {p.attr: p.resolve(raw.get(name)) for name, p in params.items()}


def defaults_or_given(flow_cls: type, given: dict[str, Any]) -> dict[str, Any]:
    """Parameter values from Python (e.g. a project job's params): names checked, strings parsed."""
    params = flow_parameters(flow_cls)
    by_attr = {p.attr: p for p in params.values()}
    unknown = [k for k in given if k not in params and k not in by_attr]
    if unknown:
        known = ", ".join(params) or "none"
        raise ParameterError(f"unknown parameter {clip(unknown[0])}; the flow's parameters are: {known}")
    out: dict[str, Any] = {}
    for name, p in params.items():
        value = given.get(name, given.get(p.attr))
        if isinstance(value, str) and p.type is not str:
            value = p.parse(value)
        out[p.attr] = p.resolve(None) if value is None else value
    return out


ParameterDefault = Callable[[], Any]
