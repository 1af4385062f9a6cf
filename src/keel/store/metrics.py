"""Metric points of runs, in SQL (``MetricStore``). Points are written by the scheduler's
``write_batch``; these are the reads, each one query whatever the number of runs."""

from __future__ import annotations

from typing import Any, Iterable

import sqlalchemy as sa

from keel.store.records import MetricBuckets
from keel.store.schema import metric_last, metrics
from keel.store.sql import Database

_CHUNK = 500


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
        leaves the database."""
        buckets = max(1, int(buckets))
        cond = [metrics.c.flow == flow, metrics.c.run_id == run_id, metrics.c.name == name]
        if task_id is not None:
            cond.append(metrics.c.task_id == task_id)
        index = sa.func.row_number().over(order_by=metrics.c.id) - 1
        x_expr = sa.case((metrics.c.step.is_(None), index), else_=metrics.c.step)
        base = sa.select(metrics.c.id, sa.cast(x_expr, sa.Float).label("x"), metrics.c.value).where(*cond).cte("pts")
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
