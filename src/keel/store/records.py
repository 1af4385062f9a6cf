"""Typed records that cross the store boundary: what the store's interfaces take and return.

They are frozen dataclasses, so a renamed field breaks the type check, not a run. Rows that
callers used to read as dicts (``attempt["status"]``) still answer ``record["status"]``
during the transition; new code reads attributes.
"""

from __future__ import annotations

import dataclasses
import json
import time
from dataclasses import dataclass, field
from typing import Any, Mapping


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
    ``task.reused``, ``task.cached`` or ``task.caught``."""

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


RUN_END_EVENTS = frozenset({"run.succeeded", "run.failed", "run.interrupted", "run.crashed"})
TASK_END_EVENTS = frozenset({"task.succeeded", "task.failed", "task.reused", "task.cached", "task.caught"})

# What a task status means in the event log (write_batch records one event per change).
TASK_EVENT = {"running": "task.started", "succeeded": "task.succeeded", "failed": "task.failed",
              "reused": "task.reused", "cached": "task.cached", "caught": "task.caught"}


def event_row(flow: str, run_id: int, kind: str, *, step: str | None = None, task_id: int | None = None,
              attempt: int | None = None, detail: dict[str, Any] | None = None) -> dict[str, Any]:
    """An event as the scheduler queues it for ``write_batch`` (``("event", event_row(...))``)."""
    return {"ts": time.time(), "flow": flow, "run_id": run_id, "kind": kind, "step": step, "task_id": task_id,
            "attempt": attempt, "detail": json.dumps(detail, default=repr, sort_keys=True) if detail else None}
