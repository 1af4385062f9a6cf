"""Everything the dashboard reads or writes, in one place: the seam between ``keel ui`` and the store.

The web layer (:mod:`keel.ui.app`) never opens the store itself; it calls these functions,
which use the store's public methods and :mod:`keel.tracking.search` (the query API). When
the store grows a consolidated query API or an event log, only this module changes:
:func:`changes_since` is the one place that answers "what changed since cursor X".

Values returned here are JSON-ready (dicts, lists, numbers, strings) so the web layer only
serialises them; frozen dataclasses carry the few records with behaviour.
"""

from __future__ import annotations

import hashlib
import math
import threading
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from keel.errors import NotFoundError, UsageError

if TYPE_CHECKING:
    from keel.store.metadata import MetadataStore

__all__ = ["Change", "DashboardData", "RunsPage", "bucket_series"]

_PREVIEW_MAX_BYTES = 64 * 2**20   # artifacts larger than this are described, not loaded
_LOG_CHUNK = 256 * 1024
# Loading an artifact may import NumPy, pandas or pyarrow for the first time; two server
# threads importing pandas at once can see a half-initialised module, so previews take turns.
_PREVIEW_LOCK = threading.Lock()


NotFound = NotFoundError  # a run, task or artifact the dashboard was asked for does not exist (HTTP 404)


@dataclass(frozen=True)
class RunsPage:
    """One page of the runs table: rows, the total that match, and the columns they carry."""

    rows: list[dict[str, Any]]
    total: int
    offset: int
    limit: int
    param_names: list[str]
    metric_names: list[str]


@dataclass(frozen=True)
class Change:
    """What :func:`DashboardData.changes_since` found: the new cursor and what moved ("runs",
    "run", "logs", "metrics"); an empty ``kinds`` means nothing changed."""

    cursor: str
    kinds: tuple[str, ...] = field(default_factory=tuple)


def _status_of(record: Any) -> str:
    return record.effective_status


def _duration(record: Any) -> float | None:
    end = record.finished_at or (time.time() if record.status == "running" else None)
    return None if end is None else max(0.0, end - record.created_at)


def _finite(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    return value


def bucket_series(points: list[tuple[Any, float, float]], buckets: int, lo: float | None = None,
                  hi: float | None = None) -> dict[str, Any]:
    """Reduce a metric series to ``buckets`` buckets along its x axis (the logged step, or the
    point's index when no step was given), keeping min, max and last of each bucket. The
    dashboard asks the store for this (``MetricStore.bucketed``, done in the database); this
    is the same reduction in Python, for series already in hand."""
    from keel.store.records import bucket_points

    return _buckets_json(bucket_points(points, buckets, lo, hi))


def _buckets_json(b: Any) -> dict[str, Any]:
    return {"x": list(b.x), "min": [_finite(v) for v in b.min], "max": [_finite(v) for v in b.max],
            "last": [_finite(v) for v in b.last], "count": b.count, "range": [b.lo, b.hi]}


class DashboardData:
    """The dashboard's view of one store (``Store.from_env()`` unless given)."""

    def __init__(self, store: Any = None, project_file: str | None = None):
        if store is None:
            from keel.store import Store

            store = Store.from_env()
        self.store = store
        self.project_file = project_file
        self._names: dict[str | None, tuple[float, list[str]]] = {}

    @property
    def _md(self) -> MetadataStore:
        return self.store.metadata

    # -- runs ------------------------------------------------------------------------------------
    def runs(self, where: str | None = None, sort: str | None = None, limit: int = 50, offset: int = 0,
             flow: str | None = None, metrics: list[str] | None = None) -> RunsPage:
        """A page of runs matching ``where`` (the ``--where`` language), sorted by ``sort``.
        A bad query raises :class:`keel.errors.QueryError` (its ``column`` points at the problem)."""
        from keel.tracking.query import Query
        from keel.tracking.search import last_metrics

        limit = max(1, min(int(limit), 1000))
        offset = max(0, int(offset))
        query = Query(where, sort)
        found = self._md.query.search_page(flow=flow, limit=limit, offset=offset, query=query)
        records, total = found.runs, found.total
        names = self.metric_names(flow) if metrics is None else metrics
        last = last_metrics(self._md, records, names)
        params: dict[str, None] = {}
        rows = []
        for r in records:
            params.update(dict.fromkeys(r.params))
            rows.append({
                "flow": r.flow, "id": r.run_id, "pathspec": r.pathspec, "kind": r.kind,
                "status": _status_of(r), "created": r.created_at, "finished": r.finished_at,
                "duration": _duration(r), "user": r.user, "tags": list(r.tags),
                "params": {k: _finite(v) for k, v in r.params.items()},
                "metrics": {k: _finite(v) for k, v in last.get((r.flow, r.run_id), {}).items()},
            })
        return RunsPage(rows=rows, total=int(total or 0), offset=offset, limit=limit,
                        param_names=sorted(params), metric_names=list(names))

    def metric_names(self, flow: str | None = None, sample: int = 20, ttl: float = 30.0) -> list[str]:
        """The metric names of the newest runs (user metrics first, ``sys.*`` last), remembered for
        ``ttl`` seconds: every page of the runs table asks, and the answer rarely changes."""
        cached = self._names.get(flow)
        if cached is not None and time.monotonic() - cached[0] < ttl:
            return cached[1]
        newest = [(r.flow, r.run_id) for r in self._md.runs.list_runs(flow, limit=sample)]
        names = sorted(self._md.metrics.names_of_runs(newest), key=lambda n: (n.startswith("sys."), n))
        self._names[flow] = (time.monotonic(), names)
        return names

    def _record(self, flow: str, run_id: int) -> Any:
        record = self._md.runs.get_run(flow, run_id)
        if record is None:
            raise NotFound(f"there is no run {flow}/{run_id}; `keel runs {flow}` lists its runs")
        return record

    def run(self, flow: str, run_id: int) -> dict[str, Any]:
        """One run: its record, steps, tasks (with attempts, reuse), comments and last metrics."""
        from keel.tracking.search import run_last_values

        r = self._record(flow, run_id)
        attempts: dict[int, list[dict[str, Any]]] = {}
        for a in self._md.runs.list_attempts(flow, run_id):
            attempts.setdefault(a["task_id"], []).append({
                "attempt": a["attempt"], "status": a["status"], "started": a["started_at"],
                "finished": a["finished_at"], "error_type": a["error_type"], "error": a["error_message"],
                "traceback": a["traceback"]})
        links: dict[int, list[dict[str, str]]] = {}
        for link in self._md.links.list(flow, run_id):   # addresses the tasks published: their Spark UI, ...
            links.setdefault(link.task_id, []).append({"name": link.name, "url": link.url})
        tasks = []
        for t in self._md.runs.list_tasks(flow, run_id):
            origin = f"{flow}/{t.origin_run_id}/{t.step}/{t.origin_task_id}" if t.origin_run_id else None
            tasks.append({"id": t.task_id, "step": t.step, "status": t.status, "attempts": t.attempts,
                          "created": t.created_at, "started": t.started_at, "finished": t.finished_at,
                          "parents": t.parents, "foreach": t.foreach,
                          # resume reuses a task, the step cache takes one (both name their origin)
                          "reused": t.origin_run_id is not None and t.status != "cached",
                          "cached": t.status == "cached", "origin": origin,
                          "attempt_list": attempts.get(t.task_id, []), "links": links.get(t.task_id, [])})
        env = dict(r.environment)
        status = _status_of(r)
        return {
            "flow": r.flow, "id": r.run_id, "pathspec": r.pathspec, "kind": r.kind, "status": status,
            "created": r.created_at, "finished": r.finished_at, "duration": _duration(r), "user": r.user,
            "host": r.hostname, "error": r.error, "origin_run": r.origin_run_id, "params": r.params,
            "tags": list(r.tags), "environment": env, "code_hash": r.code_hash,
            "steps": [{"name": s["step"], "status": s.get("status")} for s in self._md.runs.list_steps(flow, run_id)],
            "tasks": tasks, "comments": [c.to_dict() for c in self._md.annotations.list_comments(flow, run_id)],
            "metrics": {k: _finite(v) for k, v in run_last_values(self._md, flow, run_id).items()},
            "next_command": f"keel resume {r.pathspec}" if status in ("failed", "crashed") else None,
        }

    def code(self, flow: str, run_id: int) -> dict[str, Any]:
        """The run's code snapshot: file name -> text (files over 200 KB are left out)."""
        from keel.tracking.snapshot import load_manifest

        r = self._record(flow, run_id)
        snap = r.environment.get("snapshot") or {}
        key = snap.get("key") if isinstance(snap, dict) else snap
        if not key:
            return {"files": {}, "note": "this run has no code snapshot"}
        manifest = load_manifest(self.store, key)
        files: dict[str, str] = {}
        for rel, info in sorted((manifest.get("files") or {}).items()):
            if info.get("size", 0) > 200_000:
                files[rel] = f"({info.get('size')} bytes, not shown)"
                continue
            files[rel] = self.store.artifacts.get_bytes(info["key"], what=f"snapshot file {rel}").decode("utf-8", "replace")
        return {"files": files, "entry": manifest.get("entry")}

    def artifacts(self, flow: str, run_id: int, task_id: int) -> dict[str, Any]:
        """A task's artifacts with a preview of each (arrays: shape, dtype, head; tables: first rows)."""
        from keel.store.artifacts import ArtifactRef

        if self._md.runs.get_task(flow, run_id, task_id) is None:
            raise NotFound(f"run {flow}/{run_id} has no task {task_id}")
        out = {}
        for name, info in self._md.runs.task_artifacts(flow, run_id, task_id).items():
            entry = {"serializer": info["serializer"], "size": info["size"], "own": bool(info["own"])}
            if info["size"] > _PREVIEW_MAX_BYTES:
                entry["preview"] = {"kind": "text", "text": f"({info['size']} bytes: too large to preview)"}
            else:
                try:
                    with _PREVIEW_LOCK:
                        value = self.store.artifacts.get(ArtifactRef(info["key"], info["serializer"], info["size"]),
                                                         what=f"artifact {name!r} of {flow}/{run_id}/{task_id}")
                        entry["preview"] = preview(value)
                except Exception as exc:   # a preview must never break the page
                    entry["preview"] = {"kind": "text", "text": f"(cannot preview: {type(exc).__name__}: {exc})"}
            out[name] = entry
        return out

    # -- metrics and logs ----------------------------------------------------------------------------
    def metric_series(self, flow: str, run_id: int, name: str, buckets: int = 400,
                      lo: float | None = None, hi: float | None = None, task_id: int | None = None) -> dict[str, Any]:
        """One metric of a run (or of one of its tasks: system metrics are per task), bucketed."""
        self._record(flow, run_id)
        found = self._md.metrics.bucketed(flow, run_id, name, max(1, min(int(buckets), 5000)), lo, hi, task_id=task_id)
        return {"run": f"{flow}/{run_id}", "name": name, "task": task_id, **_buckets_json(found)}

    def task_metric_names(self, flow: str, run_id: int, task_id: int) -> list[str]:
        return list(self._md.metrics.run_metrics(flow, run_id, task_id=task_id))

    def log(self, flow: str, run_id: int, task_id: int, stream: str = "stdout", offset: int = 0) -> dict[str, Any]:
        """Log text from byte ``offset`` on (at most 256 KB); ``next`` is the offset to ask for next."""
        if stream not in ("stdout", "stderr"):
            raise UsageError(f"stream must be stdout or stderr, not {stream!r}")
        task = self._md.runs.get_task(flow, run_id, task_id)
        if task is None:
            raise NotFound(f"run {flow}/{run_id} has no task {task_id}")
        path = self.store.logs.path(flow, run_id, task.step, task_id, stream)
        try:
            with open(path, "rb") as fh:
                fh.seek(max(0, offset))
                data = fh.read(_LOG_CHUNK)
        except FileNotFoundError:
            data = b""
        return {"text": data.decode("utf-8", "replace"), "offset": offset, "next": offset + len(data),
                "done": task.status not in ("running", "pending")}

    # -- tags and comments ---------------------------------------------------------------------------
    def add_tags(self, flow: str, run_id: int, tags: list[str]) -> list[str]:
        self._record(flow, run_id)
        from keel.flow.tags import check_tags

        clean = check_tags(t.strip() if isinstance(t, str) else t for t in tags)
        if not clean:
            raise UsageError("give at least one non-empty tag")
        self._md.annotations.add_tags(flow, run_id, clean)
        return list(self._record(flow, run_id).tags)

    def remove_tags(self, flow: str, run_id: int, tags: list[str]) -> list[str]:
        self._md.annotations.remove_tags(flow, run_id, tags)
        return list(self._record(flow, run_id).tags)

    def add_comment(self, flow: str, run_id: int, text: str) -> dict[str, Any]:
        self._record(flow, run_id)
        if not text or not text.strip():
            raise UsageError("a comment needs some text")
        return self._md.annotations.add_comment(flow, run_id, text).to_dict()

    def series_of_runs(self, pathspecs: list[str], name: str, buckets: int = 300, lo: float | None = None,
                       hi: float | None = None) -> dict[str, Any]:
        """One metric of N runs for an overlaid chart, bucketed over one shared range in one pass
        of the store (``MetricStore.bucketed_runs``): ``{"name", "range", "series": [...]}``, a
        series per run in the order asked, each as :meth:`metric_series` answers."""
        keys = [parse_pathspec(spec) for spec in _check_runs(pathspecs)]
        found = self._md.metrics.bucketed_runs(keys, name, max(1, min(int(buckets), 5000)), lo, hi)
        series = [{"run": f"{flow}/{run_id}", "name": name, "task": None, **_buckets_json(found[(flow, run_id)])}
                  for flow, run_id in dict.fromkeys(keys)]
        return {"name": name, "range": series[0]["range"] if series else [lo, hi], "series": series}

    # -- compare and schedules -------------------------------------------------------------------------
    def compare(self, pathspecs: list[str], buckets: int = 300, series: bool = True) -> dict[str, Any]:
        """N runs side by side: every parameter (``differs`` when values disagree), last metrics,
        and (unless ``series`` is False: the page asks :meth:`series_of_runs` chart by chart) the
        first 12 metrics' bucketed series per run, for overlaid charts."""
        from keel.tracking.search import last_metrics

        _check_runs(pathspecs)
        records = [self._record(*parse_pathspec(spec)) for spec in pathspecs]
        # Last values are key lookups in the store's metric_last, whatever the runs' number of points.
        keys = [(r.flow, r.run_id) for r in records]
        last = last_metrics(self._md, records, self._md.metrics.names_of_runs(keys))
        runs = [{"pathspec": r.pathspec, "status": _status_of(r), "params": r.params,
                 "metrics": {k: _finite(v) for k, v in last.get((r.flow, r.run_id), {}).items()}} for r in records]
        names = sorted({p for r in runs for p in r["params"]})
        params = [{"name": n, "values": [r["params"].get(n) for r in runs],
                   "differs": len({repr(r["params"].get(n)) for r in runs}) > 1} for n in names]
        metric_names = list(dict.fromkeys(m for r in runs for m in r["metrics"] if not m.startswith("sys.")))
        overlays = {m: self.series_of_runs([r["pathspec"] for r in runs], m, buckets)["series"]
                    for m in (metric_names[:12] if series else [])}
        return {"runs": runs, "params": params, "metric_names": metric_names, "series": overlays}

    def schedules(self) -> dict[str, Any]:
        """The project's scheduled jobs with last and next fire (when ``keel ui -f keel.yaml`` named one)."""
        if not self.project_file:
            return {"project": None, "rows": []}
        from keel.flow.project import load_project
        from keel.schedule.cron import schedule_rows

        project = load_project(self.project_file)
        rows = [{"job": s.job, "schedule": s.schedule, "last_fire": s.last_fire, "last_status": s.last_status,
                 "last_run": s.last_run, "next_fire": s.next_fire, "jobs": s.jobs}
                for s in schedule_rows(project, self.store)]
        return {"project": project.name, "rows": rows}

    # -- operations: Data Engine tables, queues, endpoints ------------------------------------------
    def _engine(self) -> Any:
        import importlib.util

        if importlib.util.find_spec("pyarrow") is None or importlib.util.find_spec("duckdb") is None:
            raise UsageError("Data Engine tables need pyarrow and duckdb: pip install 'keel[data]'")
        from keel.data.engine import DataEngine

        engine = self.__dict__.get("_data_engine")
        if engine is None:
            engine = self.__dict__["_data_engine"] = DataEngine.from_store(self.store)
        return engine

    def tables(self) -> dict[str, Any]:
        """Every Data Engine table with its latest version (``keel data list``)."""
        rows = [{"name": t.name, "versions": t.versions, "version": t.latest.version, "rows": t.latest.rows,
                 "bytes": t.latest.bytes, "created": t.latest.created_at, "lineage": t.latest.lineage,
                 "user": t.latest.user}
                for t in self._md.data.list_tables()]
        return {"rows": rows}

    def table(self, name: str, version: int | None = None, limit: int = 20) -> dict[str, Any]:
        """A table: its schema, every version (``keel data history``) and the first rows of one."""
        import json

        from keel.errors import DataNotFound
        from keel.serve.tables import jsonable

        try:
            v = self._engine().version(name, version)
        except DataNotFound as exc:
            raise NotFound(str(exc)) from None
        history = [{"version": h.version, "created": h.created_at, "mode": h.mode, "parent": h.parent,
                    "rows": h.rows, "bytes": h.bytes, "lineage": h.lineage, "user": h.user}
                   for h in reversed(self._md.data.list_versions(name))]
        limit = max(1, min(int(limit), 200))
        head = self._engine().arrow(name, v.version).slice(0, limit)
        columns = list(head.column_names)
        return {"name": name, "version": v.version, "rows_total": v.rows,
                "schema": json.loads(v.schema).get("fields", []), "history": history, "columns": columns,
                "rows": [[_cell(jsonable(r.get(c))) for c in columns] for r in head.to_pylist()]}

    def table_sql(self, query: str, limit: int = 1000) -> dict[str, Any]:
        """One read-only SELECT over the Data Engine's tables (``keel data sql``), at most ``limit`` rows.
        Anything but a single SELECT (or WITH ... SELECT) is refused with a message saying so."""
        from keel.errors import DataError
        from keel.serve.tables import jsonable

        text = (query or "").strip().rstrip(";").strip()
        if not text:
            raise UsageError("write a query, e.g. SELECT * FROM weather LIMIT 10")
        engine = self._engine()
        from keel.data.engine import check_select

        check_select(text)
        limit = max(1, min(int(limit), 10_000))
        try:
            table = engine.sql_arrow(f"SELECT * FROM ({text}) AS keel_query LIMIT {limit + 1}")
        except DataError as exc:
            raise UsageError(str(exc).splitlines()[0]) from None
        columns = list(table.column_names)
        rows = table.slice(0, limit).to_pylist()
        return {"columns": columns, "rows": [[_cell(jsonable(r.get(c))) for c in columns] for r in rows],
                "truncated": table.num_rows > limit, "limit": limit}

    def queues(self) -> dict[str, Any]:
        """The queue add-on's queues with depth, in flight and lag (``keel queue list``)."""
        import os

        from keel.store.queues import open_backend

        from keel.settings import Settings

        url = Settings.from_env().queue_url
        if self.project_file:
            try:
                from keel.flow.project import load_project

                addon = load_project(self.project_file).addons.queue
                url = (addon.url if addon is not None else None) or url
            except Exception:  # a broken keel.yaml is the schedules page's to report
                pass
        home = self.store.settings.home
        if url is None and not (home / "queues.db").exists():
            return {"backend": "sqlite (none yet)", "rows": []}
        backend = open_backend(url, home=home)   # read only: queues(), never close(NAME), which closes a queue
        now = time.time()
        rows = [{"name": q.name, "ready": q.ready, "delayed": q.delayed, "in_flight": q.in_flight,
                 "closed": q.closed, "lag": (now - q.oldest_enqueued_at) if q.oldest_enqueued_at else None}
                for q in backend.queues()]
        return {"backend": url.split("@")[-1] if url else "sqlite", "rows": rows}

    def endpoints(self) -> dict[str, Any]:
        """The Data Endpoints of the project file (``keel project serve`` starts them)."""
        if not self.project_file:
            return {"project": None, "rows": []}
        from keel.flow.project import load_project

        project = load_project(self.project_file)
        rows = []
        for name, e in project.endpoints.items():
            latest = self._md.runs.latest_run_id(e.flow, "succeeded") if e.run is None else e.run
            rows.append({"name": name, "flow": e.flow, "artifact": e.artifact, "pinned": e.run,
                         "serves": f"{e.flow}/{latest}" if latest else None, "host": e.host,
                         "port": project.endpoint_port(name), "preprocess": e.preprocess})
        return {"project": project.name, "rows": rows}

    # -- live feed -----------------------------------------------------------------------------------
    def changes_since(self, cursor: str | None, run: tuple[str, int] | None = None) -> Change:
        """What changed since ``cursor`` (None: the first look), read from the store's event log.

        The cursor is ``e:<last event id>``, plus, while a watched run is running, a digest of
        what the event log does not carry (its log files' sizes and its metrics so far):
        ``e:812.logs:ab12.metrics:cd34``. Any event means "runs"; an event of the watched run
        also "run" (and a task event "metrics": a task's points land when it ends)."""
        old = _parse_cursor(cursor)
        kinds: set[str] = set()
        if cursor is None or not old.get("e", "").isdigit():   # a first look, or a cursor of another version
            after, seen = self._md.events.last_id(), []
            if cursor is not None:
                kinds.update(("runs", "run") if run is not None else ("runs",))
        else:
            after = int(old["e"])
            seen = self._md.events.read(after=after, limit=1000)
        last = seen[-1].id if seen else after
        if seen:
            kinds.add("runs")
            mine = [e for e in seen if run is not None and (e.flow, e.run_id) == run]
            if mine:
                kinds.add("run")
            if any(e.kind.startswith("task.") for e in mine):
                kinds.add("metrics")
        parts = {"e": str(last)}
        if run is not None:
            live = self._live_signature(*run)
            if live is not None:
                for k, v in zip(("logs", "metrics"), live):
                    parts[k] = hashlib.blake2b(repr(v).encode(), digest_size=6).hexdigest()
                    if cursor is not None and old.get(k) != parts[k]:
                        kinds.add(k)
        new = ".".join(f"{k}:{v}" for k, v in parts.items())
        return Change(cursor=new, kinds=tuple(sorted(kinds)))

    def _live_signature(self, flow: str, run_id: int) -> tuple[Any, Any] | None:
        """Log sizes and last metric values of a running run (None once it ended: its events say it all)."""
        r = self._md.runs.get_run(flow, run_id)
        if r is None or r.status != "running":
            return None
        sizes = []
        for t in self._md.runs.list_tasks(flow, run_id):
            if t.status == "running" or t.finished_at is None or t.finished_at > time.time() - 5:
                for stream in ("stdout", "stderr"):
                    try:
                        sizes.append(self.store.logs.path(flow, run_id, t.step, t.task_id, stream).stat().st_size)
                    except OSError:
                        sizes.append(-1)
        return sizes, self._md.metrics.last_values(flow, run_id)


def _parse_cursor(cursor: str | None) -> dict[str, str]:
    return dict(item.split(":", 1) for item in (cursor or "").split(".") if ":" in item)


def _check_runs(pathspecs: list[str]) -> list[str]:
    if not pathspecs:
        raise UsageError("compare needs at least one run, e.g. ?runs=Train/1,Train/2")
    if len(pathspecs) > 100:
        raise UsageError(f"compare takes at most 100 runs, not {len(pathspecs)}")
    return pathspecs


def parse_pathspec(spec: str) -> tuple[str, int]:
    from keel.ids import parse_id

    flow, _, run = spec.strip().strip("/").partition("/")
    if not flow or not run.isascii() or not run.isdigit():
        raise UsageError(f"{spec[:80]!r} is not a run: write FLOW/RUN_ID, e.g. Train/3")
    return flow, parse_id(run, "run id", spec)


def preview(value: Any, rows: int = 10) -> dict[str, Any]:
    """A small JSON picture of an artifact's value."""
    mod = type(value).__module__.split(".")[0]
    if mod == "numpy" and hasattr(value, "shape"):
        import numpy as np

        head = value[:rows] if value.ndim else value
        if head.ndim > 1:
            head = head[..., :20] if head.ndim == 2 else head.reshape(head.shape[0], -1)[:, :20]
        return {"kind": "array", "shape": list(value.shape), "dtype": str(value.dtype),
                "head": np.asarray(head).tolist() if value.dtype.kind in "biufcb" else [repr(x) for x in np.ravel(head)[:rows]]}
    if mod == "pandas" and hasattr(value, "columns"):
        head = value.head(rows)
        return {"kind": "table", "columns": [str(c) for c in head.columns], "rows_total": int(len(value)),
                "rows": [[_cell(v) for v in row] for row in head.itertuples(index=False, name=None)]}
    if mod == "pyarrow" and hasattr(value, "schema") and hasattr(value, "slice"):
        head = value.slice(0, rows).to_pylist()
        cols = list(value.schema.names)
        return {"kind": "table", "columns": cols, "rows_total": value.num_rows,
                "rows": [[_cell(r.get(c)) for c in cols] for r in head]}
    text = repr(value)
    return {"kind": "text", "type": type(value).__name__, "text": text[:2000] + ("…" if len(text) > 2000 else "")}


def _cell(v: Any) -> Any:
    if v is None or isinstance(v, (bool, int, str)):
        return v
    if isinstance(v, float):
        return _finite(v)
    return str(v)
