"""Runs, steps, tasks, attempts, artifact references and parameters, in SQL (``RunStore``).

Only the process that runs a flow (the scheduler) writes a run's rows, through
:meth:`SqlRuns.write_batch` (one transaction, events included); readers only read.
Times are UNIX seconds (floats).
"""

from __future__ import annotations

import json
import os
import socket
import threading
import time
from contextlib import contextmanager
from typing import Any, Iterable, Iterator, Sequence

import sqlalchemy as sa

from keel.errors import MetadataError
from keel.ids import in_range
from keel.store.records import (
    METRIC_BLOCK, TASK_EVENT, AttemptRecord, RunRecord, StepRecord, TaskRecord, WriteOp, as_op, event_row,
)
from keel.store.schema import artifacts, attempts, events, metric_last, metrics, params, runs, steps, tags, tasks

_PARAMS, _TAGS = params, tags  # new_run's arguments shadow the table names
from keel.store.sql import Database, dialect_insert

def json_text(value: Any) -> str:
    return json.dumps(value, default=repr, sort_keys=True)


def user_name() -> str:
    """The user a run or a comment belongs to: KEEL_USER, METAFLOW_USER, then the login name."""
    from keel.settings import Settings

    user = Settings.from_env().user
    if user:
        return user
    for var in ("METAFLOW_USER", "USER", "USERNAME", "LOGNAME"):
        if os.environ.get(var):
            return os.environ[var]
    try:
        import pwd

        return pwd.getpwuid(os.getuid()).pw_name
    except (ImportError, KeyError):
        return "unknown"


class SqlRuns:
    """``RunStore`` over SQL."""

    def __init__(self, db: Database):
        self.db = db
        self._open = threading.local()  # the transaction set_run_status has open for its writes

    @contextmanager
    def _writing(self) -> Iterator[Any]:
        """A write transaction: the one this thread's ``set_run_status`` has open, else a new one."""
        conn = getattr(self._open, "conn", None)
        if conn is not None:
            yield conn
            return
        with self.db.write() as conn:
            yield conn

    # -- runs ------------------------------------------------------------------------------
    def new_run(self, flow: str, *, params: dict[str, Any], tags: Iterable[str] = (), kind: str = "flow",
                code_hash: str | None = None, code_key: str | None = None,
                environment: dict[str, Any] | None = None, origin_run_id: int | None = None,
                user: str | None = None, system_tags: Iterable[str] = ()) -> int:
        """Create a run and return its id: the flow's largest id plus one, atomically.
        ``system_tags`` (user:NAME, project:NAME, ...) are kept apart from the user's ``tags``."""
        from keel.store.liveness import process_identity

        environment = {**(environment or {}), "scheduler": process_identity()}
        system_set = set(system_tags)
        param_rows, tag_list = params, list(dict.fromkeys([*system_tags, *tags]))
        for attempt in range(50):
            try:
                with self.db.write() as conn:
                    self.db.lock_events(conn)
                    now = time.time()  # under the write lock: ids and start times rise together
                    next_id = conn.execute(
                        sa.select(sa.func.coalesce(sa.func.max(runs.c.run_id), 0) + 1).where(runs.c.flow == flow)
                    ).scalar_one()
                    conn.execute(runs.insert().values(
                        flow=flow, run_id=next_id, kind=kind, status="running", created_at=now,
                        heartbeat_at=now, user=user or user_name(), hostname=socket.gethostname(), pid=os.getpid(),
                        code_hash=code_hash, code_key=code_key, environment=json_text(environment),
                        origin_run_id=origin_run_id))
                    if param_rows:
                        conn.execute(_PARAMS.insert(), [
                            {"flow": flow, "run_id": next_id, "name": k, "value": json_text(v),
                             "num": float(v) if isinstance(v, (int, float)) and not isinstance(v, bool) else None}
                            for k, v in param_rows.items()])
                    if tag_list:
                        conn.execute(_TAGS.insert(), [{"flow": flow, "run_id": next_id, "tag": t, "system": t in system_set}
                                                     for t in tag_list])
                    conn.execute(events.insert().values(**event_row(
                        flow, next_id, "run.started", detail={"kind": kind, "origin_run_id": origin_run_id}
                        if origin_run_id else {"kind": kind})))
                    return int(next_id)
            except sa.exc.IntegrityError:  # another process took the id first (PostgreSQL)
                time.sleep(0.005 * (attempt + 1))
        raise MetadataError(f"could not allocate a run id for {flow} after 50 tries")

    def set_run_status(self, flow: str, run_id: int, status: str, *, error: str | None = None,
                       expect: str | None = None, writes: Sequence[WriteOp] = ()) -> bool:
        """Record the run's new status and, in the same transaction, its ``run.STATUS`` event.

        With ``expect``, only if the run's status is still ``expect`` (compare and set): of several
        processes that find a run crashed, one records it; the others get False. ``writes`` (as
        for ``write_batch``: its tasks' last rows) go in that transaction too, their events
        before the run's, so a follower that stops at the run's end has seen them."""
        values: dict[str, Any] = {"status": status, "heartbeat_at": time.time()}
        if status != "running":
            values["finished_at"] = time.time()
        if error is not None:
            values["error"] = error
        with self.db.write() as conn:
            self.db.lock_events(conn)
            update = runs.update().where(runs.c.flow == flow, runs.c.run_id == run_id)
            if expect is not None:
                update = update.where(runs.c.status == expect)
            if not conn.execute(update.values(**values)).rowcount and expect is not None:
                return False
            if writes:
                self._open.conn = conn
                try:
                    self.write_batch(list(writes))
                finally:
                    self._open.conn = None
            detail = {"error": error.splitlines()[0][:500]} if error else None
            conn.execute(events.insert().values(**event_row(flow, run_id, f"run.{status}", detail=detail)))
        return True

    def heartbeat(self, flow: str, run_id: int) -> None:
        with self.db.write() as conn:
            conn.execute(runs.update().where(runs.c.flow == flow, runs.c.run_id == run_id)
                         .values(heartbeat_at=time.time()))

    def get_run(self, flow: str, run_id: int) -> RunRecord | None:
        if not in_range(run_id):  # no stored id is that large; the driver would raise OverflowError
            return None
        with self.db.read() as conn:
            row = conn.execute(sa.select(runs).where(runs.c.flow == flow, runs.c.run_id == run_id)).first()
            return _run_record(row, conn) if row is not None else None

    def list_runs(self, flow: str | None = None, limit: int | None = None, *,
                  status: str | None = None) -> list[RunRecord]:
        """Runs newest first (of one flow, or of every flow; with ``status``, as stored)."""
        query = sa.select(runs).order_by(runs.c.created_at.desc(), runs.c.run_id.desc())
        if flow is not None:
            query = query.where(runs.c.flow == flow)
        if status is not None:
            query = query.where(runs.c.status == status)
        if limit:
            query = query.limit(limit)
        with self.db.read() as conn:
            return [_run_record(row, conn) for row in conn.execute(query).all()]

    def latest_run_id(self, flow: str, status: str | None = None) -> int | None:
        query = sa.select(sa.func.max(runs.c.run_id)).where(runs.c.flow == flow)
        if status is not None:
            query = query.where(runs.c.status == status)
        with self.db.read() as conn:
            latest = conn.execute(query).scalar()
        return None if latest is None else int(latest)

    def list_flows(self) -> list[str]:
        with self.db.read() as conn:
            return [r[0] for r in conn.execute(sa.select(runs.c.flow).distinct().order_by(runs.c.flow))]

    # -- steps and tasks -------------------------------------------------------------------------
    def register_steps(self, flow: str, run_id: int, names: list[str]) -> None:
        with self.db.write() as conn:
            conn.execute(steps.insert(), [{"flow": flow, "run_id": run_id, "step": n, "position": i,
                                           "status": "pending"} for i, n in enumerate(names)])

    def update_step(self, flow: str, run_id: int, step: str, **values: Any) -> None:
        with self.db.write() as conn:
            conn.execute(steps.update().where(steps.c.flow == flow, steps.c.run_id == run_id,
                                              steps.c.step == step).values(**values))

    def write_batch(self, ops: list[WriteOp]) -> None:
        """Apply many writes in one transaction. ``ops`` are write records of ``keel.store.records``:
        ``TaskWrite`` upserts a task and records its event (``TASK_EVENT``), ``AttemptWrite`` upserts
        an attempt, ``ArtifactsWrite``, ``MetricsWrite``, ``TagsWrite``, ``StepWrite``,
        ``HeartbeatWrite``, and ``EventWrite`` for other events. Anything else (a (kind, payload)
        pair of 0.1) is a TypeError, raised before anything is written."""
        if not ops:
            return
        # Upserts of one row merge into one (later columns win, as applying them in turn would),
        # and rows naming the same columns go in one executemany: a batch of 1,000 ended tasks
        # is a handful of statements, not 3,000 compiled one by one. Events keep every change.
        upserts: dict[tuple[Any, ...], dict[str, Any]] = {}
        rest: list[tuple[str, Any]] = []
        new_events: list[dict[str, Any]] = []
        for kind, payload in map(as_op, ops):
            if kind == "task":
                key: tuple[Any, ...] = (kind, payload["flow"], payload["run_id"], payload["task_id"])
                event_kind = TASK_EVENT.get(payload.get("status", ""))
                if event_kind:
                    attempt = payload.get("attempts")
                    new_events.append(event_row(
                        payload["flow"], payload["run_id"], event_kind, step=payload.get("step"),
                        task_id=payload["task_id"], attempt=max(0, attempt - 1) if attempt else 0))
            elif kind == "attempt":
                key = (kind, payload["flow"], payload["run_id"], payload["task_id"], payload["attempt"])
            else:
                if kind == "event":
                    new_events.append(payload)
                else:
                    rest.append((kind, payload))
                continue
            row = upserts.get(key)
            upserts[key] = payload if row is None else {**row, **payload}
        groups: dict[tuple[str, tuple[str, ...]], list[dict[str, Any]]] = {}
        for key, row in upserts.items():
            groups.setdefault((key[0], tuple(row)), []).append(row)
        with self._writing() as conn:
            for (kind, columns), rows in groups.items():
                if kind == "task":
                    self.db.upsert_many(conn, tasks, columns, rows, ("flow", "run_id", "task_id"))
                else:
                    self.db.upsert_many(conn, attempts, columns, rows, ("flow", "run_id", "task_id", "attempt"))
            artifact_rows = [row for kind, payload in rest if kind == "artifacts" for row in payload]
            if artifact_rows:
                conn.execute(artifacts.insert(), artifact_rows)
            metric_rows = [row for kind, payload in rest if kind == "metrics" for row in payload]
            if metric_rows:  # every task's points in one executemany, one metric_last upsert
                insert_metrics(conn, metric_rows)
            step_updates: dict[tuple[Any, Any, Any], dict[str, Any]] = {}
            for kind, payload in rest:
                if kind in ("artifacts", "metrics"):
                    pass  # written above, in one statement each
                elif kind == "tags":
                    flow, run_id, new = payload
                    insert_new_tags(conn, flow, run_id, new, False)
                elif kind == "step":  # merged per step (later values win), written below
                    flow, run_id, step, values = payload
                    step_updates[(flow, run_id, step)] = {**step_updates.get((flow, run_id, step), {}), **values}
                elif kind == "heartbeat":
                    flow, run_id = payload
                    conn.execute(runs.update().where(runs.c.flow == flow, runs.c.run_id == run_id)
                                 .values(heartbeat_at=time.time()))
                else:
                    raise ValueError(kind)
            if step_updates:
                _update_steps(conn, step_updates)
            if new_events:
                self.db.lock_events(conn)
                conn.execute(events.insert(), new_events)

    def list_steps(self, flow: str, run_id: int) -> list[StepRecord]:
        if not in_range(run_id):
            return []
        with self.db.read() as conn:
            return [StepRecord(**r._mapping) for r in conn.execute(
                sa.select(steps).where(steps.c.flow == flow, steps.c.run_id == run_id).order_by(steps.c.position))]

    def list_tasks(self, flow: str, run_id: int, step: str | None = None) -> list[TaskRecord]:
        if not in_range(run_id):
            return []
        query = sa.select(tasks).where(tasks.c.flow == flow, tasks.c.run_id == run_id).order_by(tasks.c.task_id)
        if step is not None:
            query = query.where(tasks.c.step == step)
        with self.db.read() as conn:
            return [_task_record(r) for r in conn.execute(query)]

    def get_task(self, flow: str, run_id: int, task_id: int) -> TaskRecord | None:
        if not (in_range(run_id) and in_range(task_id)):
            return None
        with self.db.read() as conn:
            row = conn.execute(sa.select(tasks).where(tasks.c.flow == flow, tasks.c.run_id == run_id,
                                                      tasks.c.task_id == task_id)).first()
        return _task_record(row) if row is not None else None

    def list_attempts(self, flow: str, run_id: int, task_id: int | None = None) -> list[AttemptRecord]:
        query = sa.select(attempts).where(attempts.c.flow == flow, attempts.c.run_id == run_id)
        if task_id is not None:
            query = query.where(attempts.c.task_id == task_id)
        with self.db.read() as conn:
            return [AttemptRecord(**r._mapping)
                    for r in conn.execute(query.order_by(attempts.c.task_id, attempts.c.attempt))]

    # -- artifact references ----------------------------------------------------------------------
    def task_artifacts(self, flow: str, run_id: int, task_id: int) -> dict[str, dict[str, Any]]:
        """name -> artifact reference (``{"key", "serializer", "size", "own"}``, the form
        ``ArtifactRef.from_dict`` reads) of one task."""
        with self.db.read() as conn:
            return {r.name: {"key": r.key, "serializer": r.serializer, "size": r.size, "own": bool(r.own)}
                    for r in conn.execute(sa.select(artifacts).where(
                        artifacts.c.flow == flow, artifacts.c.run_id == run_id, artifacts.c.task_id == task_id)
                        .order_by(artifacts.c.name))}

    def artifacts_by_key(self, keys: Iterable[str]) -> list[dict[str, Any]]:
        """Every artifact row (flow, run_id, task_id, name, key, ...) that points at one of ``keys``."""
        keys = list(dict.fromkeys(keys))
        out: list[dict[str, Any]] = []
        with self.db.read() as conn:
            for i in range(0, len(keys), 500):
                out += [dict(r._mapping) for r in conn.execute(
                    sa.select(artifacts).where(artifacts.c.key.in_(keys[i:i + 500]))
                    .order_by(artifacts.c.flow, artifacts.c.run_id, artifacts.c.task_id, artifacts.c.name))]
        return out

    def run_artifacts(self, flow: str, run_id: int) -> Iterator[dict[str, Any]]:
        with self.db.read() as conn:
            for r in conn.execute(sa.select(artifacts).where(artifacts.c.flow == flow, artifacts.c.run_id == run_id)):
                yield dict(r._mapping)


def _update_steps(conn: Any, updates: dict[tuple[Any, Any, Any], dict[str, Any]]) -> None:
    """Step rows updated with one executemany per set of columns (a 100-step cached run: one
    statement, not 100)."""
    groups: dict[tuple[str, ...], list[dict[str, Any]]] = {}
    for (flow, run_id, step), values in updates.items():
        groups.setdefault(tuple(values), []).append(
            {"b_flow": flow, "b_run_id": run_id, "b_step": step, **{f"v_{k}": v for k, v in values.items()}})
    for columns, rows in groups.items():
        statement = (steps.update()
                     .where(steps.c.flow == sa.bindparam("b_flow"), steps.c.run_id == sa.bindparam("b_run_id"),
                            steps.c.step == sa.bindparam("b_step"))
                     .values({c: sa.bindparam(f"v_{c}") for c in columns}))
        conn.execute(statement, rows)


def _run_record(row: Any, conn: Any) -> RunRecord:
    p = {r.name: json.loads(r.value) for r in conn.execute(
        sa.select(params.c.name, params.c.value).where(params.c.flow == row.flow, params.c.run_id == row.run_id))}
    t = [r.tag for r in conn.execute(
        sa.select(tags.c.tag).where(tags.c.flow == row.flow, tags.c.run_id == row.run_id,
                                    tags.c.system.is_not(True)).order_by(tags.c.tag))]  # user tags
    return run_record(row, json.loads(row.environment or "{}"), p, t)


def run_record(row: Any, environment: Any, params: dict[str, Any], tag_list: list[str]) -> RunRecord:
    # Listing 10,000 runs builds 10,000 records: fill the frozen dataclass's __dict__ in one
    # call instead of its __init__'s 17 object.__setattr__ calls (4x faster; same object).
    record = object.__new__(RunRecord)
    record.__dict__.update(
        flow=row.flow, run_id=row.run_id, kind=row.kind, status=row.status, created_at=row.created_at,
        finished_at=row.finished_at, heartbeat_at=row.heartbeat_at, user=row.user, hostname=row.hostname,
        pid=row.pid, code_hash=row.code_hash, code_key=row.code_key, environment=environment,
        origin_run_id=row.origin_run_id, error=row.error, params=params, tags=tag_list)
    return record


def insert_metrics(conn: Any, rows: list[dict[str, Any]]) -> None:
    """Metric points are most of the rows written (100,000 from one task is ordinary): they go
    through the driver's executemany, 3-4x faster than Core's insert of dicts."""
    mark = {"qmark": "?", "format": "%s", "pyformat": "%s"}.get(conn.dialect.paramstyle)
    if mark is None:
        conn.execute(metrics.insert(), rows)
    else:
        conn.exec_driver_sql(
            f"INSERT INTO metrics (flow, run_id, task_id, name, step, value, ts) VALUES ({', '.join([mark] * 7)})",
            [(r["flow"], r["run_id"], r["task_id"], r["name"], r["step"], r["value"], r["ts"]) for r in rows])
    update_metric_last(conn, rows)
    update_metric_blocks(conn, rows)


_METRIC_LAST_UPSERT: dict[str, Any] = {}   # dialect -> the metric_last upsert statement


def update_metric_last(conn: Any, rows: list[dict[str, Any]]) -> None:
    """Keep ``metric_last`` (each run's last value of each metric) up to date with points just
    inserted in ``conn``'s transaction. Points are inserted in logging order and a run's points
    are written by its one scheduler, in transactions that commit in order, so the last row of a
    key in ``rows`` is that metric's newest point."""
    last: dict[tuple[str, int, str], Any] = {}
    for r in rows:
        last[(r["flow"], r["run_id"], r["name"])] = r["value"]
    if not last:
        return
    values = [{"flow": f, "run_id": i, "name": n, "value": v} for (f, i, n), v in last.items()]
    dialect = conn.dialect.name
    if dialect in ("sqlite", "postgresql"):
        stmt = _METRIC_LAST_UPSERT.get(dialect)
        if stmt is None:  # built once: making the statement (its `excluded` columns) costs more than running it
            ins: Any = dialect_insert(dialect, metric_last)
            stmt = _METRIC_LAST_UPSERT[dialect] = ins.on_conflict_do_update(
                index_elements=["flow", "run_id", "name"], set_={"value": ins.excluded.value})
        conn.execute(stmt, values)
        return
    for row in values:   # other dialects: delete then insert, in the same transaction
        conn.execute(metric_last.delete().where(metric_last.c.flow == row["flow"],
                                                metric_last.c.run_id == row["run_id"],
                                                metric_last.c.name == row["name"]))
        conn.execute(metric_last.insert(), row)



# A range of a series' blocks summarised again from its points: count, min, max and the last
# point logged (id, step, value), per block of METRIC_BLOCK steps (range scans of
# ix_metrics_series, then one lookup of each block's last point).
_SUMMARISE_BLOCKS = f"""
INSERT INTO metric_blocks (flow, run_id, name, block, n, lo, hi, last_id, last_step, last_value)
SELECT g.flow, g.run_id, g.name, g.block, g.n, g.lo, g.hi, g.last_id, p.step, p.value
FROM (SELECT flow, run_id, name, (step - :start) / {METRIC_BLOCK} + :first AS block, count(*) AS n,
             min(value) AS lo, max(value) AS hi, max(id) AS last_id
      FROM metrics WHERE flow = :flow AND run_id = :run_id AND name = :name AND step >= :start AND step < :end
      GROUP BY 1, 2, 3, 4) g
JOIN metrics p ON p.id = g.last_id
"""


def update_metric_blocks(conn: Any, rows: list[dict[str, Any]]) -> None:
    """Keep ``metric_blocks`` (each stepped series summarised by blocks of ``METRIC_BLOCK``
    steps) up to date with points just inserted in ``conn``'s transaction: every block the
    points fall in is summarised again from the series' points, whatever their order (steps
    repeated or out of order, points of several tasks). A batch appending to a series touches
    one range of blocks: one DELETE and one INSERT ... SELECT over it."""
    touched: dict[tuple[str, int, str], set[int]] = {}
    for r in rows:
        if r["step"] is not None:
            touched.setdefault((r["flow"], r["run_id"], r["name"]), set()).add(int(r["step"]) // METRIC_BLOCK)
    spans: list[dict[str, Any]] = []
    for (flow, run_id, name), blocks in touched.items():
        ordered = sorted(blocks)
        first = prev = ordered[0]
        for block in ordered[1:] + [None]:
            if block is not None and block == prev + 1:
                prev = block
                continue
            spans.append({"flow": flow, "run_id": run_id, "name": name, "first": first, "last": prev,
                          "start": first * METRIC_BLOCK, "end": (prev + 1) * METRIC_BLOCK})
            if block is not None:
                first = prev = block
    if not spans:
        return
    conn.execute(sa.text("DELETE FROM metric_blocks WHERE flow = :flow AND run_id = :run_id AND name = :name "
                         "AND block >= :first AND block <= :last"), spans)
    conn.execute(sa.text(_SUMMARISE_BLOCKS), spans)

def insert_new_tags(conn: Any, flow: str, run_id: int, new_tags: Iterable[str], system: bool) -> None:
    """Add the tags the run does not have yet (each once)."""
    have = {r.tag for r in conn.execute(sa.select(tags.c.tag).where(tags.c.flow == flow, tags.c.run_id == run_id))}
    rows = [{"flow": flow, "run_id": run_id, "tag": t, "system": system}
            for t in dict.fromkeys(new_tags) if t not in have]
    if rows:
        conn.execute(tags.insert(), rows)


def _task_record(r: Any) -> TaskRecord:
    return TaskRecord(
        flow=r.flow, run_id=r.run_id, task_id=r.task_id, step=r.step, status=r.status, attempts=r.attempts,
        created_at=r.created_at, started_at=r.started_at, finished_at=r.finished_at,
        parents=json.loads(r.parents or "[]"), foreach=json.loads(r.foreach or "[]"),
        origin_run_id=r.origin_run_id, origin_task_id=r.origin_task_id, node=r.node)
