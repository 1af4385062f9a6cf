"""In-memory fakes of the store's interfaces (``keel.store.interfaces``), for tests of the
layers above the store (the scheduler's unit tests use them). They keep what the SQL
implementations keep and answer the same way: ``tests/store/test_contract.py`` runs one
suite against both. One lock makes each call atomic, as a transaction would."""

from __future__ import annotations

import os
import socket
import threading
import time
from typing import Any, Callable, Iterable, Iterator, Sequence

from keel.store.records import (
    TASK_EVENT, as_op, AttemptRecord, Comment, Delivery, Event, Fire, Firing, MetricBuckets, RunRecord, StepRecord,
    TaskLink, TaskRecord, WriteOp,
)
from keel.store.runs import user_name


class _Tables:
    """The fake's rows, shared by its interfaces (as the SQL ones share a database)."""

    def __init__(self) -> None:
        self.lock = threading.RLock()
        self.runs: dict[tuple[str, int], dict[str, Any]] = {}
        self.params: dict[tuple[str, int], dict[str, Any]] = {}
        self.tags: dict[tuple[str, int], dict[str, bool]] = {}
        self.steps: dict[tuple[str, int], dict[str, dict[str, Any]]] = {}
        self.tasks: dict[tuple[str, int, int], dict[str, Any]] = {}
        self.attempts: dict[tuple[str, int, int, int], dict[str, Any]] = {}
        self.artifacts: dict[tuple[str, int, int], dict[str, dict[str, Any]]] = {}
        self.metrics: list[dict[str, Any]] = []
        self.comments: list[Comment] = []
        self.fires: dict[tuple[str, str, float], Fire] = {}
        self.events: list[Event] = []
        self.firings: list[Firing] = []
        self.deliveries: list[dict[str, Any]] = []
        self.alert_cursors: dict[str, int] = {}

    def add_event(self, flow: str, run_id: int, kind: str, *, step: str | None = None, task_id: int | None = None,
                  attempt: int | None = None, detail: dict[str, Any] | None = None) -> None:
        self.events.append(Event(id=len(self.events) + 1, ts=time.time(), flow=flow, run_id=run_id, kind=kind,
                                 step=step, task_id=task_id, attempt=attempt, detail=detail or {}))


class MemoryRuns:
    def __init__(self, t: _Tables):
        self.t = t

    def new_run(self, flow: str, *, params: dict[str, Any], tags: Iterable[str] = (), kind: str = "flow",
                code_hash: str | None = None, code_key: str | None = None,
                environment: dict[str, Any] | None = None, origin_run_id: int | None = None,
                user: str | None = None, system_tags: Iterable[str] = ()) -> int:
        from keel.store.liveness import process_identity

        with self.t.lock:
            run_id = max((r for f, r in self.t.runs if f == flow), default=0) + 1
            now = time.time()
            self.t.runs[(flow, run_id)] = dict(
                flow=flow, run_id=run_id, kind=kind, status="running", created_at=now, finished_at=None,
                heartbeat_at=now, user=user or user_name(), hostname=socket.gethostname(), pid=os.getpid(),
                code_hash=code_hash, code_key=code_key,
                environment={**(environment or {}), "scheduler": process_identity()},
                origin_run_id=origin_run_id, error=None)
            self.t.params[(flow, run_id)] = dict(params)
            system_set = set(system_tags)
            self.t.tags[(flow, run_id)] = {tag: tag in system_set for tag in [*system_tags, *tags]}
            detail: dict[str, Any] = {"kind": kind}
            if origin_run_id:
                detail["origin_run_id"] = origin_run_id
            self.t.add_event(flow, run_id, "run.started", detail=detail)
            return run_id

    def set_run_status(self, flow: str, run_id: int, status: str, *, error: str | None = None,
                       expect: str | None = None, writes: Sequence[Any] = ()) -> bool:
        with self.t.lock:
            row = self.t.runs[(flow, run_id)]
            if expect is not None and row["status"] != expect:
                return False
            self.write_batch(list(writes))  # their events before the run's, as in SQL
            row.update(status=status, heartbeat_at=time.time())
            if status != "running":
                row["finished_at"] = time.time()
            if error is not None:
                row["error"] = error
            self.t.add_event(flow, run_id, f"run.{status}",
                             detail={"error": error.splitlines()[0][:500]} if error else None)
        return True

    def heartbeat(self, flow: str, run_id: int) -> None:
        with self.t.lock:
            self.t.runs[(flow, run_id)]["heartbeat_at"] = time.time()

    def _record(self, key: tuple[str, int]) -> RunRecord:
        return RunRecord(**self.t.runs[key], params=dict(self.t.params.get(key, {})),
                         tags=sorted(t for t, system in self.t.tags.get(key, {}).items() if not system))

    def tag_kinds_of(self, flow: str, run_id: int) -> dict[str, bool]:
        """Every tag of a run, user and system (for the query fake)."""
        with self.t.lock:
            return dict(self.t.tags.get((flow, run_id), {}))

    def get_run(self, flow: str, run_id: int) -> RunRecord | None:
        with self.t.lock:
            return self._record((flow, run_id)) if (flow, run_id) in self.t.runs else None

    def list_runs(self, flow: str | None = None, limit: int | None = None, *,
                  status: str | None = None) -> list[RunRecord]:
        with self.t.lock:
            keys = sorted((k for k in self.t.runs if (flow is None or k[0] == flow)
                           and (status is None or self.t.runs[k]["status"] == status)),
                          key=lambda k: (self.t.runs[k]["created_at"], k[1]), reverse=True)
            return [self._record(k) for k in keys[:limit or None]]

    def latest_run_id(self, flow: str, status: str | None = None) -> int | None:
        with self.t.lock:
            return max((r for (f, r), row in self.t.runs.items()
                        if f == flow and (status is None or row["status"] == status)), default=None)

    def list_flows(self) -> list[str]:
        with self.t.lock:
            return sorted({f for f, _ in self.t.runs})

    def register_steps(self, flow: str, run_id: int, names: list[str]) -> None:
        with self.t.lock:
            self.t.steps[(flow, run_id)] = {n: dict(flow=flow, run_id=run_id, step=n, position=i, status="pending",
                                                    started_at=None, finished_at=None)
                                            for i, n in enumerate(names)}

    def update_step(self, flow: str, run_id: int, step: str, **values: Any) -> None:
        with self.t.lock:
            self.t.steps[(flow, run_id)][step].update(values)

    def write_batch(self, ops: list[WriteOp]) -> None:
        applied = [as_op(op) for op in ops]  # a stray value fails the batch before any of it is kept
        with self.t.lock:
            for kind, payload in applied:
                if kind == "task":
                    key = (payload["flow"], payload["run_id"], payload["task_id"])
                    row = self.t.tasks.setdefault(key, {"attempts": 0, "started_at": None, "finished_at": None,
                                                        "parents": None, "foreach": None, "origin_run_id": None,
                                                        "origin_task_id": None, "node": None})
                    row.update(payload)
                    event_kind = TASK_EVENT.get(payload.get("status", ""))
                    if event_kind:
                        attempt = payload.get("attempts")
                        self.t.add_event(payload["flow"], payload["run_id"], event_kind, step=payload.get("step"),
                                         task_id=payload["task_id"], attempt=max(0, attempt - 1) if attempt else 0)
                elif kind == "attempt":
                    key4 = (payload["flow"], payload["run_id"], payload["task_id"], payload["attempt"])
                    base = {f: None for f in AttemptRecord.__dataclass_fields__}
                    self.t.attempts.setdefault(key4, base).update(payload)
                elif kind == "artifacts":
                    for r in payload:
                        self.t.artifacts.setdefault((r["flow"], r["run_id"], r["task_id"]), {})[r["name"]] = {
                            "key": r["key"], "serializer": r["serializer"], "size": r["size"], "own": bool(r["own"])}
                elif kind == "metrics":
                    self.t.metrics.extend(dict(r) for r in payload)
                elif kind == "tags":
                    flow, run_id, new = payload
                    have = self.t.tags.setdefault((flow, run_id), {})
                    for tag in new:
                        have.setdefault(tag, False)
                elif kind == "step":
                    flow, run_id, step, values = payload
                    self.t.steps[(flow, run_id)][step].update(values)
                elif kind == "heartbeat":
                    self.heartbeat(*payload)
                elif kind == "event":
                    import json

                    self.t.add_event(payload["flow"], payload["run_id"], payload["kind"], step=payload.get("step"),
                                     task_id=payload.get("task_id"), attempt=payload.get("attempt"),
                                     detail=json.loads(payload["detail"]) if payload.get("detail") else None)
                else:
                    raise ValueError(kind)

    def list_steps(self, flow: str, run_id: int) -> list[StepRecord]:
        with self.t.lock:
            rows = self.t.steps.get((flow, run_id), {}).values()
            return [StepRecord(**r) for r in sorted(rows, key=lambda r: r["position"])]

    def _task(self, row: dict[str, Any]) -> TaskRecord:
        import json

        def decode(v: Any) -> Any:
            return json.loads(v) if isinstance(v, str) else (v or [])

        return TaskRecord(**{**row, "parents": decode(row.get("parents")), "foreach": decode(row.get("foreach"))})

    def list_tasks(self, flow: str, run_id: int, step: str | None = None) -> list[TaskRecord]:
        with self.t.lock:
            return [self._task(row) for key, row in sorted(self.t.tasks.items())
                    if key[:2] == (flow, run_id) and (step is None or row["step"] == step)]

    def get_task(self, flow: str, run_id: int, task_id: int) -> TaskRecord | None:
        with self.t.lock:
            row = self.t.tasks.get((flow, run_id, task_id))
            return self._task(row) if row is not None else None

    def list_attempts(self, flow: str, run_id: int, task_id: int | None = None) -> list[AttemptRecord]:
        with self.t.lock:
            return [AttemptRecord(**row) for key, row in sorted(self.t.attempts.items())
                    if key[:2] == (flow, run_id) and (task_id is None or key[2] == task_id)]

    def task_artifacts(self, flow: str, run_id: int, task_id: int) -> dict[str, dict[str, Any]]:
        with self.t.lock:
            return {n: dict(a) for n, a in sorted(self.t.artifacts.get((flow, run_id, task_id), {}).items())}

    def artifacts_by_key(self, keys: Iterable[str]) -> list[dict[str, Any]]:
        wanted = set(keys)
        with self.t.lock:
            return sorted(({"flow": f, "run_id": r, "task_id": t, "name": n, **a}
                           for (f, r, t), arts in self.t.artifacts.items() for n, a in arts.items()
                           if a["key"] in wanted), key=lambda a: (a["flow"], a["run_id"], a["task_id"], a["name"]))

    def run_artifacts(self, flow: str, run_id: int) -> Iterator[dict[str, Any]]:
        with self.t.lock:
            rows = [{"flow": f, "run_id": r, "task_id": t, "name": n, **a}
                    for (f, r, t), arts in self.t.artifacts.items() if (f, r) == (flow, run_id)
                    for n, a in arts.items()]
        return iter(rows)


class MemoryMetrics:
    def __init__(self, t: _Tables):
        self.t = t

    def _of(self, flow: str, run_id: int) -> list[dict[str, Any]]:
        with self.t.lock:
            return [m for m in self.t.metrics if m["flow"] == flow and m["run_id"] == run_id]

    def run_metrics(self, flow: str, run_id: int, name: str | None = None,
                    task_id: int | None = None) -> dict[str, list[tuple[Any, float, float]]]:
        out: dict[str, list[tuple[Any, float, float]]] = {}
        for m in self._of(flow, run_id):
            if (name is None or m["name"] == name) and (task_id is None or m["task_id"] == task_id):
                out.setdefault(m["name"], []).append((m["step"], m["value"], m["ts"]))
        return out

    def points(self, flow: str, run_id: int) -> list[tuple[int, str, Any, float, float]]:
        return [(m["task_id"], m["name"], m["step"], m["value"], m["ts"]) for m in self._of(flow, run_id)]

    def last_values(self, flow: str, run_id: int) -> dict[str, float]:
        out: dict[str, float] = {}
        for m in self._of(flow, run_id):
            out[m["name"]] = m["value"]
        return out

    def last_of_runs(self, runs: Iterable[tuple[str, int]],
                     names: Iterable[str]) -> dict[tuple[str, int], dict[str, float]]:
        wanted = set(names)
        out: dict[tuple[str, int], dict[str, float]] = {}
        for flow, run_id in runs:
            last = {k: v for k, v in self.last_values(flow, run_id).items() if k in wanted}
            if last:
                out[(flow, run_id)] = last
        return out

    def names_of_runs(self, runs: Iterable[tuple[str, int]]) -> list[str]:
        return sorted({name for flow, run_id in runs for name in self.last_values(flow, run_id)})

    def bucketed(self, flow: str, run_id: int, name: str, buckets: int, lo: float | None = None,
                 hi: float | None = None, task_id: int | None = None) -> MetricBuckets:
        from keel.store.records import bucket_points

        return bucket_points(self.run_metrics(flow, run_id, name, task_id=task_id).get(name, []), buckets, lo, hi)

    def bucketed_runs(self, runs: Iterable[tuple[str, int]], name: str, buckets: int, lo: float | None = None,
                      hi: float | None = None) -> dict[tuple[str, int], MetricBuckets]:
        from keel.store.records import bucket_runs

        keys = list(dict.fromkeys((str(f), int(r)) for f, r in runs))
        return bucket_runs({k: self.run_metrics(*k, name).get(name, []) for k in keys}, buckets, lo, hi)

    def max_per_task(self, flow: str, run_id: int, names: Iterable[str]) -> list[tuple[int, str, float]]:
        wanted, best = set(names), {}  # type: ignore[var-annotated]
        for m in self._of(flow, run_id):
            if m["name"] in wanted:
                key = (m["task_id"], m["name"])
                best[key] = max(best.get(key, m["value"]), m["value"])
        return [(t, n, v) for (t, n), v in best.items()]


class MemoryAnnotations:
    def __init__(self, t: _Tables):
        self.t = t

    def add_tags(self, flow: str, run_id: int, new_tags: Iterable[str], *, system: bool = False) -> None:
        new_tags = list(new_tags)
        with self.t.lock:
            have = self.t.tags.setdefault((flow, run_id), {})
            for tag in new_tags:
                have.setdefault(tag, system)
            self.t.add_event(flow, run_id, "run.tagged", detail={"tags": new_tags})

    def tag_kinds(self, flow: str, run_id: int) -> dict[str, bool]:
        with self.t.lock:
            return dict(self.t.tags.get((flow, run_id), {}))

    def remove_tags(self, flow: str, run_id: int, old_tags: Iterable[str]) -> None:
        """Remove user tags; a system tag is never removed."""
        old_tags = list(old_tags)
        with self.t.lock:
            have = self.t.tags.get((flow, run_id), {})
            for tag in old_tags:
                if have.get(tag) is False:
                    del have[tag]
            self.t.add_event(flow, run_id, "run.untagged", detail={"tags": old_tags})

    def add_comment(self, flow: str, run_id: int, text: str, *, author: str | None = None) -> Comment:
        with self.t.lock:
            c = Comment(id=len(self.t.comments) + 1, flow=flow, run_id=run_id, author=author or user_name(),
                        created_at=time.time(), text=text)
            self.t.comments.append(c)
            self.t.add_event(flow, run_id, "run.commented", detail={"comment": c.id})
            return c

    def list_comments(self, flow: str, run_id: int) -> list[Comment]:
        with self.t.lock:
            return [c for c in self.t.comments if (c.flow, c.run_id) == (flow, run_id)]


class MemoryEvents:
    def __init__(self, t: _Tables):
        self.t = t

    def read(self, after: int = 0, *, flow: str | None = None, run_id: int | None = None,
             limit: int | None = 1000, kinds: tuple[str, ...] | None = None) -> list[Event]:
        with self.t.lock:
            out = [e for e in self.t.events[after:]
                   if (flow is None or e.flow == flow) and (run_id is None or e.run_id == run_id)
                   and (kinds is None or e.kind in kinds)]
        return out[:limit] if limit else out

    def last_id(self) -> int:
        with self.t.lock:
            return len(self.t.events)

    def follow(self, after: int = 0, *, flow: str | None = None, run_id: int | None = None,
               poll: float = 0.2, until: Callable[[Event], bool] | None = None,
               timeout: float | None = None) -> Iterator[Event]:
        from keel.store.events import follow

        return follow(self.read, after, flow=flow, run_id=run_id, poll=poll, until=until, timeout=timeout)


class MemorySchedules:
    def __init__(self, t: _Tables):
        self.t = t

    def claim_fire(self, project: str, job: str, fire_time: float, *, status: str = "started",
                   note: str | None = None) -> bool:
        with self.t.lock:
            if (project, job, fire_time) in self.t.fires:
                return False
            self.t.fires[(project, job, fire_time)] = Fire(project=project, job=job, fire_time=fire_time,
                                                           fired_at=time.time(), status=status, run_id=None, note=note)
            return True

    def update_fire(self, project: str, job: str, fire_time: float, **values: Any) -> None:
        import dataclasses

        with self.t.lock:
            key = (project, job, fire_time)
            if key in self.t.fires:
                self.t.fires[key] = dataclasses.replace(self.t.fires[key], **values)

    def list_fires(self, project: str, job: str | None = None, limit: int | None = None) -> list[Fire]:
        with self.t.lock:
            out = sorted((f for f in self.t.fires.values() if f.project == project and (job is None or f.job == job)),
                         key=lambda f: f.fire_time, reverse=True)
        return out[:limit] if limit else out


class MemoryAlerts:
    """The fake of ``keel.store.alerts.SqlAlerts``."""

    def __init__(self, t: _Tables):
        self.t = t

    def fire(self, rule: str, flow: str, run_id: int, key: str, *, summary: str, fields: dict[str, Any],
             targets: list[dict[str, Any]], cooldown: float = 0.0, now: float | None = None,
             cursor: tuple[str, int] | None = None) -> Firing | None:
        now = time.time() if now is None else now
        with self.t.lock:
            if any((f.rule, f.flow, f.run_id, f.key) == (rule, flow, run_id, key) for f in self.t.firings):
                return None   # as SQL: the transaction, cursor included, is rolled back
            if cursor is not None:
                self.t.alert_cursors[cursor[0]] = cursor[1]
            last = max((f.fired_at for f in self.t.firings if f.rule == rule), default=None)
            if cooldown > 0 and last is not None and now - last < cooldown:
                return None
            firing = Firing(id=len(self.t.firings) + 1, rule=rule, flow=flow, run_id=run_id, key=key, fired_at=now,
                            summary=summary, fields=dict(fields))
            self.t.firings.append(firing)
            for i, target in enumerate(targets):
                self.t.deliveries.append(dict(id=len(self.t.deliveries) + 1, firing_id=firing.id, action=i,
                                              target=dict(target), status="pending", attempts=0, next_at=now,
                                              delivered_at=None, last_error=None))
            return firing

    def cursor(self, name: str) -> int | None:
        with self.t.lock:
            return self.t.alert_cursors.get(name)

    def save_cursor(self, name: str, event_id: int) -> None:
        with self.t.lock:
            self.t.alert_cursors[name] = int(event_id)

    def claim(self, *, now: float | None = None, lease: float = 30.0, limit: int = 50) -> list[Delivery]:
        now = time.time() if now is None else now
        with self.t.lock:
            due = sorted((d for d in self.t.deliveries if d["status"] in ("pending", "sending") and d["next_at"] <= now),
                         key=lambda d: d["next_at"])[:limit]
            for d in due:
                d.update(status="sending", next_at=now + lease, attempts=d["attempts"] + 1)
            return [Delivery(**d) for d in due]

    def delivered(self, delivery_id: int, *, now: float | None = None) -> None:
        with self.t.lock:
            self.t.deliveries[delivery_id - 1].update(status="delivered", last_error=None,
                                                      delivered_at=time.time() if now is None else now)

    def retry_later(self, delivery_id: int, error: str, next_at: float | None) -> None:
        with self.t.lock:
            d = self.t.deliveries[delivery_id - 1]
            d["last_error"] = error[:2000]
            d.update(status="failed") if next_at is None else d.update(status="pending", next_at=next_at)

    def firings(self, rule: str | None = None, limit: int | None = 50, *, flow: str | None = None,
                run_id: int | None = None) -> list[Firing]:
        with self.t.lock:
            out = sorted((f for f in self.t.firings if (rule is None or f.rule == rule)
                          and (flow is None or f.flow == flow) and (run_id is None or f.run_id == run_id)),
                         key=lambda f: (f.fired_at, f.id), reverse=True)
        return out[:limit] if limit else out

    def get_firing(self, firing_id: int) -> Firing | None:
        with self.t.lock:
            return self.t.firings[firing_id - 1] if 0 < firing_id <= len(self.t.firings) else None

    def deliveries(self, firing_id: int) -> list[Delivery]:
        with self.t.lock:
            return [Delivery(**d) for d in self.t.deliveries if d["firing_id"] == firing_id]


class MemoryTaskLinks:
    def __init__(self) -> None:
        self._links: dict[tuple[str, int, int, str], TaskLink] = {}
        self._lock = threading.Lock()

    def add(self, flow: str, run_id: int, task_id: int, name: str, url: str) -> None:
        with self._lock:
            self._links[(flow, run_id, task_id, name)] = TaskLink(flow, run_id, task_id, name, url, time.time())

    def list(self, flow: str, run_id: int, task_id: int | None = None) -> list[TaskLink]:
        with self._lock:
            return [link for key, link in sorted(self._links.items())
                    if key[:2] == (flow, run_id) and (task_id is None or key[2] == task_id)]


class MemoryMetadata:
    """Every interface over one set of in-memory rows, shaped like ``MetadataStore``."""

    def __init__(self) -> None:
        tables = _Tables()
        self.runs = MemoryRuns(tables)
        self.metrics = MemoryMetrics(tables)
        self.annotations = MemoryAnnotations(tables)
        self.events = MemoryEvents(tables)
        self.schedules = MemorySchedules(tables)
        self.alerts = MemoryAlerts(tables)


        self.links = MemoryTaskLinks()
        from keel.store.memory_query import MemoryRunQuery

        self.query = MemoryRunQuery(self.runs, self.metrics)

    def close(self) -> None:
        pass

