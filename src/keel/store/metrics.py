"""Metric points of runs, in SQL (``MetricStore``). Points are written by the scheduler's
``write_batch``; these are the reads, each one query whatever the number of runs."""

from __future__ import annotations

import math
import os
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Iterable

import sqlalchemy as sa

from keel.store.records import METRIC_BLOCK, MetricBuckets, bucket_edges
from keel.store.schema import metric_last, metrics
from keel.store.sql import Database

_CHUNK = 500
# bucketed_runs scans slices of the runs on this many connections at once (the drivers let go
# of the GIL while the database works), when there are at least _SLICE_RUNS runs a slice.
_PASS_THREADS = max(1, min(4, os.cpu_count() or 1))
_SLICE_RUNS = 8
# A piece of whole blocks spans fewer than 2^_OFFSET_BITS blocks (67 million steps): more are cut.
_OFFSET_BITS = 20


def _points(flow: str, run_id: int, name: str, task_id: int | None = None) -> Any:
    """A series as (id, x, value): x is the logged step, or the point's index without one."""
    cond = [metrics.c.flow == flow, metrics.c.run_id == run_id, metrics.c.name == name]
    if task_id is not None:
        cond.append(metrics.c.task_id == task_id)
    index = sa.func.row_number().over(order_by=metrics.c.id) - 1
    x_expr = sa.case((metrics.c.step.is_(None), index), else_=metrics.c.step)
    return sa.select(metrics.c.id, sa.cast(x_expr, sa.Float).label("x"), metrics.c.value).where(*cond).cte("pts")


def _nan(value: Any) -> float:
    return math.nan if value is None else float(value)


# The bucketing passes of bucketed_runs on SQLite: the runs (r.run_id) and the pieces of the
# buckets (k.p, in bucket k.b, from k.lo to k.hi) are two temporary tables of the connection
# (the store's file is not written), whose rowid order the planner knows, so each (run, piece)
# is one range scan, of ix_metrics_series (points) or of metric_blocks (whole blocks), taken
# in order, and the GROUP BY streams instead of sorting.
_SQLITE_POINTS = """
SELECT g.run_id, g.b, g.lo, g.hi, g.n, g.last_id, p.step, p.value
FROM (SELECT r.run_id AS run_id, k.b AS b, min(m.value) AS lo, max(m.value) AS hi,
             max(m.id) AS last_id, count(*) AS n
      FROM temp.keel_series_runs r CROSS JOIN temp.keel_series_pieces k CROSS JOIN metrics m
      WHERE m.flow = :flow AND m.run_id = r.run_id AND m.name = :name AND m.step >= k.lo AND m.step < k.hi
      GROUP BY r.run_id, k.p) g
JOIN metrics p ON p.id = g.last_id
"""
# The blocks: a bucket's last point is its block's whose last_id is highest, found with the
# aggregate as max(last_id * 2^20 + the block's offset in its piece) and read from that block's
# row (the block table is small and warm; a lookup of the point among the metrics is not).
_SQLITE_BLOCKS = f"""
SELECT g.run_id, g.b, g.lo, g.hi, g.n, g.last_key >> {_OFFSET_BITS}, l.last_step, l.last_value
FROM (SELECT r.run_id AS run_id, k.b AS b, k.lo AS first, min(m.lo) AS lo, max(m.hi) AS hi, sum(m.n) AS n,
             max((m.last_id << {_OFFSET_BITS}) + (m.block - k.lo)) AS last_key
      FROM temp.keel_series_runs r CROSS JOIN temp.keel_series_pieces k CROSS JOIN metric_blocks m
      WHERE m.flow = :flow AND m.run_id = r.run_id AND m.name = :name AND m.block >= k.lo AND m.block < k.hi
      GROUP BY r.run_id, k.p) g
JOIN metric_blocks l ON l.flow = :flow AND l.run_id = g.run_id AND l.name = :name
                        AND l.block = g.first + (g.last_key & {(1 << _OFFSET_BITS) - 1})
"""
# PostgreSQL: an index-only scan of the runs' series (or of their blocks) and a hash aggregate
# by (run, piece); width_bucket finds each step's (block's) piece among contiguous pieces (a
# join with the pieces there becomes a nested loop over every pair).
_POSTGRES_POINTS = """
SELECT g.run_id, g.p, g.lo, g.hi, g.n, g.last_id, p.step, p.value
FROM (SELECT m.run_id AS run_id, width_bucket(m.step, CAST(:los AS BIGINT[])) AS p, min(m.value) AS lo,
             max(m.value) AS hi, max(m.id) AS last_id, count(*) AS n
      FROM metrics m
      WHERE m.flow = :flow AND m.run_id = ANY(CAST(:runs AS INTEGER[])) AND m.name = :name
            AND m.step >= :start AND m.step < :end
      GROUP BY 1, 2) g
JOIN metrics p ON p.id = g.last_id
"""
_POSTGRES_BLOCKS = """
SELECT g.run_id, g.p, g.lo, g.hi, g.n, g.last_id, p.step, p.value
FROM (SELECT m.run_id AS run_id, width_bucket(m.block, CAST(:los AS BIGINT[])) AS p, min(m.lo) AS lo,
             max(m.hi) AS hi, max(m.last_id) AS last_id, sum(m.n) AS n
      FROM metric_blocks m
      WHERE m.flow = :flow AND m.run_id = ANY(CAST(:runs AS INTEGER[])) AND m.name = :name
            AND m.block >= :start AND m.block < :end
      GROUP BY 1, 2) g
JOIN metrics p ON p.id = g.last_id
"""

# A piece of a bucket: (bucket, lo, hi), steps lo <= step < hi, or blocks lo <= block < hi.
_Piece = tuple[int, int, int]


def _plan(edges: list[int], blocks: bool) -> tuple[list[list[_Piece]], list[_Piece]]:
    """How to read the buckets ``edges`` delimit: runs of contiguous point pieces (each one
    range per run) and contiguous block pieces. With ``blocks``, the whole blocks of each
    bucket come from ``metric_blocks`` and only the steps before a bucket's first whole block
    or after its last are read as points: over snapped edges (``records.bucket_edges``), the
    range's two ends."""
    if not blocks:
        return [[(b, edges[b], edges[b + 1]) for b in range(len(edges) - 1) if edges[b] < edges[b + 1]]], []
    points: list[list[_Piece]] = []
    whole: list[_Piece] = []

    def add(b: int, lo: int, hi: int) -> None:
        if lo >= hi:
            return
        if points and points[-1][-1][2] == lo:
            points[-1].append((b, lo, hi))
        else:
            points.append([(b, lo, hi)])
    for b in range(len(edges) - 1):
        lo, hi = edges[b], edges[b + 1]
        first, end = -(-lo // METRIC_BLOCK), hi // METRIC_BLOCK   # whole blocks: first <= block < end
        if first < end:
            add(b, lo, first * METRIC_BLOCK)
            whole.extend((b, s, min(s + (1 << _OFFSET_BITS), end)) for s in range(first, end, 1 << _OFFSET_BITS))
            add(b, end * METRIC_BLOCK, hi)
        else:
            add(b, lo, hi)
    return points, whole


def _merge(rows: Iterable[Any]) -> dict[int, list[list[Any]]]:
    """Rows (run_id, b, lo, hi, n, last_id, step, value) of pieces merged per bucket: by run,
    [b, lo, hi, n, last_id, step, value] in bucket order (the last point is the piece's whose
    last id is highest: the one logged last)."""
    found: dict[int, dict[int, list[Any]]] = {}
    for run_id, b, lo, hi, n, last_id, step, value in rows:
        slots = found.setdefault(int(run_id), {})
        slot = slots.get(b)
        if slot is None:
            slots[b] = [b, lo, hi, int(n), last_id, step, value]
            continue
        slot[1] = lo if slot[1] is None else slot[1] if lo is None else min(slot[1], lo)
        slot[2] = hi if slot[2] is None else slot[2] if hi is None else max(slot[2], hi)
        slot[3] += int(n)
        if last_id > slot[4]:
            slot[4:] = [last_id, step, value]
    return {run_id: [slots[b] for b in sorted(slots)] for run_id, slots in found.items()}


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
            found = self._bucketed_runs([(flow, run_id)], name, buckets, lo, hi, False)[(str(flow), int(run_id))]
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
        buckets over one shared range ``[lo, hi]`` (None: the ends of all the series together),
        as :func:`keel.store.records.bucket_runs` does. Series logged with steps, the usual
        ones, are bucketed in one statement per flow. Over a wide range (buckets at least
        ``METRIC_BLOCK`` steps wide) the buckets' inner edges are snapped to blocks of steps
        (``bucket_edges(snap=True)``) and each bucket is read from ``metric_blocks``, the
        summaries kept at write time, and the answer is exact for those edges: 100 runs x
        100,000 points are 160,000 block rows and a few points at the range's ends. Zoomed in
        (narrower buckets), each (run, bucket) is a range scan of ``ix_metrics_series``, which
        is then small. A series with points logged without a step (x is then the point's index)
        is bucketed by :meth:`bucketed` on its own."""
        return self._bucketed_runs(runs, name, buckets, lo, hi, True)

    def _bucketed_runs(self, runs: Iterable[tuple[str, int]], name: str, buckets: int, lo: float | None,
                       hi: float | None, snap: bool) -> dict[tuple[str, int], MetricBuckets]:
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
            edges = bucket_edges(x0, x1, buckets, snap) if x1 >= x0 else []
            plan = _plan(edges, snap and (x1 - x0) / buckets >= METRIC_BLOCK) if len(edges) > 1 else ([], [])
            for flow, ids in stepped.items():
                if len(edges) < 2 or edges[-1] <= edges[0]:
                    continue
                found = self._bucket_passes(flow, ids, name, plan)
                small = [run_id for run_id in ids if 0 < sum(r[3] for r in found.get(run_id, [])) <= buckets]
                for run_id, rows in found.items():
                    out[(flow, run_id)] = MetricBuckets(
                        tuple(float(r[5]) for r in rows), tuple(_nan(r[1]) for r in rows),
                        tuple(_nan(r[2]) for r in rows), tuple(_nan(r[6]) for r in rows),
                        sum(r[3] for r in rows), x0, x1)
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

    def _bucket_passes(self, flow: str, ids: list[int], name: str,
                       plan: tuple[list[list[_Piece]], list[_Piece]]) -> dict[int, list[list[Any]]]:
        """:meth:`_bucket_pass` over slices of the runs, each on a connection of its own, at once:
        10 million points are a second of one core's work in SQLite, and a machine has more.
        Blocks are read in one pass: 160,000 of them take 0.15 s, less than more connections cost."""
        slices = 1 if plan[1] else min(_PASS_THREADS, len(ids) // _SLICE_RUNS)
        if slices <= 1 or ":memory:" in self.db.url:
            with self.db.read() as conn:
                return self._bucket_pass(conn, flow, ids, name, plan)
        ordered = sorted(ids)
        size = -(-len(ordered) // slices)

        def one(part: list[int]) -> dict[int, list[list[Any]]]:
            with self.db.read() as conn:
                return self._bucket_pass(conn, flow, part, name, plan)
        found: dict[int, list[list[Any]]] = {}
        with ThreadPoolExecutor(slices, thread_name_prefix="keel-buckets") as pool:
            for part in pool.map(one, [ordered[i:i + size] for i in range(0, len(ordered), size)]):
                found.update(part)
        return found

    def _bucket_pass(self, conn: Any, flow: str, ids: list[int], name: str,
                     plan: tuple[list[list[_Piece]], list[_Piece]]) -> dict[int, list[list[Any]]]:
        """[b, min, max, count, last id, x of last, last] per non-empty bucket, by run."""
        runs = sorted(set(ids))
        params: dict[str, Any] = {"flow": flow, "name": name}
        point_runs, blocks = plan
        rows: list[Any] = []
        if self.db.engine.dialect.name == "sqlite":
            conn.exec_driver_sql("CREATE TEMP TABLE IF NOT EXISTS keel_series_runs (run_id INTEGER PRIMARY KEY)")
            conn.exec_driver_sql("CREATE TEMP TABLE IF NOT EXISTS keel_series_pieces "
                                 "(p INTEGER PRIMARY KEY, b INTEGER NOT NULL, lo INTEGER NOT NULL, hi INTEGER NOT NULL)")
            conn.exec_driver_sql("DELETE FROM temp.keel_series_runs")
            conn.exec_driver_sql("INSERT INTO temp.keel_series_runs VALUES (?)", [(x,) for x in runs])
            for sql, pieces in ((_SQLITE_POINTS, [p for run in point_runs for p in run]), (_SQLITE_BLOCKS, blocks)):
                if pieces:
                    conn.exec_driver_sql("DELETE FROM temp.keel_series_pieces")
                    conn.exec_driver_sql("INSERT INTO temp.keel_series_pieces VALUES (?, ?, ?, ?)",
                                         [(i, *piece) for i, piece in enumerate(pieces)])
                    rows.extend(conn.execute(sa.text(sql), params))
            return _merge(rows)
        for sql, pieces in [*((_POSTGRES_POINTS, run) for run in point_runs), (_POSTGRES_BLOCKS, blocks)]:
            if not pieces:
                continue
            found = conn.execute(sa.text(sql), {**params, "runs": runs, "los": [p[1] for p in pieces],
                                                "start": pieces[0][1], "end": pieces[-1][2]})
            rows.extend((r[0], pieces[r[1] - 1][0], *r[2:]) for r in found)
        return _merge(rows)
