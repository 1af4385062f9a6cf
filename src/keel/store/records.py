"""Typed records that cross the store boundary: what the store's interfaces take and return.

They are frozen dataclasses, so a renamed field breaks the type check, not a run. Rows that
callers used to read as dicts (``attempt["status"]``) still answer ``record["status"]``
during the transition; new code reads attributes.
"""

from __future__ import annotations

import bisect
import dataclasses
import json
import math
import time
from dataclasses import dataclass, field
from typing import Any, Mapping, Union


class _Row:
    """Dict-style reading of a record's fields, kept for callers written against dict rows."""

    def __getitem__(self, name: str) -> Any:
        try:
            return getattr(self, name)
        except AttributeError:
            raise KeyError(name) from None

    def get(self, name: str, default: Any = None) -> Any:
        return getattr(self, name, default)

    def to_dict(self) -> dict[str, Any]:
        return {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}  # type: ignore[arg-type]


@dataclass(frozen=True)
class RunRecord(_Row):
    """A run as kept: ``status`` is what its scheduler wrote; show ``effective_status``."""

    flow: str
    run_id: int
    kind: str
    status: str
    created_at: float
    finished_at: float | None
    heartbeat_at: float | None
    user: str | None
    hostname: str | None
    pid: int | None
    code_hash: str | None
    code_key: str | None
    environment: Mapping[str, Any]
    origin_run_id: int | None
    error: str | None
    params: dict[str, Any] = field(default_factory=dict)
    tags: list[str] = field(default_factory=list)

    @property
    def pathspec(self) -> str:
        return f"{self.flow}/{self.run_id}"

    @property
    def effective_status(self) -> str:
        """The status a reader should show: a 'running' run whose scheduler is gone crashed
        (decided in one place: :func:`keel.store.liveness.effective_status`)."""
        if self.status != "running":
            return self.status
        from keel.store.liveness import effective_status

        return effective_status(self.status, self.environment, self.heartbeat_at, self.created_at, time.time())


@dataclass(frozen=True)
class RunPage:
    """One page of a run search (``RunQuery.search_page``): the runs, and how many match in all."""

    runs: list[RunRecord]
    total: int


@dataclass(frozen=True)
class TaskRecord(_Row):
    flow: str
    run_id: int
    task_id: int
    step: str
    status: str
    attempts: int
    created_at: float
    started_at: float | None
    finished_at: float | None
    parents: list[int]
    foreach: list[list[Any]]
    origin_run_id: int | None
    origin_task_id: int | None
    node: str | None


@dataclass(frozen=True)
class StepRecord(_Row):
    flow: str
    run_id: int
    step: str
    position: int
    status: str
    started_at: float | None
    finished_at: float | None


@dataclass(frozen=True)
class AttemptRecord(_Row):
    flow: str
    run_id: int
    task_id: int
    attempt: int
    status: str
    started_at: float | None
    finished_at: float | None
    exit_code: int | None
    error_type: str | None
    error_message: str | None
    traceback: str | None
    node: str | None


@dataclass(frozen=True)
class Comment(_Row):
    id: int
    flow: str
    run_id: int
    author: str
    created_at: float
    text: str


@dataclass(frozen=True)
class Fire(_Row):
    """One cron time that ``keel scheduler`` claimed for a job."""

    project: str
    job: str
    fire_time: float
    fired_at: float
    status: str          # "started" | "skipped"
    run_id: int | None
    note: str | None


@dataclass(frozen=True)
class Event(_Row):
    """A run or task state change. ``id`` only grows: keep the last one seen as a cursor.

    ``kind`` is ``run.started``, ``run.succeeded``, ``run.failed``, ``run.interrupted``,
    ``run.crashed``, ``task.started``, ``task.succeeded``, ``task.failed``, ``task.retried``,
    ``task.reused``, ``task.cached``, ``task.caught``, ``task.crashed`` (its run's scheduler died)
    or ``task.interrupted`` (its run was stopped); ``run.tagged``, ``run.untagged`` and
    ``run.commented`` for annotations; ``task.log_lost`` when a task's output could not all be kept."""

    id: int
    ts: float
    flow: str
    run_id: int
    kind: str
    step: str | None = None
    task_id: int | None = None
    attempt: int | None = None
    detail: dict[str, Any] = field(default_factory=dict)

    @property
    def ends_run(self) -> bool:
        return self.kind in RUN_END_EVENTS


@dataclass(frozen=True)
class Firing(_Row):
    """One alert that fired: exactly one per (rule, flow, run, key), recorded with its deliveries.

    ``run_id`` is 0 for a firing that no run caused (a schedule that did not run); ``key`` tells
    firings of one rule and run apart (``run``, ``long``, ``metric``, ``event:ID``, a cron time)."""

    id: int
    rule: str
    flow: str
    run_id: int
    key: str
    fired_at: float
    summary: str
    fields: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Delivery(_Row):
    """One action of one firing in the outbox: ``pending`` until sent (``delivered``), retried
    with backoff, ``failed`` after its last try; ``sending`` while a deliverer holds its lease."""

    id: int
    firing_id: int
    action: int                      # the action's index in the rule's ``notify``
    target: Mapping[str, Any]        # the action as written: {"webhook": url, ...}
    status: str
    attempts: int
    next_at: float
    delivered_at: float | None = None
    last_error: str | None = None


RUN_END_EVENTS = frozenset({"run.succeeded", "run.failed", "run.interrupted", "run.crashed"})
TASK_END_EVENTS = frozenset({"task.succeeded", "task.failed", "task.reused", "task.cached", "task.caught",
                             "task.crashed", "task.interrupted"})

# What a task status means in the event log (write_batch records one event per change).
TASK_EVENT = {"running": "task.started", "succeeded": "task.succeeded", "failed": "task.failed",
              "reused": "task.reused", "cached": "task.cached", "caught": "task.caught",
              "crashed": "task.crashed", "interrupted": "task.interrupted"}


def event_row(flow: str, run_id: int, kind: str, *, step: str | None = None, task_id: int | None = None,
              attempt: int | None = None, detail: dict[str, Any] | None = None) -> dict[str, Any]:
    """An event's row as the stores insert it (``EventWrite.op()``, ``new_run``, ...)."""
    return {"ts": time.time(), "flow": flow, "run_id": run_id, "kind": kind, "step": step, "task_id": task_id,
            "attempt": attempt, "detail": json.dumps(detail, default=repr, sort_keys=True) if detail else None}


# -- what the scheduler writes: one record per change, applied by RunStore.write_batch ---------
# Each knows the (kind, payload) form the stores apply (``op()``); write_batch takes only these.

@dataclass(frozen=True)
class TaskWrite:
    """A task's row as of now (inserted, or replacing the columns it names)."""

    flow: str
    run_id: int
    task_id: int
    step: str
    status: str
    attempts: int
    created_at: float
    started_at: float | None = None
    finished_at: float | None = None
    parents: tuple[int, ...] = ()
    foreach: tuple[tuple[Any, ...], ...] = ()
    node: str | None = None
    origin_run_id: int | None = None
    origin_task_id: int | None = None

    def op(self) -> tuple[str, Any]:
        row = {"flow": self.flow, "run_id": self.run_id, "task_id": self.task_id, "step": self.step,
               "status": self.status, "attempts": self.attempts, "created_at": self.created_at,
               "started_at": self.started_at, "parents": json.dumps(list(self.parents)),
               "foreach": json.dumps([list(f) for f in self.foreach])}
        for name in ("finished_at", "node", "origin_run_id", "origin_task_id"):
            value = getattr(self, name)
            if value is not None:  # unset columns keep what an earlier write put there
                row[name] = value
        return ("task", row)


@dataclass(frozen=True)
class AttemptWrite:
    flow: str
    run_id: int
    task_id: int
    attempt: int
    status: str
    started_at: float | None
    finished_at: float | None
    exit_code: int | None = None
    error_type: str | None = None
    error_message: str | None = None
    traceback: str | None = None
    node: str | None = None

    def op(self) -> tuple[str, Any]:
        return ("attempt", {f.name: getattr(self, f.name) for f in dataclasses.fields(self)})


@dataclass(frozen=True)
class ArtifactsWrite:
    """A task's artifact references: name -> ref (``{"key", "serializer", "size"}``); ``own``
    names those the task set itself (the others it inherited)."""

    flow: str
    run_id: int
    task_id: int
    refs: Mapping[str, Mapping[str, Any]]
    own: frozenset[str] = frozenset()

    def op(self) -> tuple[str, Any]:
        return ("artifacts", [{"flow": self.flow, "run_id": self.run_id, "task_id": self.task_id, "name": name,
                               "key": ref["key"], "serializer": ref["serializer"], "size": ref["size"],
                               "own": name in self.own} for name, ref in self.refs.items()])


@dataclass(frozen=True)
class MetricsWrite:
    """A task's metric points as (name, step, value, timestamp) tuples, in logging order."""

    flow: str
    run_id: int
    task_id: int
    points: tuple[tuple[str, Any, float, float], ...]

    def op(self) -> tuple[str, Any]:
        return ("metrics", [{"flow": self.flow, "run_id": self.run_id, "task_id": self.task_id, "name": name,
                             "step": step, "value": value, "ts": ts} for name, step, value, ts in self.points])


@dataclass(frozen=True)
class TagsWrite:
    flow: str
    run_id: int
    tags: tuple[str, ...]

    def op(self) -> tuple[str, Any]:
        return ("tags", (self.flow, self.run_id, list(self.tags)))


@dataclass(frozen=True)
class StepWrite:
    flow: str
    run_id: int
    step: str
    status: str
    started_at: float | None
    finished_at: float | None

    def op(self) -> tuple[str, Any]:
        return ("step", (self.flow, self.run_id, self.step,
                         {"status": self.status, "started_at": self.started_at, "finished_at": self.finished_at}))


@dataclass(frozen=True)
class HeartbeatWrite:
    flow: str
    run_id: int

    def op(self) -> tuple[str, Any]:
        return ("heartbeat", (self.flow, self.run_id))


#: The event of a task whose output could not all be kept (disk full, EIO); detail: {"error": ...}.
TASK_LOG_LOST = "task.log_lost"


@dataclass(frozen=True)
class EventWrite:
    """An event that no row change implies (``task.retried``); task and run status changes
    record their own events."""

    flow: str
    run_id: int
    kind: str
    step: str | None = None
    task_id: int | None = None
    attempt: int | None = None
    detail: Mapping[str, Any] | None = None

    def op(self) -> tuple[str, Any]:
        return ("event", event_row(self.flow, self.run_id, self.kind, step=self.step, task_id=self.task_id,
                                   attempt=self.attempt, detail=dict(self.detail) if self.detail else None))


WriteOp = Union[TaskWrite, AttemptWrite, ArtifactsWrite, MetricsWrite, TagsWrite, StepWrite, HeartbeatWrite,
                EventWrite]


_WRITES = (TaskWrite, AttemptWrite, ArtifactsWrite, MetricsWrite, TagsWrite, StepWrite, HeartbeatWrite, EventWrite)


def as_op(op: WriteOp) -> tuple[str, Any]:
    """The (kind, payload) form of a write record, as a store applies it."""
    if not isinstance(op, _WRITES):  # a (kind, payload) pair of 0.1, or a stray value
        names = ", ".join(t.__name__ for t in _WRITES)
        raise TypeError(f"write_batch takes write records of keel.store.records ({names}), "
                        f"not {type(op).__name__} {op!r:.60}; build the record instead of a (kind, payload) pair")
    return op.op()


@dataclass(frozen=True)
class MetricBuckets:
    """A metric series reduced to at most N buckets along its x axis (the logged step, or the
    point's index when no step was given): per bucket the x of its last point and the min,
    max and last value. ``count`` is the number of points in ``[lo, hi]``, the range spanned."""

    x: tuple[float, ...]
    min: tuple[float, ...]
    max: tuple[float, ...]
    last: tuple[float, ...]
    count: int
    lo: float | None
    hi: float | None


# Every stepped series is also kept summarised by blocks of METRIC_BLOCK steps (count, min,
# max, last: the store's ``metric_blocks``), so a wide range is bucketed from the summaries.
METRIC_BLOCK = 64


def bucket_edges(x0: float, x1: float, buckets: int, snap: bool = False) -> list[int]:
    """Where each bucket of integer steps over ``[x0, x1]`` starts: bucket ``b`` holds the steps
    ``edges[b] <= step < edges[b + 1]``. Unsnapped, that is exactly the bucket
    ``min(buckets - 1, int((step - x0) / width))`` of :func:`bucket_points`. With ``snap`` and
    buckets at least :data:`METRIC_BLOCK` steps wide, the inner edges are moved to the nearest
    multiple of the block (the outer ones stay at the range's ends), so whole blocks of a
    series' summaries fall in one bucket and a store can bucket from them exactly."""
    buckets = max(1, int(buckets))
    width = (x1 - x0) / buckets or 1.0
    start, end = math.ceil(x0), math.floor(x1) + 1
    if snap and width >= METRIC_BLOCK:
        inner = [min(max(math.floor((x0 + b * width) / METRIC_BLOCK + 0.5) * METRIC_BLOCK, start), end)
                 for b in range(1, buckets)]
        return [start, *inner, end]

    def bucket(step: int) -> int:
        return min(buckets - 1, int((step - x0) / width))

    edges = [start]
    for b in range(1, buckets):
        c = min(max(math.ceil(x0 + b * width), edges[-1]), end)
        while c > edges[-1] and bucket(c - 1) >= b:
            c -= 1
        while c < end and bucket(c) < b:
            c += 1
        edges.append(c)
    edges.append(end)
    return edges


def bucket_points(points: list[tuple[Any, float, float]], buckets: int, lo: float | None = None,
                  hi: float | None = None, snap: bool = False) -> MetricBuckets:
    """:class:`MetricBuckets` of ``points`` ((step, value, ts) in logging order), in Python: the
    in-memory fake's answer, and the reference the SQL implementation must agree with. With
    ``snap``, a series logged with steps is bucketed over :func:`bucket_edges` snapped to blocks
    (the buckets of :func:`bucket_runs`)."""
    xs = [float(p[0]) if p[0] is not None else float(i) for i, p in enumerate(points)]
    pairs = [(x, p[1]) for x, p in zip(xs, points) if (lo is None or x >= lo) and (hi is None or x <= hi)]
    if not pairs:
        return MetricBuckets((), (), (), (), 0, lo, hi)
    x0 = min(x for x, _ in pairs) if lo is None else lo
    x1 = max(x for x, _ in pairs) if hi is None else hi
    buckets = max(1, int(buckets))
    if len(pairs) <= buckets:
        values = tuple(v for _, v in pairs)
        return MetricBuckets(tuple(x for x, _ in pairs), values, values, values, len(pairs), x0, x1)
    width = (x1 - x0) / buckets or 1.0
    snapped = snap and width >= METRIC_BLOCK and all(p[0] is not None for p in points)
    starts = bucket_edges(x0, x1, buckets, snap=True)[1:-1] if snapped else []
    out: dict[int, list[float]] = {}
    for x, v in pairs:
        b = bisect.bisect_right(starts, x) if snapped else min(buckets - 1, int((x - x0) / width))
        slot = out.get(b)
        if slot is None:
            out[b] = [x, v, v, v]
        else:
            slot[0] = x
            slot[1] = min(slot[1], v)
            slot[2] = max(slot[2], v)
            slot[3] = v
    keys = sorted(out)
    return MetricBuckets(tuple(out[k][0] for k in keys), tuple(out[k][1] for k in keys),
                         tuple(out[k][2] for k in keys), tuple(out[k][3] for k in keys), len(pairs), x0, x1)


def bucket_runs(series: dict[Any, list[tuple[Any, float, float]]], buckets: int, lo: float | None = None,
                hi: float | None = None) -> dict[Any, MetricBuckets]:
    """Several runs' series of one metric bucketed over one shared range ``[lo, hi]`` (None: the
    ends of all the series together), so overlaid charts share their buckets: each run's answer
    is :func:`bucket_points` of its points over that range, snapped to blocks (``snap=True``:
    over a wide range, a series logged with steps is bucketed from its block summaries). The
    reference of ``MetricStore.bucketed_runs``."""
    xs = [float(p[0]) if p[0] is not None else float(i) for points in series.values() for i, p in enumerate(points)]
    x0 = lo if lo is not None else (min(xs) if xs else None)
    x1 = hi if hi is not None else (max(xs) if xs else None)
    return {key: bucket_points(points, buckets, x0, x1, snap=True) if xs else MetricBuckets((), (), (), (), 0, lo, hi)
            for key, points in series.items()}


@dataclass(frozen=True)
class TaskLink:
    """An address a task published while it ran (``name`` like ``spark_ui``)."""

    flow: str
    run_id: int
    task_id: int
    name: str
    url: str
    created_at: float
