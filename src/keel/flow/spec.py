"""``FlowSpec``: the base class of a pipeline.

A flow is a class whose ``@step`` methods are linked by ``self.next(...)``. Every public
attribute set in a step becomes an artifact that later steps see. Running the file
(``python flow.py run``) happens through the constructor, as in Metaflow::

    if __name__ == "__main__":
        MyFlow()

Inside a task the runtime gives the instance a *state* object that loads artifacts lazily
and records what the step sets; this module only defines the interface it uses, so the
flow package stays free of I/O.
"""

from __future__ import annotations

from typing import Any, Iterable, Iterator, Protocol

from keel.errors import DefinitionError


class ArtifactState(Protocol):
    """What a FlowSpec instance reads and writes its artifacts through (given by the runtime)."""

    def get(self, name: str) -> Any: ...
    def set(self, name: str, value: Any) -> None: ...
    def names(self) -> list[str]: ...
    def merge(self, inputs: list["FlowSpec"], include: list[str] | None, exclude: list[str] | None) -> None: ...


class ForeachFrame:
    """One level of foreach: which split this task is, of how many, and its item."""

    __slots__ = ("step", "var", "index", "num_splits", "_value", "_load")

    def __init__(self, step: str, var: str, index: int, num_splits: int, load: Any = None):
        self.step, self.var, self.index, self.num_splits = step, var, index, num_splits
        self._load = load
        self._value: Any = _UNSET

    @property
    def value(self) -> Any:
        if self._value is _UNSET:
            self._value = self._load() if self._load is not None else None
        return self._value

    def __repr__(self) -> str:
        return f"ForeachFrame({self.step}.{self.var}[{self.index}] of {self.num_splits})"


_UNSET = object()

_RESERVED = frozenset({
    "next", "input", "index", "foreach_stack", "merge_artifacts", "name", "script_name",
})


class FlowSpec:
    """Base class of a flow. Subclass it, add ``@step`` methods, call ``MyFlow()`` in __main__."""

    # Set by the runtime on instances used inside a task.
    _keel_state: ArtifactState | None = None
    _keel_frames: tuple[ForeachFrame, ...] = ()
    _keel_transition: tuple[tuple[str, ...], str | None] | None = None
    _keel_step: str | None = None

    def __init__(self, use_cli: bool = True):
        if use_cli:  # `python flow.py COMMAND`: the CLI, found by name (flow/ imports no upper layer)
            import importlib

            importlib.import_module("keel.cli.flow_cli").run_flow_cli(type(self))

    # -- artifacts --------------------------------------------------------------------
    def _keel_artifact(self, name: str) -> Any:
        state = self.__dict__.get("_keel_state")
        if state is None:
            raise AttributeError(f"{type(self).__name__} has no artifact {name!r} outside a running task")
        return state.get(name)

    def __getattr__(self, name: str) -> Any:
        # Only called when normal lookup fails: artifacts live in the state, not in __dict__.
        if name.startswith("__") or name.startswith("_keel"):
            raise AttributeError(name)
        state = self.__dict__.get("_keel_state")
        if state is None:
            raise AttributeError(f"{type(self).__name__!r} object has no attribute {name!r}")
        return state.get(name)

    def __setattr__(self, name: str, value: Any) -> None:
        state = self.__dict__.get("_keel_state")
        if name.startswith("_") or state is None:
            object.__setattr__(self, name, value)
            return
        if name in _RESERVED:
            raise DefinitionError(f"'{name}' is a reserved name in a flow; store the value under another name")
        descriptor = getattr(type(self), name, None)
        if descriptor is not None and hasattr(descriptor, "__set__"):
            descriptor.__set__(self, value)  # parameters say they are read-only
            return
        if descriptor is not None or hasattr(type(self), name):
            raise DefinitionError(
                f"step {self.__dict__.get('_keel_step')!r} sets self.{name}, but {name!r} is a class-level "
                f"constant of {type(self).__name__} (later steps would still read the class value). "
                f"Store the value under another name, e.g. self.{name}_value")
        state.set(name, value)

    def __delattr__(self, name: str) -> None:
        raise DefinitionError(f"artifacts cannot be deleted; set self.{name} = None instead")

    # -- the graph at run time -----------------------------------------------------------
    def next(self, *steps: Any, foreach: str | None = None, condition: str | None = None) -> None:
        """Go to the next step(s): ``self.next(self.a)``, ``self.next(self.a, self.b)``,
        ``self.next(self.part, foreach="items")``, or one of several chosen by an artifact's
        value: ``self.next({"fast": self.fast, "slow": self.slow}, condition="mode")``."""
        if steps and isinstance(steps[0], dict):
            steps = (self._keel_switch(steps[0], condition),)
        elif condition is not None:
            raise DefinitionError('condition= needs a dict of value -> step: self.next({"a": self.a}, condition="mode")')
        names = []
        for target in steps:
            name = getattr(target, "__name__", None)
            if name is None or not getattr(target, "_keel_step", False):
                raise DefinitionError(f"self.next() takes steps such as self.end, got {target!r}")
            names.append(name)
        if not names:
            raise DefinitionError("self.next() needs at least one step, e.g. self.next(self.end)")
        if foreach is not None:
            if len(names) != 1:
                raise DefinitionError("a foreach goes to exactly one step: self.next(self.part, foreach='items')")
            try:
                items = getattr(self, foreach)
            except AttributeError:
                raise DefinitionError(f"foreach={foreach!r}: the step did not set self.{foreach}") from None
            try:
                len(items)
            except TypeError:
                raise DefinitionError(f"foreach={foreach!r}: self.{foreach} must be a list or another sized "
                                f"sequence, got {type(items).__name__}") from None
        if self.__dict__.get("_keel_transition") is not None:
            raise DefinitionError("self.next() was called twice in one step; call it once, at the end")
        object.__setattr__(self, "_keel_transition", (tuple(names), foreach))

    def _keel_switch(self, cases: dict[Any, Any], condition: str | None) -> Any:
        if not condition:
            raise DefinitionError('a dict in self.next(...) needs condition="attr": the attribute whose value '
                            'chooses the step')
        try:
            value = getattr(self, condition)
        except AttributeError:
            raise DefinitionError(f"condition={condition!r}: the step did not set self.{condition}") from None
        by_text = {str(k): v for k, v in cases.items()}
        target = cases.get(value, by_text.get(str(value)))
        if target is None:
            choices = ", ".join(repr(k) for k in cases)
            raise DefinitionError(f"condition={condition!r}: self.{condition} is {value!r}, which is none of the "
                            f"cases ({choices}); set it to one of them or add a case")
        return target

    @property
    def input(self) -> Any:
        """In a foreach task: the element of the list this task handles."""
        frames = self.__dict__.get("_keel_frames", ())
        return frames[-1].value if frames else None

    @property
    def index(self) -> int | None:
        """In a foreach task: the position of ``self.input`` in the list."""
        frames = self.__dict__.get("_keel_frames", ())
        return frames[-1].index if frames else None

    def foreach_stack(self) -> list[tuple[int, int, Any]]:
        """(index, number of splits, item) for each enclosing foreach, outermost first."""
        return [(f.index, f.num_splits, f.value) for f in self.__dict__.get("_keel_frames", ())]

    def merge_artifacts(self, inputs: Iterable["FlowSpec"], include: list[str] | None = None,
                        exclude: list[str] | None = None) -> None:
        """In a join: take the artifacts the branches agree on (by reference, no copy).

        An artifact that differs between branches must be set in the join or excluded;
        ``include`` names exactly which to take (each must exist and agree).
        """
        if include and exclude:
            raise DefinitionError("merge_artifacts takes include or exclude, not both")
        state = self.__dict__.get("_keel_state")
        if state is None:
            raise DefinitionError("merge_artifacts works only inside a running join step")
        state.merge(list(inputs), include, exclude)

    @property
    def name(self) -> str:
        return type(self).__name__

    @classmethod
    def _keel_steps(cls) -> list[str]:
        return [n for n in dir(cls) if getattr(getattr(cls, n, None), "_keel_step", False)]


class Inputs:
    """The tasks a join step receives: iterate them, index them, or reach a branch by name."""

    def __init__(self, flows: list[FlowSpec], steps: list[str]):
        self._flows = flows
        self._by_step: dict[str, FlowSpec] = {}
        for flow, step_name in zip(flows, steps):
            self._by_step.setdefault(step_name, flow)

    def __iter__(self) -> Iterator[FlowSpec]:
        return iter(self._flows)

    def __len__(self) -> int:
        return len(self._flows)

    def __getitem__(self, i: int) -> FlowSpec:
        return self._flows[i]

    def __getattr__(self, name: str) -> FlowSpec:
        try:
            by_step: dict[str, FlowSpec] = self.__dict__["_by_step"]
            return by_step[name]
        except KeyError:
            steps = ", ".join(self.__dict__.get("_by_step", {})) or "none"
            raise AttributeError(f"inputs has no branch {name!r}; the branches are: {steps}") from None


def check_flow_class(flow_cls: type) -> None:
    if not (isinstance(flow_cls, type) and issubclass(flow_cls, FlowSpec)):
        raise DefinitionError(f"{flow_cls!r} is not a FlowSpec subclass")
