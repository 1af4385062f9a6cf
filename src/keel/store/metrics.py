"""Metric points of runs, in SQL (``MetricStore``). Points are written by the scheduler's
``write_batch``; these are the reads, each one query whatever the number of runs."""

from __future__ import annotations

import math
import os
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Iterable

import sqlalchemy as sa

from keel.store.records import MetricBuckets
from keel.store.schema import metric_last, metrics
from keel.store.sql import Database

_CHUNK = 500
# bucketed_runs scans slices of the runs on this many connections at once (the drivers let go
# of the GIL while the database works), when there are at least _SLICE_RUNS runs a slice.
_PASS_THREADS = max(1, min(4, os.cpu_count() or 1))
_SLICE_RUNS = 8


def _points(flow: str, run_id: int, name: str, task_id: int | None = None) -> Any:
    """A series as (id, x, value): x is the logged step, or the point's index without one."""
    cond = [metrics.c.flow == flow, metrics.c.run_id == run_id, metrics.c.name == name]
    if task_id is not None:
        cond.append(metrics.c.task_id == task_id)
    index = sa.func.row_number().over(order_by=metrics.c.id) - 1
    x_expr = sa.case((metrics.c.step.is_(None), index), else_=metrics.c.step)
    return sa.select(metrics.c.id, sa.cast(x_expr, sa.Float).label("x"), metrics.c.value).where(*cond).cte("pts")


def _edges(x0: float, x1: float, buckets: int) -> list[int]:
    """Where each bucket of integer steps starts: ``edges[b] <= step < edges[b + 1]`` is exactly
    the bucket ``min(buckets - 1, int((step - x0) / width))`` of :func:`records.bucket_points`
    for the steps in ``[x0, x1]``, so a range scan per bucket agrees with it to the last point."""
    width = (x1 - x0) / buckets or 1.0
    start, end = math.ceil(x0), math.floor(x1) + 1

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


def _nan(value: Any) -> float:
    return math.nan if value is None else float(value)


# The bucketing pass of bucketed_runs on SQLite: the runs (r.run_id) and the buckets (k.b,
# k.lo, k.hi) are two temporary tables of the connection (the store's file is not written),
# whose rowid order the planner knows, so each (run, bucket) is one range scan of
# ix_metrics_series taken in (run, bucket) order and the GROUP BY streams instead of sorting
# ten million points.
_SQLITE_BUCKETS = """
SELECT g.run_id, g.b, g.lo, g.hi, g.n, p.step, p.value
FROM (SELECT r.run_id AS run_id, k.b AS b, min(m.value) AS lo, max(m.value) AS hi,
             max(m.id) AS last_id, count(*) AS n
      FROM temp.keel_series_runs r CROSS JOIN temp.keel_series_edges k CROSS JOIN metrics m
      WHERE m.flow = :flow AND m.run_id = r.run_id AND m.name = :name AND m.step >= k.lo AND m.step < k.hi
      GROUP BY r.run_id, k.b) g
JOIN metrics p ON p.id = g.last_id
ORDER BY g.run_id, g.b
"""
# PostgreSQL: an index-only scan of the runs' series and a hash aggregate by (run, bucket);
# width_bucket finds each step's bucket among the same edges (a join with the buckets there
# becomes a nested loop over every pair).
_POSTGRES_BUCKETS = """
SELECT g.run_id, g.b, g.lo, g.hi, g.n, p.step, p.value
FROM (SELECT m.run_id AS run_id, width_bucket(m.step, CAST(:los AS BIGINT[])) - 1 AS b, min(m.value) AS lo,
             max(m.value) AS hi, max(m.id) AS last_id, count(*) AS n
      FROM metrics m
      WHERE m.flow = :flow AND m.run_id = ANY(CAST(:runs AS INTEGER[])) AND m.name = :name
            AND m.step >= :start AND m.step < :end
      GROUP BY 1, 2) g
JOIN metrics p ON p.id = g.last_id
ORDER BY g.run_id, g.b
"""


class SqlMetrics:
    def __init__(self, db: Database):
        self.db = db

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
        with self.db.read() as conn:
            for r in conn.execute(query):
                out.setdefault(r.name, []).append((r.step, r.value, r.ts))
        return out

    def points(self, flow: str, run_id: int) -> list[tuple[int, str, Any, float, float]]:
        """Every point of a run as (task_id, name, step, value, ts), in logging order."""
        query = (sa.select(metrics.c.task_id, metrics.c.name, metrics.c.step, metrics.c.value, metrics.c.ts)
                 .where(metrics.c.flow == flow, metrics.c.run_id == run_id).order_by(metrics.c.id))
        with self.db.read() as conn:
            return [tuple(r) for r in conn.execute(query)]

    def last_values(self, flow: str, run_id: int) -> dict[str, float]:
        """Every metric of one run with its last value, in the order the metrics were first logged."""
        last = (sa.select(sa.func.max(metrics.c.id).label("last"), sa.func.min(metrics.c.id).label("first"))
                .where(metrics.c.flow == flow, metrics.c.run_id == run_id).group_by(metrics.c.name).subquery())
        query = (sa.select(metrics.c.name, metrics.c.value).join(last, metrics.c.id == last.c.last)
                 .order_by(last.c.first))
        with self.db.read() as conn:
            return {r.name: r.value for r in conn.execute(query)}

    def last_of_runs(self, runs: Iterable[tuple[str, int]], names: Iterable[str]) -> dict[tuple[str, int], dict[str, float]]:
        """The last value of each named metric of each (flow, run_id): {(flow, run_id): {name: value}}.
        Key lookups in ``metric_last``, whatever the number of points."""
        names = list(dict.fromkeys(names))
        out: dict[tuple[str, int], dict[str, float]] = {}
        by_flow: dict[str, list[int]] = {}
        for flow, run_id in runs:
            by_flow.setdefault(flow, []).append(run_id)
        if not names:
            return out
        with self.db.read() as conn:
            for flow, ids in by_flow.items():
                for i in range(0, len(ids), _CHUNK):
                    query = (sa.select(metric_last.c.run_id, metric_last.c.name, metric_last.c.value)
                             .where(metric_last.c.flow == flow, metric_last.c.run_id.in_(ids[i:i + _CHUNK]),
                                    metric_last.c.name.in_(names)))
                    for r in conn.execute(query):
                        out.setdefault((flow, r.run_id), {})[r.name] = r.value
        return out

    def names_of_runs(self, runs: Iterable[tuple[str, int]]) -> list[str]:
        """The names of every metric the runs logged (sorted): the columns a table of them can show."""
        by_flow: dict[str, list[int]] = {}
        for flow, run_id in runs:
            by_flow.setdefault(flow, []).append(run_id)
        found: set[str] = set()
        with self.db.read() as conn:
            for flow, ids in by_flow.items():
                for i in range(0, len(ids), _CHUNK):
                    found.update(conn.execute(sa.select(metric_last.c.name).distinct().where(
                        metric_last.c.flow == flow, metric_last.c.run_id.in_(ids[i:i + _CHUNK]))).scalars())
        return sorted(found)

    def max_per_task(self, flow: str, run_id: int, names: Iterable[str]) -> list[tuple[int, str, float]]:
        """(task_id, name, largest value) for the named metrics of a run's tasks."""
        query = (sa.select(metrics.c.task_id, metrics.c.name, sa.func.max(metrics.c.value))
                 .where(metrics.c.flow == flow, metrics.c.run_id == run_id, metrics.c.name.in_(list(names)))
                 .group_by(metrics.c.task_id, metrics.c.name))
        with self.db.read() as conn:
            return [(int(t), str(n), float(v)) for t, n, v in conn.execute(query)]

    def bucketed(self, flow: str, run_id: int, name: str, buckets: int, lo: float | None = None,
                 hi: float | None = None, task_id: int | None = None) -> MetricBuckets:
        """One metric of a run (or of one task) reduced in the database to at most ``buckets``
        buckets (min, max and last per bucket) over ``[lo, hi]`` (None: the series' own ends).
        Agrees with :func:`keel.store.records.bucket_points`; a 100,000-point series never
        leaves the database. A run's series logged with steps is bucketed by :meth:`bucketed_runs`'s
        range scans (10x fewer rows read than numbering the points)."""
        if task_id is None:
            found = self.bucketed_runs([(flow, run_id)], name, buckets, lo, hi)[(str(flow), int(run_id))]
            return found if found.count else MetricBuckets((), (), (), (), 0, lo, hi)
        return self._bucketed_scan(flow, run_id, name, buckets, lo, hi, task_id)

    def _bucketed_scan(self, flow: str, run_id: int, name: str, buckets: int, lo: float | None = None,
                       hi: float | None = None, task_id: int | None = None) -> MetricBuckets:
        """:meth:`bucketed` by numbering the series' points: for one task's points, and for a
        series with points logged without a step (x is then the point's index)."""
        buckets = max(1, int(buckets))
        base = _points(flow, run_id, name, task_id)
        window = []
        if lo is not None:
            window.append(base.c.x >= lo)
        if hi is not None:
            window.append(base.c.x <= hi)
        with self.db.read() as conn:
            x0, x1, count = conn.execute(sa.select(sa.func.min(base.c.x), sa.func.max(base.c.x), sa.func.count())
                                         .where(*window)).one()
            if not count:
                return MetricBuckets((), (), (), (), 0, lo, hi)
            x0 = float(x0) if lo is None else lo
            x1 = float(x1) if hi is None else hi
            if count <= buckets:
                rows = conn.execute(sa.select(base.c.x, base.c.value).where(*window).order_by(base.c.id)).all()
                values = tuple(float(r.value) for r in rows)
                return MetricBuckets(tuple(float(r.x) for r in rows), values, values, values, int(count), x0, x1)
            width = (x1 - x0) / buckets or 1.0
            scaled = (base.c.x - x0) / width
            bucket: sa.ColumnElement[int]
            if self.db.engine.dialect.name == "sqlite":    # a cast truncates there (and x >= x0: a floor)
                bucket = sa.func.min(sa.cast(scaled, sa.Integer), buckets - 1)
            else:                                          # PostgreSQL's cast rounds
                bucket = sa.func.least(sa.cast(sa.func.floor(scaled), sa.Integer), buckets - 1)
            grouped = (sa.select(bucket.label("b"), sa.func.min(base.c.value).label("lo"),
                                 sa.func.max(base.c.value).label("hi"), sa.func.max(base.c.id).label("last_id"))
                       .where(*window).group_by(bucket).subquery())
            rows = conn.execute(sa.select(grouped.c.b, grouped.c.lo, grouped.c.hi, base.c.x, base.c.value)
                                .join(base, base.c.id == grouped.c.last_id).order_by(grouped.c.b)).all()
        return MetricBuckets(tuple(float(r.x) for r in rows), tuple(float(r.lo) for r in rows),
                             tuple(float(r.hi) for r in rows), tuple(float(r.value) for r in rows),
                             int(count), x0, x1)

    def bucketed_runs(self, runs: Iterable[tuple[str, int]], name: str, buckets: int, lo: float | None = None,
                      hi: float | None = None) -> dict[tuple[str, int], MetricBuckets]:
        """One metric of several runs for overlaid charts, each run reduced to at most ``buckets``
        buckets over one shared range ``[lo, hi]`` (None: the ends of all the series together):
        each answer is :meth:`bucketed` of that run over that range (and agrees with
        :func:`keel.store.records.bucket_runs`). Series logged with steps, the usual ones, are
        bucketed in one statement per flow: a range scan of ``ix_metrics_series`` per run and
        bucket, the index alone read (100 runs x 100,000 points, nothing sorted, 30,000 rows
        back). A series with points logged without a step (x is then the point's index) is
        bucketed by :meth:`bucketed` on its own."""
        keys = list(dict.fromkeys((str(f), int(r)) for f, r in runs))
        buckets = max(1, int(buckets))
        out = {k: MetricBuckets((), (), (), (), 0, lo, hi) for k in keys}
        with self.db.read() as conn:
            ends, indexed = self._ends(conn, keys, name)
            if not ends:
                return out
            x0 = lo if lo is not None else min(e[0] for e in ends.values())
            x1 = hi if hi is not None else max(e[1] for e in ends.values())
            out = {k: MetricBuckets((), (), (), (), 0, x0, x1) for k in keys}
            stepped: dict[str, list[int]] = {}
            for flow, run_id in ends:
                if (flow, run_id) not in indexed:
                    stepped.setdefault(flow, []).append(run_id)
            edges = _edges(x0, x1, buckets) if x1 >= x0 else []
            for flow, ids in stepped.items():
                if len(edges) < 2 or edges[-1] <= edges[0]:
                    continue
                found = self._bucket_passes(flow, ids, name, edges)
                small = [run_id for run_id in ids if 0 < sum(r[4] for r in found.get(run_id, [])) <= buckets]
                for run_id, rows in found.items():
                    out[(flow, run_id)] = MetricBuckets(
                        tuple(float(r[5]) for r in rows), tuple(_nan(r[2]) for r in rows),
                        tuple(_nan(r[3]) for r in rows), tuple(_nan(r[6]) for r in rows),
                        sum(int(r[4]) for r in rows), x0, x1)
                if small:     # few points in range: the points themselves, as bucketed() answers
                    query = (sa.select(metrics.c.run_id, metrics.c.step, metrics.c.value)
                             .where(metrics.c.flow == flow, metrics.c.run_id.in_(small), metrics.c.name == name,
                                    metrics.c.step >= edges[0], metrics.c.step < edges[-1])
                             .order_by(metrics.c.run_id, metrics.c.id))
                    points: dict[int, list[tuple[float, float]]] = {}
                    for r in conn.execute(query):
                        points.setdefault(r.run_id, []).append((float(r.step), float(r.value)))
                    for run_id, pts in points.items():
                        values = tuple(v for _, v in pts)
                        out[(flow, run_id)] = MetricBuckets(tuple(x for x, _ in pts), values, values, values,
                                                            len(pts), x0, x1)
        for key in indexed:
            out[key] = self._bucketed_scan(key[0], key[1], name, buckets, x0, x1)
        return out

    def _ends(self, conn: Any, keys: list[tuple[str, int]],
              name: str) -> tuple[dict[tuple[str, int], tuple[float, float]], set[tuple[str, int]]]:
        """Each run's first and last x of the metric (runs without points left out), and the runs
        whose series has points without a step (x is the index there: a scan of that series)."""
        ends: dict[tuple[str, int], tuple[float, float]] = {}
        indexed: set[tuple[str, int]] = set()
        by_flow: dict[str, list[int]] = {}
        for flow, run_id in keys:
            by_flow.setdefault(flow, []).append(run_id)
        m = metrics.alias("m")
        for flow, ids in by_flow.items():
            for i in range(0, len(ids), _CHUNK):
                r = sa.union_all(*[sa.select(sa.literal(x, sa.Integer).label("run_id"))
                                   for x in ids[i:i + _CHUNK]]).subquery("r")

                def one(*extra: Any) -> list[Any]:
                    return [m.c.flow == flow, m.c.run_id == r.c.run_id, m.c.name == name, *extra]
                query = sa.select(
                    r.c.run_id,
                    sa.select(sa.func.min(m.c.step)).where(*one()).scalar_subquery(),
                    sa.select(sa.func.max(m.c.step)).where(*one()).scalar_subquery(),
                    sa.exists().where(*one(m.c.step.is_(None))))
                for run_id, first, last, unstepped in conn.execute(query):
                    if unstepped:
                        indexed.add((flow, run_id))
                    elif first is not None:
                        ends[(flow, run_id)] = (float(first), float(last))
        for flow, run_id in indexed:
            base = _points(flow, run_id, name)
            x0, x1 = conn.execute(sa.select(sa.func.min(base.c.x), sa.func.max(base.c.x))).one()
            ends[(flow, run_id)] = (float(x0), float(x1))
        return ends, indexed

    def _bucket_passes(self, flow: str, ids: list[int], name: str, edges: list[int]) -> dict[int, list[Any]]:
        """:meth:`_bucket_pass` over slices of the runs, each on a connection of its own, at once:
        10 million points are a second of one core's work in SQLite, and a machine has more."""
        slices = min(_PASS_THREADS, len(ids) // _SLICE_RUNS)
        if slices <= 1 or ":memory:" in self.db.url:
            with self.db.read() as conn:
                return self._bucket_pass(conn, flow, ids, name, edges)
        ordered = sorted(ids)
        size = -(-len(ordered) // slices)

        def one(part: list[int]) -> dict[int, list[Any]]:
            with self.db.read() as conn:
                return self._bucket_pass(conn, flow, part, name, edges)
        found: dict[int, list[Any]] = {}
        with ThreadPoolExecutor(slices, thread_name_prefix="keel-buckets") as pool:
            for part in pool.map(one, [ordered[i:i + size] for i in range(0, len(ordered), size)]):
                found.update(part)
        return found

    def _bucket_pass(self, conn: Any, flow: str, ids: list[int], name: str,
                     edges: list[int]) -> dict[int, list[Any]]:
        """(run_id, b, min, max, count, x of last, last) per non-empty bucket, by run."""
        buckets = range(len(edges) - 1)
        params: dict[str, Any] = {"flow": flow, "name": name}
        if self.db.engine.dialect.name == "sqlite":
            conn.exec_driver_sql("CREATE TEMP TABLE IF NOT EXISTS keel_series_runs (run_id INTEGER PRIMARY KEY)")
            conn.exec_driver_sql("CREATE TEMP TABLE IF NOT EXISTS keel_series_edges "
                                 "(b INTEGER PRIMARY KEY, lo INTEGER NOT NULL, hi INTEGER NOT NULL)")
            conn.exec_driver_sql("DELETE FROM temp.keel_series_runs")
            conn.exec_driver_sql("DELETE FROM temp.keel_series_edges")
            conn.exec_driver_sql("INSERT INTO temp.keel_series_runs VALUES (?)", [(x,) for x in sorted(set(ids))])
            conn.exec_driver_sql("INSERT INTO temp.keel_series_edges VALUES (?, ?, ?)",
                                 [(b, edges[b], edges[b + 1]) for b in buckets if edges[b] < edges[b + 1]])
            sql = _SQLITE_BUCKETS
        else:
            params.update(runs=sorted(set(ids)), los=edges[:-1], start=edges[0], end=edges[-1])
            sql = _POSTGRES_BUCKETS
        found: dict[int, list[Any]] = {}
        for row in conn.execute(sa.text(sql), params):
            found.setdefault(int(row[0]), []).append(row)
        return found
