"""Read back the start/finish times of one step's tasks from a finished run; print JSON.

Run with the interpreter of the framework whose store should be read, in the environment
the run used (KEEL_HOME, or the METAFLOW_* variables), so that each client finds its store::

    python _task_times.py keel Foreach100 part
    python _task_times.py metaflow Foreach100 part

Prints ``{"durations_ms": [...]}`` with one ``finished - started`` per task, or
``{"error": "..."}`` when the client, the run or the timestamps are not available. Written
defensively: Keel's client is young, so missing attributes are reported, never raised.
"""

from __future__ import annotations

import datetime as dt
import json
import sys
import traceback
from typing import Any

_START_NAMES = ("started_at", "created_at", "start_time", "started")
_FINISH_NAMES = ("finished_at", "ended_at", "finish_time", "finished_time")


def _as_seconds(value: Any) -> float | None:
    """A timestamp as POSIX seconds, from a datetime, a number (s or ms) or an ISO string."""
    if value is None or isinstance(value, bool):
        return None
    if isinstance(value, dt.datetime):
        if value.tzinfo is None:
            value = value.replace(tzinfo=dt.timezone.utc)  # only differences matter
        return value.timestamp()
    if isinstance(value, (int, float)):
        return value / 1000.0 if value > 1e11 else float(value)  # epoch ms vs epoch s
    if isinstance(value, str):
        try:
            return _as_seconds(dt.datetime.fromisoformat(value.replace("Z", "+00:00")))
        except ValueError:
            return None
    return None


def _first_attr(obj: Any, names: tuple[str, ...]) -> tuple[str | None, Any]:
    for name in names:
        try:
            value = getattr(obj, name)
        except Exception:  # noqa: BLE001 - a client property may raise anything
            continue
        if value is not None and not callable(value):
            return name, value
    return None, None


def durations(framework: str, flow_name: str, step_name: str) -> dict[str, Any]:
    if framework == "keel":
        from keel import Flow
    elif framework == "metaflow":
        from metaflow import Flow, namespace

        namespace(None)
    else:
        return {"error": f"unknown framework {framework!r}"}
    run = Flow(flow_name).latest_run
    tasks = list(run[step_name])
    if not tasks:
        return {"error": f"step {step_name!r} has no tasks"}
    result: list[float] = []
    used: tuple[str | None, str | None] = (None, None)
    for task in tasks:
        start_name, start = _first_attr(task, _START_NAMES)
        finish_name, finish = _first_attr(task, _FINISH_NAMES)
        start_s, finish_s = _as_seconds(start), _as_seconds(finish)
        if start_s is None or finish_s is None:
            return {
                "error": f"task {task!r} has no usable start/finish timestamps "
                f"(tried {_START_NAMES} and {_FINISH_NAMES})"
            }
        used = (start_name, finish_name)
        result.append((finish_s - start_s) * 1000.0)
    return {"durations_ms": result, "fields": list(used), "tasks": len(result)}


def main() -> None:
    framework, flow_name, step_name = sys.argv[1:4]
    try:
        out = durations(framework, flow_name, step_name)
    except Exception as exc:  # noqa: BLE001 - report, never crash the bench
        out = {"error": f"{type(exc).__name__}: {exc}", "traceback": traceback.format_exc()}
    print(json.dumps(out))


if __name__ == "__main__":
    main()
