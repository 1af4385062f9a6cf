"""The body of one task: load inputs lazily, run the user's step, persist what it set.

This runs in the task's own process (forked by the local executor, or on a Ray worker).
It writes artifacts to the artifact store and describes the outcome in a small
:class:`TaskResult`; the scheduler alone writes metadata.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import pickle
import sys
import traceback
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from keel.errors import DefinitionError, KeelError, SerializationError, StoreError
from keel.flow.decorators import find_decorator
from keel.flow.spec import FlowSpec, ForeachFrame, Inputs
from keel.runtime.current import current
from keel.settings import Settings
from keel.store.artifacts import ArtifactRef, ArtifactStore

if TYPE_CHECKING:
    from keel.runtime.command import CommandTask

# Loaded artifacts smaller than this are stored again after the step, so that in-place
# changes (self.items.append(x)) are kept; identical bytes dedupe to the same key.
_RESAVE_LOADED_UNDER = 16 * 1024 * 1024
_IMMUTABLE = (int, float, complex, str, bytes, bool, type(None), frozenset, range)


@dataclass
class FrameSpec:
    """A foreach level as the scheduler knows it: the list's artifact ref and this split's index."""

    step: str
    var: str
    index: int
    num_splits: int
    ref: dict[str, Any]


@dataclass
class TaskSpec:
    """Everything a task needs to run, and nothing it would have to ask the scheduler for."""

    flow: str
    run_id: int
    step: str
    task_id: int
    attempt: int
    inputs: list[dict[str, dict[str, Any]]]   # parent namespaces: artifact name -> ref dict
    input_steps: list[str]
    is_join: bool
    param_names: list[str]
    frames: list[FrameSpec] = field(default_factory=list)
    env: dict[str, str] = field(default_factory=dict)
    catch_var: str | None = None
    catch_now: bool = False                     # the last attempt of a @catch step
    result_path: str = ""
    metrics_path: str = ""
    origin_run_id: int | None = None
    extras: dict[str, Any] = field(default_factory=dict)
    command: CommandTask | None = None          # a command task (project job): no FlowSpec step to run
    record_reads: bool = False                  # a cached step: note the files it opens for reading
    timeout: float | None = None                # @timeout: raised inside the step (SIGALRM)
    system_metrics: float | None = None         # sampling period (0: off) as the run read it; None: read here

    @property
    def pathspec(self) -> str:
        return f"{self.flow}/{self.run_id}/{self.step}/{self.task_id}"


# A metric point as the spool keeps it: (name, step, value, timestamp).
MetricPoint = tuple[str, int | None, float, float]


@dataclass(frozen=True)
class TaskResult:
    """What one attempt of a task reports to the scheduler: the task's own account of how it
    ended. It crosses process boundaries by pickle (a forked task's result file, a warm
    worker's socket, a Ray return value, a Kubernetes pod's report in the artifact store).

    ``artifacts`` is every artifact the task's namespace holds (name -> ``ArtifactRef`` dict),
    ``own`` those it set; ``transition`` the steps its ``self.next`` named, ``foreach`` the
    list attribute it fanned out over, with ``num_splits`` items stored at ``foreach_ref``.
    ``caught``: the step failed and ``@catch`` carried on (``error`` says why); ``error`` on a
    failed attempt: ``type``, ``message``, ``traceback`` (and ``qualified``, "module.Class").
    ``metrics``: the last system-metric points, recorded after the spool's; ``reads``: the
    files a cached step read.
    """

    ok: bool
    caught: bool = False
    tags: tuple[str, ...] = ()
    artifacts: dict[str, dict[str, Any]] = field(default_factory=dict)
    own: tuple[str, ...] = ()
    transition: tuple[str, ...] = ()
    foreach: str | None = None
    num_splits: int | None = None
    foreach_ref: dict[str, Any] | None = None
    error: dict[str, str] | None = None
    metrics: tuple[MetricPoint, ...] = ()
    reads: tuple[str, ...] = ()

    @classmethod
    def failed(cls, error_type: str, message: str, traceback_text: str = "") -> TaskResult:
        """A failed attempt that Keel itself explains (a bad transition, a job that failed)."""
        return cls(ok=False, error={"type": error_type, "message": message, "traceback": traceback_text})


class CaughtException:
    """What @catch stores in its artifact, shaped like Metaflow's: ``.type`` ("module.Class"),
    ``.exception`` (the message) and ``.stacktrace`` (``.message``/``.traceback`` are aliases).
    A plain object, not an Exception, so that values stored by earlier releases still load."""

    def __init__(self, type_name: str, message: str, traceback_text: str):
        self.type = type_name
        self.exception = message
        self.stacktrace = traceback_text

    @classmethod
    def of(cls, exc: BaseException, traceback_text: str) -> CaughtException:
        """What @catch stores for ``exc``."""
        return cls(_qualified(exc), str(exc), traceback_text)

    @property
    def message(self) -> str:
        return self.exception

    @property
    def traceback(self) -> str:
        return self.stacktrace

    def __setstate__(self, state: dict[str, Any]) -> None:
        if "exception" not in state:  # stored before the Metaflow shape: type, message, traceback
            state = {"type": state.get("type"), "exception": state.get("message", ""),
                     "stacktrace": state.get("traceback", "")}
        self.__dict__.update(state)

    def __str__(self) -> str:
        return f"{self.type}: {self.exception}"

    def __repr__(self) -> str:
        return f"CaughtException({self.type}: {self.exception!r})"


def _qualified(exc: BaseException) -> str:
    """``module.Class`` of an exception, as Metaflow's @catch names it."""
    kind = type(exc)
    return f"{kind.__module__}.{kind.__qualname__}"


def _start_alarm(spec: TaskSpec) -> Any:
    """@timeout: raise StepTimeout inside the step when its time is up (the scheduler's kill
    stays as the backstop for code that never returns to Python)."""
    import signal
    import threading

    if not spec.timeout or threading.current_thread() is not threading.main_thread():
        return None

    def expire(signum: int, frame: Any) -> None:
        from keel.errors import StepTimeout

        raise StepTimeout(f"step {spec.step!r} ran longer than its @timeout of {spec.timeout:g} seconds")

    previous = signal.signal(signal.SIGALRM, expire)
    signal.setitimer(signal.ITIMER_REAL, spec.timeout)
    return previous if previous is not None else signal.SIG_DFL


def _stop_alarm(previous: Any) -> None:
    """Disarm the @timeout alarm and put back the handler it replaced (a Ray worker runs on)."""
    import signal

    signal.setitimer(signal.ITIMER_REAL, 0)
    signal.signal(signal.SIGALRM, previous)


class TaskState:
    """The artifacts one task sees: inherited refs loaded on first read, and what it sets."""

    def __init__(self, store: ArtifactStore, refs: dict[str, ArtifactRef], pathspec: str,
                 *, params: list[str], read_only: bool = False, join: bool = False):
        self.store = store
        self.refs = dict(refs)
        self.pathspec = pathspec
        self.params = set(params)
        self.read_only = read_only
        self.join = join
        self.new: dict[str, Any] = {}
        self.loaded: dict[str, Any] = {}

    def get(self, name: str) -> Any:
        if name in self.new:
            return self.new[name]
        if name in self.loaded:
            return self.loaded[name]
        ref = self.refs.get(name)
        if ref is None:
            raise AttributeError(self._missing(name))
        value = self.store.get(ref, what=f"artifact {name!r} read by {self.pathspec}")
        self.loaded[name] = value
        return value

    def _missing(self, name: str) -> str:
        have = ", ".join(sorted(set(self.refs) | set(self.new))) or "none"
        msg = f"{self.pathspec} has no artifact {name!r} (artifacts here: {have})"
        if self.join:
            msg += (". In a join, the branches' artifacts are reached through inputs "
                    f"(inputs[0].{name}) or taken with self.merge_artifacts(inputs)")
        return msg

    def set(self, name: str, value: Any) -> None:
        if self.read_only:
            raise DefinitionError(f"the inputs of a join are read-only; set self.{name} on the join's own self")
        self.new[name] = value
        self.loaded.pop(name, None)

    def names(self) -> list[str]:
        return sorted(set(self.refs) | set(self.new))

    def merge(self, inputs: list[FlowSpec], include: list[str] | None, exclude: list[str] | None) -> None:
        if not self.join:
            raise DefinitionError(f"merge_artifacts works only in a join step (one that takes inputs), "
                            f"not in {self.pathspec}")
        states = [inp.__dict__["_keel_state"] for inp in inputs]
        available: dict[str, list[ArtifactRef]] = {}
        for state in states:
            for name, ref in state.refs.items():
                available.setdefault(name, []).append(ref)
        if include is not None:
            missing = [n for n in include if n not in available]
            if missing:
                raise DefinitionError(f"merge_artifacts(include=...) names {', '.join(map(repr, missing))}, "
                                f"which no branch has")
            names = list(include)
        else:
            names = [n for n in available if n not in self.params and n not in (exclude or ())]
        conflicts, agreed = [], {}
        for name in names:
            if name in self.new:
                continue  # set in the join itself: the join's value wins
            keys = {ref.key for ref in available[name]}
            if len(keys) > 1:
                conflicts.append(name)
            else:
                agreed[name] = available[name][0]
        if not conflicts:  # all or nothing, as in Metaflow
            self.refs.update(agreed)
            for name in agreed:
                self.loaded.pop(name, None)
        else:
            listed = ", ".join(repr(c) for c in conflicts)
            raise DefinitionError(f"merge_artifacts: the branches have different values for {listed}. Set "
                            f"them in the join step first, or pass exclude=[{listed}]")

    def persist(self) -> tuple[dict[str, ArtifactRef], list[str]]:
        """Store what the step set (and loaded values it may have changed); return every ref."""
        own = []
        for name, value in self.new.items():
            self.refs[name] = self._put(name, value)
            own.append(name)
        for name, value in self.loaded.items():
            ref = self.refs[name]
            if isinstance(value, _IMMUTABLE) or ref.size > _RESAVE_LOADED_UNDER:
                continue
            again = self._put(name, value)
            if again.key != ref.key:
                self.refs[name] = again
                own.append(name)
        return self.refs, own

    def _put(self, name: str, value: Any) -> ArtifactRef:
        try:
            return self.store.put(value)
        except StoreError as exc:  # disk full, permission denied...: say which artifact
            raise StoreError(f"cannot store artifact {name!r} of {self.pathspec}: {exc}") from None
        except KeelError:
            raise
        except Exception as exc:
            raise SerializationError(f"cannot store artifact {name!r} ({type(value).__name__}) of {self.pathspec}: "
                            f"{type(exc).__name__}: {exc}") from exc


def _refs(namespace: dict[str, dict[str, Any]]) -> dict[str, ArtifactRef]:
    return {name: ArtifactRef.from_dict(d) for name, d in namespace.items()}


# A warm worker runs many splits of one foreach: a list of plain values (numbers, strings) is
# loaded, hash-checked and unpickled once per process instead of once per split. Only such
# lists: an item a step could change in place (a dict, an object) is loaded afresh each time,
# as before. Keyed by content hash, so a value can never be stale.
_FOREACH_LISTS: dict[str, Any] = {}
_KEEP_LISTS = 4
_KEEP_UNDER = 64 * 2**20  # bytes stored
_PLAIN = frozenset((int, float, str, bytes, bool, type(None)))


def _keep_foreach_list(ref: ArtifactRef, items: Any) -> None:
    if type(items) not in (list, tuple, range) or ref.size > _KEEP_UNDER:
        return
    if type(items) is not range and not all(type(x) in _PLAIN for x in items):
        return
    if len(_FOREACH_LISTS) >= _KEEP_LISTS:
        del _FOREACH_LISTS[next(iter(_FOREACH_LISTS))]
    _FOREACH_LISTS[ref.key] = items


def _frames(spec: TaskSpec, store: ArtifactStore) -> tuple[ForeachFrame, ...]:
    out = []
    for f in spec.frames:
        ref = ArtifactRef.from_dict(f.ref)

        def load(ref: ArtifactRef = ref, f: FrameSpec = f) -> Any:
            items: Any = _FOREACH_LISTS.get(ref.key)
            if items is None:
                items = store.get(ref, what=f"foreach list {f.var!r} of step {f.step!r}")
                _keep_foreach_list(ref, items)
            return items[f.index]

        out.append(ForeachFrame(f.step, f.var, f.index, f.num_splits, load))
    return tuple(out)


def _flow_instance(flow_cls: type[FlowSpec], state: TaskState, frames: tuple[ForeachFrame, ...], step: str) -> FlowSpec:
    flow = flow_cls.__new__(flow_cls)
    object.__setattr__(flow, "_keel_state", state)
    object.__setattr__(flow, "_keel_frames", frames)
    object.__setattr__(flow, "_keel_step", step)
    object.__setattr__(flow, "_keel_transition", None)
    return flow


def run_task(spec: TaskSpec, flow_cls: type, store: ArtifactStore) -> TaskResult:
    """Run one attempt of a task and return its result (never raises for user errors)."""
    current._activate(flow_name=spec.flow, run_id=spec.run_id, step_name=spec.step, task_id=spec.task_id,
                      retry_count=spec.attempt, metrics_path=spec.metrics_path,
                      origin_run_id=spec.origin_run_id, parameter_names=list(spec.param_names),
                      system_metrics=spec.system_metrics, **spec.extras)
    result = TaskResult(ok=False)
    reads: tuple[str, ...] = ()
    frames = _frames(spec, store)
    if spec.is_join:
        first = _refs(spec.inputs[0]) if spec.inputs else {}
        base = {n: first[n] for n in spec.param_names if n in first}
    else:
        base = _refs(spec.inputs[0]) if spec.inputs else {}
    state = TaskState(store, base, spec.pathspec, params=spec.param_names, join=spec.is_join)
    flow = _flow_instance(flow_cls, state, frames, spec.step)
    addons = contextlib.ExitStack()  # a @spark step's cluster, stopped when the step ends
    cards = _start_cards(spec, flow_cls, state)
    alarm = None
    try:
        os.environ.update(spec.env)
        alarm = _start_alarm(spec)
        func = getattr(flow, spec.step)
        spark_deco = find_decorator(func, "spark")
        if spark_deco is not None:
            from keel.addons.spark import step_cluster

            addons.enter_context(step_cluster(spark_deco.attributes))
        if spec.is_join:
            views = []
            for ns, step_name in zip(spec.inputs, spec.input_steps):
                view_state = TaskState(store, _refs(ns), f"input {step_name} of {spec.pathspec}",
                                       params=spec.param_names, read_only=True)
                views.append(_flow_instance(flow_cls, view_state, frames[:-1] if frames else (), step_name))
            func(Inputs(views, spec.input_steps))
        else:
            with _ReadRecorder(spec.record_reads, _store_roots(store) if spec.record_reads else ()) as read:
                func()
            if spec.record_reads:
                reads = tuple(sorted(read))
        if alarm is not None:
            _stop_alarm(alarm)
            alarm = None
        if cards is not None:
            _finish_cards(cards, state, store)
        transition = flow.__dict__.get("_keel_transition")
        if spec.catch_var:  # @catch(var=...) and no exception: the artifact is None, as in Metaflow
            state.set(spec.catch_var, None)
        refs, own = state.persist()
        fanned = transition[1] if transition else None
        result = TaskResult(ok=True, artifacts={n: r.to_dict() for n, r in refs.items()}, own=tuple(own),
                            transition=tuple(transition[0]) if transition else (), foreach=fanned,
                            num_splits=len(state.get(fanned)) if fanned else None,
                            foreach_ref=refs[fanned].to_dict() if fanned else None)
    except BaseException as exc:  # noqa: BLE001 - any failure of user code is the task's failure
        if alarm is not None:
            _stop_alarm(alarm)
        tb = traceback.format_exc()
        error = {"type": type(exc).__name__, "message": str(exc), "traceback": _user_traceback(tb),
                 "qualified": _qualified(exc)}
        if spec.catch_now:
            if cards is not None:
                _finish_cards(cards, state, store)
            result = _caught(spec, state, store, error)
        else:
            result = TaskResult(ok=False, error=error)
            sys.stderr.write(error["traceback"])
    finally:
        addons.close()
    final: list[MetricPoint] = []
    tags = tuple(current._finish(final))
    # final: the last system metrics, after the spool's points: the scheduler records them last
    return dataclasses.replace(result, tags=tags, metrics=tuple(final), reads=reads)


def _start_cards(spec: TaskSpec, flow_cls: type, state: TaskState) -> Any:
    """@card: ``current.card`` for this task (None when the step has no card)."""
    from keel.flow.decorators import step_decorators

    decos = [d for d in step_decorators(getattr(flow_cls, spec.step)) if d.name == "card"]
    if not decos:
        return None
    from keel.cards import TaskCards
    from keel.flow.graph import FlowGraph

    def context() -> dict[str, Any]:
        params = {n: state.get(n) for n in spec.param_names if n in state.refs}
        return {"params": params, "artifacts": dict(state.new), "graph": FlowGraph(flow_cls).to_text()}

    cards = TaskCards(spec.pathspec, [(d.id, d.type) for d in decos], spec.extras.get("card_dir"), context)
    current.__dict__["_card"] = cards
    return cards


def _finish_cards(cards: Any, state: TaskState, store: ArtifactStore) -> None:
    """Render the task's cards and keep them; a card that fails to render never fails the task."""
    from keel.cards import CARDS_ARTIFACT, write_live

    try:
        kept = []
        for handle, text in cards.render():
            kept.append({"id": handle.id, "type": handle.type, "key": store.put_bytes(text.encode())})
            if cards._live_dir:
                write_live(cards._live_dir, cards.pathspec, handle.index, text)
        state.new[CARDS_ARTIFACT] = kept
    except Exception as exc:  # noqa: BLE001 - a card is a report: the step's work stands without it
        sys.stderr.write(f"[keel] the card of {cards.pathspec} could not be rendered: {type(exc).__name__}: {exc}\n")


def _caught(spec: TaskSpec, state: TaskState, store: ArtifactStore, error: dict[str, str]) -> TaskResult:
    """@catch on the last attempt: keep going with what the step set before it failed, plus the
    exception (Metaflow keeps those artifacts too)."""
    sys.stderr.write(f"@catch: step {spec.step!r} failed and the run goes on:\n{error['traceback']}")
    try:
        refs, own = state.persist()
        refs, own = dict(refs), list(own)
    except Exception:  # noqa: BLE001 - an artifact that cannot be stored: keep the inherited ones
        refs, own = dict(state.refs), []
    if spec.catch_var:
        caught = CaughtException(error.get("qualified") or error["type"], error["message"], error["traceback"])
        refs[spec.catch_var] = store.put(caught)
        if spec.catch_var not in own:
            own.append(spec.catch_var)
    return TaskResult(ok=True, caught=True, error=error, own=tuple(own),
                      artifacts={n: r.to_dict() for n, r in refs.items()})


_RECORDING: set[str] | None = None
_HOOKED = False
_NOT_DATA = ("/proc/", "/sys/", "/dev/", sys.prefix, sys.base_prefix, os.path.dirname(os.path.dirname(__file__)))


def _audit(event: str, args: tuple[Any, ...]) -> None:
    if _RECORDING is None or event != "open":
        return
    path, mode = args[0], args[1]
    if isinstance(path, (str, bytes)) and (mode is None or ("r" in str(mode) and "+" not in str(mode))):
        _RECORDING.add(os.path.abspath(os.fsdecode(path)))


def _store_roots(store: ArtifactStore) -> tuple[str, ...]:
    roots = [str(getattr(store.backend, "root", "") or ""), str(Settings.from_env().home)]
    return tuple(os.path.abspath(r) + os.sep for r in roots if r)


class _ReadRecorder:
    """Collects the files a step opens for reading (a cached step's inputs Keel cannot see)."""

    def __init__(self, enabled: bool, exclude: tuple[str, ...] = ()):
        self.enabled = enabled
        self.exclude = _NOT_DATA + exclude
        self.paths: set[str] = set()

    def __enter__(self) -> set[str]:
        global _RECORDING, _HOOKED
        if self.enabled:
            if not _HOOKED:
                sys.addaudithook(_audit)
                _HOOKED = True
            _RECORDING = self.paths
        return self.paths

    def __exit__(self, *exc: Any) -> None:
        global _RECORDING
        _RECORDING = None
        for path in list(self.paths):
            if path.startswith(self.exclude) or path.endswith((".py", ".pyc")) or not os.path.isfile(path):
                self.paths.discard(path)


def _user_traceback(text: str) -> str:
    """The traceback without Keel's own frames above the user's step."""
    marker = os.sep + os.path.join("keel", "runtime") + os.sep
    out, skip = [], False
    for line in text.splitlines(keepends=True):
        if line.startswith("  File "):
            skip = marker in line
        elif not line.startswith("    "):
            skip = False
        if not skip:
            out.append(line)
    return "".join(out)


def write_result(path: str, result: TaskResult) -> None:
    tmp = f"{path}.tmp{os.getpid()}"
    with open(tmp, "wb") as fh:
        pickle.dump(result, fh, protocol=pickle.HIGHEST_PROTOCOL)
    os.replace(tmp, path)


def read_result(path: str) -> TaskResult | None:
    try:
        with open(path, "rb") as fh:
            result: TaskResult | None = pickle.load(fh)
            return result
    except (FileNotFoundError, EOFError, pickle.UnpicklingError):
        return None
