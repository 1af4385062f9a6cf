"""Recording a crash: a run whose scheduler died is settled as ``crashed``, once.

Readers see a crash at once (``liveness.effective_status``); this writes it down, with its
``run.crashed`` event, so that "run crashed" alert rules fire and the crash is kept once the
evidence (the dead pid, the old heartbeat) is gone. Whoever notices first records it: ``resume``
of the run, ``keel scheduler``, ``keel alerts watch``. The run's status moves from ``running``
to ``crashed`` by compare and set, so of several noticers exactly one writes the event.
"""

from __future__ import annotations

import time
from typing import Any

from keel.store.records import AttemptWrite, RunRecord, TaskWrite

_RECENT = 7 * 24 * 3600.0   # running runs older than this are not looked at by sweeps


def settle_crashed(md: Any, run: RunRecord, *, now: float | None = None) -> bool:
    """Record that ``run`` (stored as running, its scheduler gone) crashed, and so did its running
    tasks. True when this call recorded it; False when someone else did first."""
    now = time.time() if now is None else now
    who = f"pid {run.pid} on {run.hostname}"
    message = f"the process running it ({who}) stopped without finishing it"
    ops: list[Any] = []
    for t in md.runs.list_tasks(run.flow, run.run_id):
        if t.status == "running":
            ops.append(TaskWrite(flow=t.flow, run_id=t.run_id, task_id=t.task_id, step=t.step, status="crashed",
                                 attempts=t.attempts, created_at=t.created_at, started_at=t.started_at,
                                 finished_at=now, parents=tuple(t.parents), foreach=tuple(map(tuple, t.foreach)),
                                 node=t.node, origin_run_id=t.origin_run_id, origin_task_id=t.origin_task_id))
            ops.append(AttemptWrite(flow=t.flow, run_id=t.run_id, task_id=t.task_id,
                                    attempt=max(0, t.attempts - 1), status="crashed", started_at=t.started_at,
                                    finished_at=now, error_type="SchedulerCrashed",
                                    error_message=f"the run's scheduler ({who}) died while this task ran",
                                    traceback="", node=t.node))
    # one transaction: the run's status (if still running), its tasks' and their task.crashed
    # events, then run.crashed (the scheduler is gone: no one else changes these tasks meanwhile)
    return bool(md.runs.set_run_status(run.flow, run.run_id, "crashed", error=f"SchedulerCrashed: {message}",
                                       expect="running", writes=ops))


def settle_crashed_runs(md: Any, *, flow: str | None = None, now: float | None = None) -> list[RunRecord]:
    """Settle every run (of ``flow``, or of the store) that readers see as crashed; the ones this
    call recorded."""
    now = time.time() if now is None else now
    out = []
    for run in md.runs.list_runs(flow, status="running"):
        if now - run.created_at < _RECENT and run.effective_status == "crashed" and settle_crashed(md, run, now=now):
            out.append(run)
    return out
