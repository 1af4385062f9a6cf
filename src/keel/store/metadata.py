"""The metadata database: one schema for runs, steps, tasks, attempts, artifacts, parameters,
tags and metrics, written with SQLAlchemy Core so SQLite (the default, in WAL mode) and
PostgreSQL are dialects of the same code.

Only the process that runs a flow (the scheduler) writes a run's rows; readers (client, CLI,
dashboard) only read. Times are UNIX seconds (floats).
"""

from __future__ import annotations

import json
import os
import socket
import time
from dataclasses import dataclass, field
from typing import Any, Iterable, Iterator

import sqlalchemy as sa
from sqlalchemy import event

from keel.errors import MetadataError

# Defaults only: the settings are read when needed from KEEL_HEARTBEAT_SECONDS and
# KEEL_CRASH_AFTER_SECONDS (keel.store.liveness); a running run is shown as crashed as soon
# as its scheduler's process is gone (same machine), or its heartbeat is that old.
HEARTBEAT_SECONDS = 2.0
CRASH_AFTER_SECONDS = 6.0

_meta = sa.MetaData()

runs = sa.Table(
    "runs", _meta,
    sa.Column("flow", sa.String(255), primary_key=True),
    sa.Column("run_id", sa.Integer, primary_key=True, autoincrement=False),
    sa.Column("kind", sa.String(16), nullable=False, default="flow"),
    sa.Column("status", sa.String(16), nullable=False),
    sa.Column("created_at", sa.Float, nullable=False),
    sa.Column("finished_at", sa.Float),
    sa.Column("heartbeat_at", sa.Float),
    sa.Column("user", sa.String(255)),
    sa.Column("hostname", sa.String(255)),
    sa.Column("pid", sa.Integer),
    sa.Column("code_hash", sa.String(64)),
    sa.Column("code_key", sa.String(64)),
    sa.Column("environment", sa.Text),
    sa.Column("origin_run_id", sa.Integer),
    sa.Column("error", sa.Text),
)
sa.Index("ix_runs_created", runs.c.created_at)

steps = sa.Table(
    "steps", _meta,
    sa.Column("flow", sa.String(255), primary_key=True),
    sa.Column("run_id", sa.Integer, primary_key=True, autoincrement=False),
    sa.Column("step", sa.String(255), primary_key=True),
    sa.Column("position", sa.Integer, nullable=False),
    sa.Column("status", sa.String(16), nullable=False),
    sa.Column("started_at", sa.Float),
    sa.Column("finished_at", sa.Float),
)

tasks = sa.Table(
    "tasks", _meta,
    sa.Column("flow", sa.String(255), primary_key=True),
    sa.Column("run_id", sa.Integer, primary_key=True, autoincrement=False),
    sa.Column("task_id", sa.Integer, primary_key=True, autoincrement=False),
    sa.Column("step", sa.String(255), nullable=False),
    sa.Column("status", sa.String(16), nullable=False),
    sa.Column("attempts", sa.Integer, nullable=False, default=0),
    sa.Column("created_at", sa.Float, nullable=False),
    sa.Column("started_at", sa.Float),
    sa.Column("finished_at", sa.Float),
    sa.Column("parents", sa.Text),          # JSON list of task ids
    sa.Column("foreach", sa.Text),          # JSON list of [step, var, index, num_splits]
    sa.Column("origin_run_id", sa.Integer),  # resume: the task was reused from this run...
    sa.Column("origin_task_id", sa.Integer),  # ...and this task
    sa.Column("node", sa.String(255)),
)
sa.Index("ix_tasks_step", tasks.c.flow, tasks.c.run_id, tasks.c.step)

attempts = sa.Table(
    "attempts", _meta,
    sa.Column("flow", sa.String(255), primary_key=True),
    sa.Column("run_id", sa.Integer, primary_key=True, autoincrement=False),
    sa.Column("task_id", sa.Integer, primary_key=True, autoincrement=False),
    sa.Column("attempt", sa.Integer, primary_key=True, autoincrement=False),
    sa.Column("status", sa.String(16), nullable=False),
    sa.Column("started_at", sa.Float),
    sa.Column("finished_at", sa.Float),
    sa.Column("exit_code", sa.Integer),
    sa.Column("error_type", sa.String(255)),
    sa.Column("error_message", sa.Text),
    sa.Column("traceback", sa.Text),
    sa.Column("node", sa.String(255)),
)

artifacts = sa.Table(
    "artifacts", _meta,
    sa.Column("flow", sa.String(255), primary_key=True),
    sa.Column("run_id", sa.Integer, primary_key=True, autoincrement=False),
    sa.Column("task_id", sa.Integer, primary_key=True, autoincrement=False),
    sa.Column("name", sa.String(255), primary_key=True),
    sa.Column("key", sa.String(64), nullable=False),
    sa.Column("serializer", sa.String(32), nullable=False),
    sa.Column("size", sa.BigInteger, nullable=False),
    sa.Column("own", sa.Boolean, nullable=False, default=True),  # set by this task, not inherited
)

params = sa.Table(
    "params", _meta,
    sa.Column("flow", sa.String(255), primary_key=True),
    sa.Column("run_id", sa.Integer, primary_key=True, autoincrement=False),
    sa.Column("name", sa.String(255), primary_key=True),
    sa.Column("value", sa.Text),             # JSON
    sa.Column("num", sa.Float),              # the value when it is a number, for search
)

tags = sa.Table(
    "tags", _meta,
    sa.Column("flow", sa.String(255), primary_key=True),
    sa.Column("run_id", sa.Integer, primary_key=True, autoincrement=False),
    sa.Column("tag", sa.String(255), primary_key=True),
    sa.Column("system", sa.Boolean, nullable=False, default=False),
)
sa.Index("ix_tags_tag", tags.c.tag)

metrics = sa.Table(
    "metrics", _meta,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("flow", sa.String(255), nullable=False),
    sa.Column("run_id", sa.Integer, nullable=False),
    sa.Column("task_id", sa.Integer, nullable=False),
    sa.Column("name", sa.String(255), nullable=False),
    sa.Column("step", sa.BigInteger),
    sa.Column("value", sa.Float, nullable=False),
    sa.Column("ts", sa.Float, nullable=False),
)
sa.Index("ix_metrics_run", metrics.c.flow, metrics.c.run_id, metrics.c.name)


comments = sa.Table(
    "comments", _meta,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("flow", sa.String(255), nullable=False),
    sa.Column("run_id", sa.Integer, nullable=False),
    sa.Column("author", sa.String(255), nullable=False),
    sa.Column("created_at", sa.Float, nullable=False),
    sa.Column("text", sa.Text, nullable=False),
)
sa.Index("ix_comments_run", comments.c.flow, comments.c.run_id)

# What `keel scheduler` fired: one row per (project, job, cron time), claimed before the run
# starts, so a restarted scheduler never fires the same time twice.
schedule_fires = sa.Table(
    "schedule_fires", _meta,
    sa.Column("project", sa.String(255), primary_key=True),
    sa.Column("job", sa.String(255), primary_key=True),
    sa.Column("fire_time", sa.Float, primary_key=True, autoincrement=False),
    sa.Column("fired_at", sa.Float, nullable=False),
    sa.Column("status", sa.String(16), nullable=False),   # "started" | "skipped"
    sa.Column("run_id", sa.Integer),
    sa.Column("note", sa.Text),
)

_PARAMS, _TAGS = params, tags  # new_run's arguments shadow the table names


@dataclass
class RunRecord:
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
    environment: dict[str, Any]
    origin_run_id: int | None
    error: str | None
    params: dict[str, Any] = field(default_factory=dict)
    tags: list[str] = field(default_factory=list)

    @property
    def pathspec(self) -> str:
        return f"{self.flow}/{self.run_id}"

    @property
    def effective_status(self) -> str:
        """The status a reader should show: a 'running' run whose scheduler is gone crashed.

        On the scheduler's own machine a dead process is seen at once; elsewhere, by a
        heartbeat older than three beats (see :mod:`keel.store.liveness`)."""
        if self.status == "running":
            from keel.store.liveness import crash_after_seconds, process_alive

            alive = process_alive(self.environment.get("scheduler"))
            if alive is not None:
                return "running" if alive else "crashed"
            beat = self.heartbeat_at or self.created_at
            if time.time() - beat > crash_after_seconds():
                return "crashed"
        return self.status


@dataclass
class TaskRecord:
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


def _json(value: Any) -> str:
    return json.dumps(value, default=repr, sort_keys=True)


def _sqlite_pragmas(dbapi_conn: Any, _record: Any) -> None:
    cur = dbapi_conn.cursor()
    cur.execute("PRAGMA journal_mode=WAL")
    cur.execute("PRAGMA synchronous=NORMAL")
    cur.execute("PRAGMA busy_timeout=60000")
    cur.execute("PRAGMA foreign_keys=OFF")
    cur.close()


class MetadataStore:
    """Reads and writes the metadata database at ``url`` (``sqlite:///path`` or ``postgresql://``)."""

    def __init__(self, url: str):
        self.url = url
        self._upsert_statements: dict[tuple[str, tuple[str, ...]], Any] = {}  # built once per column set
        try:
            if url.startswith("sqlite"):
                path = url.split("///", 1)[1] if "///" in url else ""
                if path and path != ":memory:":
                    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
                args = {"timeout": 60, "isolation_level": None}
                # Readers run in autocommit; writers BEGIN IMMEDIATE so that they queue on the
                # write lock (busy_timeout) instead of failing to upgrade a read lock.
                self.engine = sa.create_engine(url, connect_args=args)
                self._writer = sa.create_engine(url, connect_args=args)
                for engine in (self.engine, self._writer):
                    event.listen(engine, "connect", _sqlite_pragmas)
                event.listen(self._writer, "begin", lambda conn: conn.exec_driver_sql("BEGIN IMMEDIATE"))
            else:
                if url.startswith("postgresql://"):
                    url = "postgresql+psycopg://" + url[len("postgresql://"):]
                self.engine = sa.create_engine(url, pool_pre_ping=True)
                self._writer = self.engine
            self._create_schema()
        except sa.exc.SQLAlchemyError as exc:
            raise MetadataError(f"cannot open the metadata database {self.url}: {exc.__class__.__name__}: "
                                f"{str(exc).splitlines()[0]}") from exc

    def _create_schema(self) -> None:
        for attempt in range(5):
            try:
                _meta.create_all(self._writer, checkfirst=True)
                return
            except sa.exc.OperationalError:
                if attempt == 4:
                    raise
                time.sleep(0.1 * (attempt + 1))

    def close(self) -> None:
        self.engine.dispose()
        self._writer.dispose()

    def _write(self) -> Any:
        return self._writer.begin()

    # -- runs ------------------------------------------------------------------------------
    def new_run(self, flow: str, *, params: dict[str, Any], tags: Iterable[str] = (), kind: str = "flow",
                code_hash: str | None = None, code_key: str | None = None,
                environment: dict[str, Any] | None = None, origin_run_id: int | None = None,
                user: str | None = None) -> int:
        """Create a run and return its id: the flow's largest id plus one, atomically."""
        from keel.store.liveness import process_identity

        environment = {**(environment or {}), "scheduler": process_identity()}
        for attempt in range(20):
            try:
                with self._write() as conn:
                    now = time.time()  # under the write lock: ids and start times rise together
                    next_id = conn.execute(
                        sa.select(sa.func.coalesce(sa.func.max(runs.c.run_id), 0) + 1).where(runs.c.flow == flow)
                    ).scalar_one()
                    conn.execute(runs.insert().values(
                        flow=flow, run_id=next_id, kind=kind, status="running", created_at=now,
                        heartbeat_at=now, user=user or _user(), hostname=socket.gethostname(), pid=os.getpid(),
                        code_hash=code_hash, code_key=code_key, environment=_json(environment or {}),
                        origin_run_id=origin_run_id))
                    if params:
                        conn.execute(_PARAMS.insert(), [
                            {"flow": flow, "run_id": next_id, "name": k, "value": _json(v),
                             "num": float(v) if isinstance(v, (int, float)) and not isinstance(v, bool) else None}
                            for k, v in params.items()])
                    tag_rows = [{"flow": flow, "run_id": next_id, "tag": t, "system": False} for t in dict.fromkeys(tags)]
                    if tag_rows:
                        conn.execute(_TAGS.insert(), tag_rows)
                    return int(next_id)
            except sa.exc.IntegrityError:  # another process took the id first (PostgreSQL)
                time.sleep(0.005 * (attempt + 1))
        raise MetadataError(f"could not allocate a run id for {flow} after 20 tries")

    def set_run_status(self, flow: str, run_id: int, status: str, *, error: str | None = None) -> None:
        values: dict[str, Any] = {"status": status, "heartbeat_at": time.time()}
        if status != "running":
            values["finished_at"] = time.time()
        if error is not None:
            values["error"] = error
        with self._write() as conn:
            conn.execute(runs.update().where(runs.c.flow == flow, runs.c.run_id == run_id).values(**values))

    def heartbeat(self, flow: str, run_id: int) -> None:
        with self._write() as conn:
            conn.execute(runs.update().where(runs.c.flow == flow, runs.c.run_id == run_id)
                         .values(heartbeat_at=time.time()))

    def _run_record(self, row: Any, conn: Any) -> RunRecord:
        p = {r.name: json.loads(r.value) for r in conn.execute(
            sa.select(params.c.name, params.c.value).where(params.c.flow == row.flow, params.c.run_id == row.run_id))}
        t = [r.tag for r in conn.execute(
            sa.select(tags.c.tag).where(tags.c.flow == row.flow, tags.c.run_id == row.run_id).order_by(tags.c.tag))]
        return RunRecord(
            flow=row.flow, run_id=row.run_id, kind=row.kind, status=row.status, created_at=row.created_at,
            finished_at=row.finished_at, heartbeat_at=row.heartbeat_at, user=row.user, hostname=row.hostname,
            pid=row.pid, code_hash=row.code_hash, code_key=row.code_key,
            environment=json.loads(row.environment or "{}"), origin_run_id=row.origin_run_id, error=row.error,
            params=p, tags=t)

    def get_run(self, flow: str, run_id: int) -> RunRecord | None:
        with self.engine.connect() as conn:
            row = conn.execute(sa.select(runs).where(runs.c.flow == flow, runs.c.run_id == run_id)).first()
            return self._run_record(row, conn) if row is not None else None

    def list_runs(self, flow: str | None = None, limit: int | None = None) -> list[RunRecord]:
        """Runs newest first (of one flow, or of every flow)."""
        query = sa.select(runs).order_by(runs.c.created_at.desc(), runs.c.run_id.desc())
        if flow is not None:
            query = query.where(runs.c.flow == flow)
        if limit:
            query = query.limit(limit)
        with self.engine.connect() as conn:
            return [self._run_record(row, conn) for row in conn.execute(query).all()]

    def latest_run_id(self, flow: str, status: str | None = None) -> int | None:
        query = sa.select(sa.func.max(runs.c.run_id)).where(runs.c.flow == flow)
        if status is not None:
            query = query.where(runs.c.status == status)
        with self.engine.connect() as conn:
            return conn.execute(query).scalar()

    def list_flows(self) -> list[str]:
        with self.engine.connect() as conn:
            return [r[0] for r in conn.execute(sa.select(runs.c.flow).distinct().order_by(runs.c.flow))]

    def add_tags(self, flow: str, run_id: int, new_tags: Iterable[str], *, system: bool = False) -> None:
        with self._write() as conn:
            _insert_new_tags(conn, flow, run_id, new_tags, system)

    def remove_tags(self, flow: str, run_id: int, old_tags: Iterable[str]) -> None:
        with self._write() as conn:
            conn.execute(tags.delete().where(tags.c.flow == flow, tags.c.run_id == run_id,
                                             tags.c.tag.in_(list(old_tags))))

    def add_comment(self, flow: str, run_id: int, text: str, *, author: str | None = None) -> dict[str, Any]:
        """Keep a comment on a run, with its author (KEEL_USER or the login name) and time."""
        row = {"flow": flow, "run_id": run_id, "author": author or _user(), "created_at": time.time(), "text": text}
        with self._write() as conn:
            row["id"] = conn.execute(comments.insert().values(**row)).inserted_primary_key[0]
        return row

    def list_comments(self, flow: str, run_id: int) -> list[dict[str, Any]]:
        """A run's comments, oldest first: dicts of id, author, created_at, text."""
        with self.engine.connect() as conn:
            return [{"id": r.id, "author": r.author, "created_at": r.created_at, "text": r.text}
                    for r in conn.execute(sa.select(comments).where(comments.c.flow == flow,
                                                                    comments.c.run_id == run_id)
                                          .order_by(comments.c.created_at, comments.c.id))]

    # -- steps and tasks -------------------------------------------------------------------------
    def register_steps(self, flow: str, run_id: int, names: list[str]) -> None:
        with self._write() as conn:
            conn.execute(steps.insert(), [{"flow": flow, "run_id": run_id, "step": n, "position": i,
                                           "status": "pending"} for i, n in enumerate(names)])

    def update_step(self, flow: str, run_id: int, step: str, **values: Any) -> None:
        with self._write() as conn:
            conn.execute(steps.update().where(steps.c.flow == flow, steps.c.run_id == run_id,
                                              steps.c.step == step).values(**values))

    def write_batch(self, ops: list[tuple[str, Any]]) -> None:
        """Apply many writes in one transaction. ``ops`` are (kind, payload) pairs made by the
        scheduler: ("task", row dict) upserts a task, ("attempt", row dict) upserts an attempt,
        ("artifacts", rows), ("metrics", rows), ("tags", (flow, run_id, [tags])),
        ("step", (flow, run_id, step, values))."""
        if not ops:
            return
        # Upserts of one row merge into one (later columns win, as applying them in turn
        # would), and rows naming the same columns go in one executemany: a 1,000-task
        # batch is a handful of statements, not 3,000 compiled one by one.
        upserts: dict[tuple[str, tuple[Any, ...]], dict[str, Any]] = {}
        rest: list[tuple[str, Any]] = []
        for kind, payload in ops:
            if kind == "task":
                key = (kind, (payload["flow"], payload["run_id"], payload["task_id"]))
            elif kind == "attempt":
                key = (kind, (payload["flow"], payload["run_id"], payload["task_id"], payload["attempt"]))
            else:
                rest.append((kind, payload))
                continue
            row = upserts.get(key)
            upserts[key] = payload if row is None else {**row, **payload}
        groups: dict[tuple[str, tuple[str, ...]], list[dict[str, Any]]] = {}
        for (kind, _), row in upserts.items():
            groups.setdefault((kind, tuple(row)), []).append(row)
        with self._write() as conn:
            for (kind, columns), rows in groups.items():
                if kind == "task":
                    self._upsert_many(conn, tasks, columns, rows, ("flow", "run_id", "task_id"))
                else:
                    self._upsert_many(conn, attempts, columns, rows, ("flow", "run_id", "task_id", "attempt"))
            artifact_rows = [row for kind, payload in rest if kind == "artifacts" for row in payload]
            if artifact_rows:
                conn.execute(artifacts.insert(), artifact_rows)
            for kind, payload in rest:
                if kind == "artifacts":
                    pass  # written above, in one statement
                elif kind == "metrics":
                    if payload:
                        _insert_metrics(conn, payload)
                elif kind == "tags":
                    flow, run_id, new = payload
                    _insert_new_tags(conn, flow, run_id, new, False)
                elif kind == "step":
                    flow, run_id, step, values = payload
                    conn.execute(steps.update().where(steps.c.flow == flow, steps.c.run_id == run_id,
                                                      steps.c.step == step).values(**values))
                elif kind == "heartbeat":
                    flow, run_id = payload
                    conn.execute(runs.update().where(runs.c.flow == flow, runs.c.run_id == run_id)
                                 .values(heartbeat_at=time.time()))
                else:
                    raise ValueError(kind)

    def _upsert_many(self, conn: Any, table: sa.Table, columns: tuple[str, ...], rows: list[dict[str, Any]],
                     key: tuple[str, ...]) -> None:
        """Upsert rows that all name ``columns``, with one statement built once per column set."""
        dialect = self._writer.dialect.name
        if dialect not in ("sqlite", "postgresql"):
            for row in rows:
                self._upsert(conn, table, row, key)
            return
        cache = self._upsert_statements
        stmt = cache.get((table.name, columns))
        if stmt is None:
            if dialect == "sqlite":
                from sqlalchemy.dialects.sqlite import insert
            else:
                from sqlalchemy.dialects.postgresql import insert
            ins = insert(table)
            update = {k: ins.excluded[k] for k in columns if k not in key}
            stmt = cache[(table.name, columns)] = ins.on_conflict_do_update(index_elements=list(key), set_=update)
        conn.execute(stmt, rows)

    def _upsert(self, conn: Any, table: sa.Table, row: dict[str, Any], key: tuple[str, ...]) -> None:
        """Insert the row, or update the columns it names when its key exists (one statement)."""
        dialect = self._writer.dialect.name
        if dialect in ("sqlite", "postgresql"):
            if dialect == "sqlite":
                from sqlalchemy.dialects.sqlite import insert
            else:
                from sqlalchemy.dialects.postgresql import insert
            stmt = insert(table).values(**row)
            update = {k: stmt.excluded[k] for k in row if k not in key}
            conn.execute(stmt.on_conflict_do_update(index_elements=list(key), set_=update))
            return
        where = [table.c[k] == row[k] for k in key]
        values = {k: v for k, v in row.items() if k not in key}
        if conn.execute(table.update().where(*where).values(**values)).rowcount == 0:
            conn.execute(table.insert().values(**row))

    def list_steps(self, flow: str, run_id: int) -> list[dict[str, Any]]:
        with self.engine.connect() as conn:
            return [dict(r._mapping) for r in conn.execute(
                sa.select(steps).where(steps.c.flow == flow, steps.c.run_id == run_id).order_by(steps.c.position))]

    def list_tasks(self, flow: str, run_id: int, step: str | None = None) -> list[TaskRecord]:
        query = sa.select(tasks).where(tasks.c.flow == flow, tasks.c.run_id == run_id).order_by(tasks.c.task_id)
        if step is not None:
            query = query.where(tasks.c.step == step)
        with self.engine.connect() as conn:
            return [_task_record(r) for r in conn.execute(query)]

    def get_task(self, flow: str, run_id: int, task_id: int) -> TaskRecord | None:
        with self.engine.connect() as conn:
            row = conn.execute(sa.select(tasks).where(tasks.c.flow == flow, tasks.c.run_id == run_id,
                                                      tasks.c.task_id == task_id)).first()
        return _task_record(row) if row is not None else None

    def list_attempts(self, flow: str, run_id: int, task_id: int | None = None) -> list[dict[str, Any]]:
        query = sa.select(attempts).where(attempts.c.flow == flow, attempts.c.run_id == run_id)
        if task_id is not None:
            query = query.where(attempts.c.task_id == task_id)
        with self.engine.connect() as conn:
            return [dict(r._mapping) for r in conn.execute(query.order_by(attempts.c.task_id, attempts.c.attempt))]

    # -- artifacts and metrics -----------------------------------------------------------------------
    def task_artifacts(self, flow: str, run_id: int, task_id: int) -> dict[str, dict[str, Any]]:
        with self.engine.connect() as conn:
            return {r.name: {"key": r.key, "serializer": r.serializer, "size": r.size, "own": r.own}
                    for r in conn.execute(sa.select(artifacts).where(
                        artifacts.c.flow == flow, artifacts.c.run_id == run_id, artifacts.c.task_id == task_id)
                        .order_by(artifacts.c.name))}

    def run_artifacts(self, flow: str, run_id: int) -> Iterator[dict[str, Any]]:
        with self.engine.connect() as conn:
            for r in conn.execute(sa.select(artifacts).where(artifacts.c.flow == flow, artifacts.c.run_id == run_id)):
                yield dict(r._mapping)

    # -- schedules (keel scheduler) ---------------------------------------------------------------
    def claim_fire(self, project: str, job: str, fire_time: float, *, status: str = "started",
                   note: str | None = None) -> bool:
        """Record that ``job`` fires for cron time ``fire_time``; False if that time was already taken."""
        try:
            with self._write() as conn:
                conn.execute(schedule_fires.insert().values(project=project, job=job, fire_time=fire_time,
                                                            fired_at=time.time(), status=status, note=note))
            return True
        except sa.exc.IntegrityError:
            return False

    def update_fire(self, project: str, job: str, fire_time: float, **values: Any) -> None:
        with self._write() as conn:
            conn.execute(schedule_fires.update().where(
                schedule_fires.c.project == project, schedule_fires.c.job == job,
                schedule_fires.c.fire_time == fire_time).values(**values))

    def list_fires(self, project: str, job: str | None = None, limit: int | None = None) -> list[dict[str, Any]]:
        """What the scheduler fired, newest cron time first."""
        query = (sa.select(schedule_fires).where(schedule_fires.c.project == project)
                 .order_by(schedule_fires.c.fire_time.desc()))
        if job is not None:
            query = query.where(schedule_fires.c.job == job)
        if limit:
            query = query.limit(limit)
        with self.engine.connect() as conn:
            return [dict(r._mapping) for r in conn.execute(query)]

    def run_metrics(self, flow: str, run_id: int, name: str | None = None,
                    task_id: int | None = None) -> dict[str, list[tuple[Any, float, float]]]:
        """name -> [(step, value, timestamp), ...] in logging order, for a run or one of its tasks."""
        query = (sa.select(metrics.c.name, metrics.c.step, metrics.c.value, metrics.c.ts)
                 .where(metrics.c.flow == flow, metrics.c.run_id == run_id).order_by(metrics.c.id))
        if task_id is not None:
            query = query.where(metrics.c.task_id == task_id)
        if name is not None:
            query = query.where(metrics.c.name == name)
        out: dict[str, list[tuple[Any, float, float]]] = {}
        with self.engine.connect() as conn:
            for r in conn.execute(query):
                out.setdefault(r.name, []).append((r.step, r.value, r.ts))
        return out


def _insert_metrics(conn: Any, rows: list[dict[str, Any]]) -> None:
    """Metric points are most of the rows written (100,000 from one task is ordinary): they go
    through the driver's executemany, 3-4x faster than Core's insert of dicts."""
    mark = {"qmark": "?", "format": "%s", "pyformat": "%s"}.get(conn.dialect.paramstyle)
    if mark is None:
        conn.execute(metrics.insert(), rows)
        return
    conn.exec_driver_sql(
        f"INSERT INTO metrics (flow, run_id, task_id, name, step, value, ts) VALUES ({', '.join([mark] * 7)})",
        [(r["flow"], r["run_id"], r["task_id"], r["name"], r["step"], r["value"], r["ts"]) for r in rows])


def _insert_new_tags(conn: Any, flow: str, run_id: int, new_tags: Iterable[str], system: bool) -> None:
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


def _user() -> str:
    for var in ("KEEL_USER", "USER", "USERNAME", "LOGNAME"):
        if os.environ.get(var):
            return os.environ[var]
    try:
        import pwd

        return pwd.getpwuid(os.getuid()).pw_name
    except (ImportError, KeyError):
        return "unknown"
