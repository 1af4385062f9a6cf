"""``config_expr``: a value read from the run's configurations when it starts.

Apart from :mod:`keel.flow.parameters` so that ``@step`` and the decorators can recognise one
without importing more than the errors (a flow file named like a standard module, ``json.py``,
must get as far as Keel's message that refuses it).
"""

from __future__ import annotations

from typing import Any

from keel.errors import DefinitionError, ParameterError


class ConfigExpr:
    """A value taken from the run's configs when it starts, as Metaflow's ``config_expr``.

    ``config_expr("config.model.lr")`` walks keys; any other Python expression over the configs'
    names (``config_expr("cfg.cpu * 2")``) is evaluated. ``config.lr`` on a ``Config`` in the class
    body makes the same thing, so ``@timeout(seconds=config.timeout)`` works as in Metaflow. It is
    usable in a Parameter's default and in step decorator arguments; nothing is read until the run
    starts. Attribute access chains (``config.model.lr``), so its own names are all private.
    """

    def __init__(self, expression: str):
        if not isinstance(expression, str):
            raise DefinitionError(f"config_expr({expression!r}): expected a string, e.g. 'config.lr'")
        parts = expression.split(".")
        self._expression = expression
        self._parts = parts if all(p.isidentifier() for p in parts) else None
        self._code: Any = None
        if self._parts is None:
            import ast

            try:
                self._code = compile(ast.parse(expression.strip(), mode="eval"), "<config_expr>", "eval")
            except SyntaxError as exc:
                raise DefinitionError(f"config_expr({expression!r}): not a Python expression ({exc.msg}); "
                                      f"expected e.g. 'config.lr' or 'config.cpu * 2'") from None

    def __getattr__(self, name: str) -> ConfigExpr:
        if name.startswith("_"):
            raise AttributeError(name)
        return ConfigExpr(f"{self._expression}.{name}")

    def __getitem__(self, key: str) -> ConfigExpr:
        if not isinstance(key, str) or not key.isidentifier():
            raise DefinitionError(f"{self!r}[{key!r}]: only identifier keys can be taken from a config "
                                  f"in a decorator; use config_expr(...) for others")
        return ConfigExpr(f"{self._expression}.{key}")

    def __repr__(self) -> str:
        return f"config_expr({self._expression!r})"


def evaluate_config_expr(expr: ConfigExpr, configs: dict[str, Any]) -> Any:
    """The value of ``expr`` given the run's configs by name; ParameterError when it does not fit."""
    text = expr._expression
    if expr._parts is not None:
        if expr._parts[0] not in configs:
            raise ParameterError(f"config_expr({text!r}): the flow has no Config {expr._parts[0]!r}; "
                                 f"its configs are: {', '.join(configs) or 'none'}")
        value = configs[expr._parts[0]]
        for key in expr._parts[1:]:
            if not isinstance(value, dict) or key not in value:
                raise ParameterError(f"config_expr({text!r}): the configuration has no key {key!r}")
            value = value[key]
        return value
    import builtins

    assert expr._code is not None
    try:
        return eval(expr._code, {"__builtins__": builtins}, dict(configs))  # noqa: S307 - the flow's own code
    except Exception as exc:  # noqa: BLE001 - the user's expression: say which and why
        raise ParameterError(f"config_expr({text!r}) failed: {type(exc).__name__}: {exc}") from None


def bind_configs(value: Any, configs: dict[str, Any]) -> Any:
    """``value`` with every ConfigExpr in it (also inside dicts, lists and tuples) evaluated."""
    if isinstance(value, ConfigExpr):
        return evaluate_config_expr(value, configs)
    if isinstance(value, dict):
        return {k: bind_configs(v, configs) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return type(value)(bind_configs(v, configs) for v in value)
    return value


def has_config_expr(value: Any) -> bool:
    """Whether ``value`` holds a ConfigExpr (also inside dicts, lists and tuples)."""
    if isinstance(value, ConfigExpr):
        return True
    if isinstance(value, dict):
        return any(has_config_expr(v) for v in value.values())
    if isinstance(value, (list, tuple)):
        return any(has_config_expr(v) for v in value)
    return False


def config_expr(expression: str) -> ConfigExpr:
    """A value read from a ``Config`` when the run starts: ``Parameter("lr", default=config_expr("config.lr"))``,
    ``@resources(cpu=config_expr("config.cpu"))``."""
    return ConfigExpr(expression)
