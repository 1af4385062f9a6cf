"""Metric points of runs, in SQL (``MetricStore``). Points are written by the scheduler's
``write_batch``; these are the reads, each one query whatever the number of runs."""

from __future__ import annotations

from typing import Any, Iterable

import sqlalchemy as sa

from keel.store.schema import metrics
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
        """The last value of each named metric of each (flow, run_id): {(flow, run_id): {name: value}}."""
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
                    chunk = ids[i:i + _CHUNK]
                    last = (sa.select(sa.func.max(metrics.c.id))
                            .where(metrics.c.flow == flow, metrics.c.run_id.in_(chunk), metrics.c.name.in_(names))
                            .group_by(metrics.c.run_id, metrics.c.name))
                    for r in conn.execute(sa.select(metrics.c.run_id, metrics.c.name, metrics.c.value)
                                          .where(metrics.c.id.in_(last))):
                        out.setdefault((flow, r.run_id), {})[r.name] = r.value
        return out

    def max_per_task(self, flow: str, run_id: int, names: Iterable[str]) -> list[tuple[int, str, float]]:
        """(task_id, name, largest value) for the named metrics of a run's tasks."""
        query = (sa.select(metrics.c.task_id, metrics.c.name, sa.func.max(metrics.c.value))
                 .where(metrics.c.flow == flow, metrics.c.run_id == run_id, metrics.c.name.in_(list(names)))
                 .group_by(metrics.c.task_id, metrics.c.name))
        with self.db.read() as conn:
            return [(int(t), str(n), float(v)) for t, n, v in conn.execute(query)]
