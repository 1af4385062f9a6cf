"""``@step`` and the step decorators (``@resources``, ``@retry``, ``@catch``, ...).

A decorator records a :class:`StepDecorator` on the function; nothing runs at decoration
time except argument checks. Decorators may sit above or below ``@step``::

    @resources(memory=4096, cpu=1)
    @retry(times=2, minutes_between_retries=0)
    @step
    def train(self): ...
"""

from __future__ import annotations

import functools
import inspect
from dataclasses import dataclass, field
from typing import Any, Callable, ClassVar, TypeVar

from keel.errors import DefinitionError

F = TypeVar("F", bound=Callable[..., Any])

_DECORATORS_ATTR = "_keel_decorators"


@dataclass
class StepDecorator:
    """A decorator's name and arguments, as attached to a step function."""

    name: ClassVar[str] = ""
    attributes: dict[str, Any] = field(default_factory=dict)
    file: str = ""
    line: int = 0

    def __getattr__(self, item: str) -> Any:
        try:
            return self.__dict__["attributes"][item]
        except KeyError:
            raise AttributeError(item) from None


def step(func: F) -> F:
    """Mark a method of a FlowSpec as a step. Steps are linked with ``self.next(...)``."""
    func._keel_step = True  # type: ignore[attr-defined]
    if not hasattr(func, _DECORATORS_ATTR):
        setattr(func, _DECORATORS_ATTR, [])
    return func


def step_decorators(func: Callable[..., Any]) -> list[StepDecorator]:
    """The decorators recorded on a step function, outermost first."""
    return list(getattr(func, _DECORATORS_ATTR, []))


def find_decorator(func: Callable[..., Any], name: str) -> StepDecorator | None:
    for deco in step_decorators(func):
        if deco.name == name:
            return deco
    return None


def _where(func: Callable[..., Any]) -> tuple[str, int]:
    try:
        return inspect.getsourcefile(func) or "?", func.__code__.co_firstlineno
    except (TypeError, AttributeError):
        return "?", 0


def _number(deco: str, key: str, value: Any, *, minimum: float = 0) -> float:
    if key in ("memory", "disk") and isinstance(value, str):  # "512M", "2G": the same parser as keel.yaml
        from keel.flow.sizes import parse_size

        try:
            return parse_size(value)
        except ValueError as exc:
            raise DefinitionError(f"@{deco}({key}={value!r}): {exc}") from None
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        try:
            value = float(value)
        except (TypeError, ValueError):
            raise DefinitionError(
                f"@{deco}({key}={value!r}): expected a number, found {type(value).__name__}"
            ) from None
    if value < minimum:
        raise DefinitionError(f"@{deco}({key}={value!r}): must be at least {minimum}")
    number: float = value  # an int stays an int: it is shown as written
    return number


def _make(name: str, defaults: dict[str, Any], numeric: tuple[str, ...] = (),
          choices: dict[str, tuple[Any, ...]] | None = None) -> Callable[..., Any]:
    cls = type(name.capitalize() + "Decorator", (StepDecorator,), {"name": name})

    def decorator(*args: Any, **kwargs: Any) -> Any:
        if args and callable(args[0]) and len(args) == 1 and not kwargs:
            return decorator()(args[0])  # bare @retry
        if args:
            raise DefinitionError(f"@{name} takes keyword arguments only, e.g. @{name}({next(iter(defaults))}=...)")
        unknown = sorted(set(kwargs) - set(defaults))
        if unknown:
            raise DefinitionError(
                f"@{name} has no argument {unknown[0]!r}; its arguments are: {', '.join(defaults)}"
            )
        attrs = {**defaults, **kwargs}
        for key in numeric:
            if attrs[key] is not None:
                attrs[key] = _number(name, key, attrs[key])
        for key, allowed in (choices or {}).items():
            if attrs[key] not in allowed:
                raise DefinitionError(f"@{name}({key}={attrs[key]!r}): expected one of "
                                      f"{', '.join(repr(a) for a in allowed)}")

        def attach(func: F) -> F:
            file, line = _where(func)
            decos = getattr(func, _DECORATORS_ATTR, None)
            if decos is None:
                decos = []
                setattr(func, _DECORATORS_ATTR, decos)
            if name == "card":  # several cards on one step, as in Metaflow, each with its own id
                if any(d.name == name and d.attributes.get("id") == attrs.get("id") for d in decos):
                    raise DefinitionError(f"{file}:{line}: step {func.__name__!r} has two @card with id "
                                          f"{attrs.get('id')!r}; give each card its own id=")
            elif any(d.name == name for d in decos):
                raise DefinitionError(f"{file}:{line}: @{name} is applied twice to step {func.__name__!r}")
            decos.insert(0, cls(attributes=attrs, file=file, line=line))
            return func

        return attach

    decorator.__name__ = name
    decorator.__qualname__ = name
    return functools.wraps(decorator)(decorator)


resources = _make("resources", {"cpu": 1, "memory": 4096, "disk": 10240, "gpu": 0},
                  ("cpu", "memory", "disk", "gpu"))
resources.__doc__ = """Declare what a step needs: ``cpu`` cores, ``memory`` and ``disk`` in MB, ``gpu`` count.

Locally this is a budget: tasks run side by side only while the machine's cores and
memory allow, and a step that asks for more than the machine has is refused before the run.
"""

retry = _make("retry", {"times": 3, "minutes_between_retries": 2}, ("times", "minutes_between_retries"))
retry.__doc__ = """Run a failed task again, up to ``times`` more attempts, waiting between them."""

catch = _make("catch", {"var": None, "print_exception": True})
catch.__doc__ = """Keep going when the step fails for good: the exception is stored in artifact ``var``."""

timeout = _make("timeout", {"seconds": 0, "minutes": 0, "hours": 0}, ("seconds", "minutes", "hours"))
timeout.__doc__ = """Fail an attempt that runs longer than seconds + minutes + hours (retries apply)."""

environment = _make("environment", {"vars": {}})
environment.__doc__ = """Set environment variables for the step's tasks: ``@environment(vars={"K": "v"})``."""

ray = _make("ray", {"cpu": None, "memory": None, "gpu": None, "address": None, "resources": None}, ())
ray.__doc__ = """Run this step's tasks on a Ray cluster, the rest of the flow staying local.

``cpu`` cores, ``memory`` MB and ``gpu`` count become Ray's ``num_cpus``, ``memory`` and
``num_gpus`` (defaults: ``@resources``, then one core); ``resources={"name": amount}`` asks for
custom Ray resources; ``address`` names the cluster (else ``--with ray:address=``,
``KEEL_RAY_ADDRESS``, then a running local cluster)."""

kubernetes = _make("kubernetes", {"cpu": 1, "memory": 4096, "disk": 10240, "gpu": 0, "image": None,
                                  "namespace": "default", "service_account": None}, ())
kubernetes.__doc__ = """Run this step's tasks as Kubernetes Jobs."""

cache = _make("cache", {"key": None, "version": None, "ignore": (), "behavior": "default"}, (),
               {"behavior": ("default", "recompute", "disable")})
cache.__doc__ = """Reuse this step's outputs from an earlier run when nothing they depend on changed.

The key is the step's code (normalised, so comments and formatting do not count) and the
code it reaches, the constants and closure values it reads, decorator settings, parameters,
input artifacts, files it reads and package versions. ``version`` forces a new key,
``ignore`` leaves named globals out, ``key`` adds inputs Keel cannot see (a value or a
zero-argument callable), ``behavior="recompute"`` always runs, ``"disable"`` never caches."""


def project(*args: Any, name: str | None = None) -> Callable[[type], type]:
    """Put a flow in a project, as Metaflow's ``@project(name="weather")``: runs carry the project
    and its branch (``user.NAME``; ``--branch B`` makes ``test.B``, ``--production`` ``prod``) in
    ``current`` and in their system tags, so branches of one flow stay apart."""
    import re

    if args or not isinstance(name, str) or not re.match(r"^[a-z0-9_]{1,128}$", name):
        raise DefinitionError(f"@project takes name=, lowercase letters, digits and '_', e.g. "
                              f"@project(name='weather'); got {(args[0] if args else name)!r}")

    def attach(flow_cls: type) -> type:
        flow_cls._keel_project = name  # type: ignore[attr-defined]
        return flow_cls

    return attach


card = _make("card", {"type": "default", "id": None, "options": {}, "timeout": 45, "save_errors": True})
card.__doc__ = """Make an HTML card for each task of the step: ``type="default"`` shows the parameters,
artifacts and the graph, then what ``current.card.append(...)`` added; ``type="blank"`` only the
latter. Read it with ``keel card view FLOW/RUN/STEP`` or ``task.cards``."""


def timeout_seconds(deco: StepDecorator | None) -> float | None:
    """The total of a @timeout decorator in seconds, or None when there is no limit."""
    if deco is None:
        return None
    total = deco.seconds + 60 * deco.minutes + 3600 * deco.hours
    return total or None


spark = _make("spark", {"workers": 1, "worker_cores": 1, "worker_memory": "1g", "master": None},
              ("workers", "worker_cores"))
spark.__doc__ = """Give this step a Spark cluster: ``current.spark`` is a session on it.

``workers`` standalone workers of ``worker_cores`` cores and ``worker_memory`` each (started
from pyspark's own jars on 127.0.0.1 for the task, stopped after it, also when it fails);
``master="spark://host:7077"`` uses an existing cluster, ``master="local[2]"`` runs in the task."""
