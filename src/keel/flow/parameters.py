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
                 required: bool = False, separator: str | None = None, show_default: bool = True,
                 **kwargs: Any):
        if not isinstance(name, str) or not name.replace("_", "a").replace("-", "a").isalnum():
            raise DefinitionError(f"Parameter name {name!r} must be letters, digits, '_' or '-'")
        if kwargs:
            raise DefinitionError(
                f"Parameter {name!r} has no argument {sorted(kwargs)[0]!r}; its arguments are: name, default, "
                f"type, help, required, separator, show_default")
        self.name = name
        self.attr = name.replace("-", "_")
        self._default = default
        sample = default() if callable(default) and not isinstance(default, ConfigExpr) else default
        if isinstance(sample, ConfigExpr):
            sample = None  # typed when the config is read; give type= to parse CLI values
        if separator is not None and isinstance(sample, (list, tuple)):
            sample = sample[0] if sample else ""
        self.type = type if type is not None else _infer_type(sample)
        if self.type not in _TYPE_NAMES:
            raise DefinitionError(f"Parameter {name!r}: type must be int, float, bool, str or JSONType, "
                                  f"not {getattr(self.type, '__name__', self.type)!r}")
        if separator is not None and (not isinstance(separator, str) or not separator):
            raise DefinitionError(f"Parameter {name!r}: separator must be a non-empty string, got {separator!r}")
        self.help = help or ""
        self.required = required
        self.separator = separator
        self.show_default = show_default
        self.kwargs: dict[str, Any] = {}

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
        if isinstance(self._default, ConfigExpr):
            return self._default  # evaluated once the run's configs are read (resolve_config_exprs)
        value = self._default() if callable(self._default) else self._default
        if isinstance(value, str) and (self.separator is not None or self.type not in (str,)):
            return self.parse(value)  # Metaflow parses a string default like a value given on the CLI
        return value

    def env_value(self) -> str | None:
        """The value from ``METAFLOW_RUN_<NAME>`` or ``KEEL_RUN_<NAME>`` (read when a run starts)."""
        import os

        key = self.name.upper().replace("-", "_")
        for prefix in ("KEEL_RUN_", "METAFLOW_RUN_"):
            value = os.environ.get(prefix + key)
            if value is not None:
                return value
        return None

    @property
    def type_name(self) -> str:
        return _TYPE_NAMES[self.type]

    def parse(self, text: str) -> Any:
        """The value of ``--name text``; ParameterError when it does not fit the type."""
        if self.separator is not None:
            return [self._parse_one(part) for part in text.split(self.separator)]
        return self._parse_one(text)

    def _parse_one(self, text: str) -> Any:
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
        except (ValueError, TypeError):
            example = {int: "5", float: "0.5", bool: "true", JSONType: "'{\"k\": 1}'"}.get(kind, "text")
            raise ParameterError(f"--{self.name} expects {self.type_name}, got {clip(text)} "
                                 f"(e.g. --{self.name} {example})") from None

    def resolve(self, raw: str | None) -> Any:
        """The parameter's value for a run: parsed from ``raw``, the environment, or the default."""
        if raw is None:
            raw = self.env_value()
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
            raw = self.env_value()
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
    return resolve_config_exprs(flow_cls, {p.attr: p.resolve(raw.get(name)) for name, p in params.items()})


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
    return resolve_config_exprs(flow_cls, out)


ParameterDefault = Callable[[], Any]


class ConfigValue(dict):  # type: ignore[type-arg]
    """A configuration as a read-only mapping whose keys are also attributes: ``self.config.model.lr``."""

    def __getattr__(self, name: str) -> Any:
        if name.startswith("__"):
            raise AttributeError(name)
        try:
            value = self[name]
        except KeyError:
            raise AttributeError(f"the configuration has no key {name!r}; its keys are: "
                                 f"{', '.join(map(str, self)) or 'none'}") from None
        return ConfigValue(value) if isinstance(value, dict) and not isinstance(value, ConfigValue) else value

    def __setattr__(self, name: str, value: Any) -> None:
        raise AttributeError("a configuration is read-only: it is frozen with the run")

    def _frozen(self, *args: Any, **kwargs: Any) -> Any:
        raise TypeError("a configuration is read-only: it is frozen with the run")

    __setitem__ = __delitem__ = update = pop = popitem = clear = setdefault = _frozen

    def __reduce__(self) -> Any:
        return (ConfigValue, (dict(self),))

    def to_dict(self) -> dict[str, Any]:
        plain: dict[str, Any] = json.loads(json.dumps(self))
        return plain


class Config(Parameter):
    """A configuration file read when the run starts and frozen with it, as Metaflow's ``Config``::

        config = Config("config", default="config.json")          # --config other.json picks another
        defaults = Config("defaults", default_value={"lr": 0.1})   # no file needed
        lr = Parameter("lr", default=config_expr("config.lr"))    # a parameter's default from it

    The value is a read-only mapping whose keys are also attributes (``self.config.lr``). The file
    is JSON unless ``parser`` (a callable taking the text) says otherwise.
    """

    def __init__(self, name: str, default: str | None = None, default_value: Any = None, help: str | None = None,
                 required: bool = False, parser: Callable[[str], Any] | None = None):
        super().__init__(name, default=default, type=str, help=help, required=required)
        if parser is not None and not callable(parser):
            raise DefinitionError(f"Config {name!r}: parser must be a callable taking the file's text")
        self.default_value = default_value
        self.parser = parser

    @property
    def type_name(self) -> str:
        return "a configuration file path"

    @property
    def default(self) -> Any:
        return self._default

    def parse(self, text: str) -> Any:
        path = Path(text).expanduser()
        try:
            content = path.read_text()
        except OSError as exc:
            raise ParameterError(f"--{self.name}: cannot read the configuration {text!r} ({exc.strerror}); "
                                 f"give the path of an existing file") from None
        try:
            value = self.parser(content) if self.parser else json.loads(content)
        except Exception as exc:  # noqa: BLE001 - the user's parser or bad JSON: say where
            raise ParameterError(f"--{self.name}: cannot parse the configuration {text!r}: "
                                 f"{type(exc).__name__}: {exc}") from None
        return _freeze(value)

    def resolve(self, raw: str | None) -> Any:
        if raw is None:
            raw = self.env_value()
        if raw is not None:
            return self.parse(raw)
        if self._default is not None:
            return self.parse(str(self._default))
        if self.default_value is not None:
            return _freeze(self.default_value)
        if self.required:
            raise ParameterError(f"--{self.name} is required: give a configuration file path")
        return None


def _freeze(value: Any) -> Any:
    return ConfigValue(value) if isinstance(value, dict) else value


class ConfigExpr:
    """``config_expr("config.model.lr")``: a value taken from a Config when the run starts."""

    def __init__(self, expression: str):
        parts = expression.split(".") if isinstance(expression, str) else []
        if not parts or not all(p.isidentifier() for p in parts):
            raise DefinitionError(f"config_expr({expression!r}): expected CONFIG.KEY.KEY..., e.g. 'config.lr'")
        self.expression = expression
        self.parts = parts

    def evaluate(self, configs: dict[str, Any]) -> Any:
        if self.parts[0] not in configs:
            raise ParameterError(f"config_expr({self.expression!r}): the flow has no Config {self.parts[0]!r}; "
                                 f"its configs are: {', '.join(configs) or 'none'}")
        value = configs[self.parts[0]]
        for key in self.parts[1:]:
            if not isinstance(value, dict) or key not in value:
                raise ParameterError(f"config_expr({self.expression!r}): the configuration has no key {key!r}")
            value = value[key]
        return value

    def __repr__(self) -> str:
        return f"config_expr({self.expression!r})"


def config_expr(expression: str) -> ConfigExpr:
    """A value read from a ``Config`` when the run starts: ``Parameter("lr", default=config_expr("config.lr"))``."""
    return ConfigExpr(expression)


def resolve_config_exprs(flow_cls: type, values: dict[str, Any]) -> dict[str, Any]:
    """Replace parameter values that are ``config_expr(...)`` by what the run's configs say."""
    params = flow_parameters(flow_cls).values()
    configs = {p.attr: values.get(p.attr) for p in params if isinstance(p, Config)}
    return {k: (v.evaluate(configs) if isinstance(v, ConfigExpr) else v) for k, v in values.items()}
