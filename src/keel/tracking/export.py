"""Everything about one run as a JSON-ready dict, for other tools: ``keel export FLOW/RUN``.

The run record (status, times, user, host, error), parameters, tags, comments, environment
(Python, packages, git), the code snapshot's file list, every step and task with its
attempts, artifacts (name, content key, serializer, size) and resources, and every metric
point (with the task that logged it).
"""

from __future__ import annotations

import json
from typing import Any

FORMAT_VERSION = 1


def export_run(store: Any, flow: str, run_id: int) -> dict[str, Any]:
    from keel.errors import NotFoundError
    from keel.tracking.snapshot import load_manifest
    from keel.tracking.sysmetrics import task_resources

    md = store.metadata
    r = md.runs.get_run(flow, run_id)
    if r is None:
        raise NotFoundError(f"no run {flow}/{run_id}; list the runs with: keel runs {flow}")
    tasks = md.runs.list_tasks(flow, run_id)
    attempts: dict[int, list[dict[str, Any]]] = {}
    for a in md.runs.list_attempts(flow, run_id):
        attempts.setdefault(a["task_id"], []).append(
            {k: a[k] for k in ("attempt", "status", "started_at", "finished_at", "exit_code", "error_type",
                               "error_message", "traceback", "node")})
    resources = task_resources(md, flow, run_id)
    by_step: dict[str, list[dict[str, Any]]] = {}
    step_of = {}
    for t in tasks:
        step_of[t.task_id] = t.step
        by_step.setdefault(t.step, []).append({
            "task_id": t.task_id, "pathspec": f"{flow}/{run_id}/{t.step}/{t.task_id}", "status": t.status,
            "created_at": t.created_at, "started_at": t.started_at, "finished_at": t.finished_at,
            "parents": t.parents, "foreach": t.foreach, "node": t.node,
            "origin": f"{flow}/{t.origin_run_id}/{t.step}/{t.origin_task_id}" if t.origin_run_id else None,
            "attempts": attempts.get(t.task_id, []),
            "resources": resources.get(t.task_id, {}),
            "artifacts": md.runs.task_artifacts(flow, run_id, t.task_id),
        })
    steps = [{"step": s["step"], "status": s["status"], "started_at": s.get("started_at"),
              "finished_at": s.get("finished_at"), "tasks": by_step.get(s["step"], [])}
             for s in md.runs.list_steps(flow, run_id)]
    points: dict[str, list[dict[str, Any]]] = {}
    for task_id, name, step, value, ts in md.metrics.points(flow, run_id):
        points.setdefault(name, []).append({"step": step, "value": _number(value), "ts": ts,
                                            "task_id": task_id, "task_step": step_of.get(task_id)})
    env = dict(r.environment)
    snapshot = env.get("snapshot") or {}
    manifest = load_manifest(store, str(snapshot["key"])) if snapshot.get("key") else None
    return {
        "keel_export": FORMAT_VERSION,
        "run": {"pathspec": r.pathspec, "flow": r.flow, "run_id": r.run_id, "kind": r.kind,
                "status": r.effective_status, "created_at": r.created_at, "finished_at": r.finished_at,
                "duration": (r.finished_at - r.created_at) if r.finished_at else None, "user": r.user,
                "hostname": r.hostname, "origin_run_id": r.origin_run_id, "error": r.error,
                "code_hash": r.code_hash, "code_key": r.code_key},
        "params": r.params,
        "tags": r.tags,
        "comments": [{k: c[k] for k in ("id", "author", "created_at", "text")}
                     for c in md.annotations.list_comments(flow, run_id)],
        "environment": env,
        "code_snapshot": manifest,
        "steps": steps,
        "metrics": points,
    }


def _number(value: float) -> Any:
    """NaN and infinities have no JSON spelling: keep them as strings."""
    if value != value or value in (float("inf"), float("-inf")):
        return str(value)
    return value


def dumps(data: dict[str, Any]) -> str:
    from keel.tracking.jsonsafe import dumps as safe_dumps

    return safe_dumps(data, indent=2)  # params, environment...: NaN anywhere is a string
