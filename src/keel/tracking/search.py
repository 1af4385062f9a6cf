"""Run the search language (``keel.tracking.query``) against the metadata store, fast.

One SELECT finds the matching runs (filter, sort and limit happen in the database); their
parameters, tags and the metric values to show are then read in bulk, a few hundred runs
per query, instead of one query per run.

    records = search_runs(store.metadata, "Train", where="params.alpha > 0.3", sort="-metrics.acc", limit=20)
    last = last_metrics(store.metadata, records, ["acc"])     # {(flow, run_id): {"acc": 0.93}}
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any, Iterable, Iterator

from keel.tracking.query import Query

_CHUNK = 500


def search_runs(metadata: Any, flow: str | None = None, where: str | None = None, sort: str | None = None,
                limit: int | None = None, offset: int = 0, query: Query | None = None) -> list[Any]:
    """Matching runs as ``RunRecord``s (with params and tags), sorted, newest first by default."""
    from keel.store.metadata import RunRecord

    query = query or Query(where, sort)
    with metadata.engine.connect() as conn:
        rows = conn.execute(query.select(flow, limit=limit, offset=offset)).all()
        params, tags = _bulk(conn, rows)
    out = []
    for row in rows:
        key = (row.flow, row.run_id)
        out.append(RunRecord(
            flow=row.flow, run_id=row.run_id, kind=row.kind, status=row.status, created_at=row.created_at,
            finished_at=row.finished_at, heartbeat_at=row.heartbeat_at, user=row.user, hostname=row.hostname,
            pid=row.pid, code_hash=row.code_hash, code_key=row.code_key,
            environment=_LazyJSON(row.environment), origin_run_id=row.origin_run_id, error=row.error,
            params=params.get(key, {}), tags=sorted(tags.get(key, []))))
    return out


class _LazyJSON(Mapping):
    """A run's environment (a few KB of JSON: every installed package), decoded when first read:
    listing 10,000 runs should not parse 10,000 package lists nobody looks at."""

    def __init__(self, text: str | None):
        self._text, self._value = text, None

    def _data(self) -> dict[str, Any]:
        if self._value is None:
            self._value = json.loads(self._text or "{}")
        return self._value

    def __getitem__(self, key: str) -> Any:
        return self._data()[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self._data())

    def __len__(self) -> int:
        return len(self._data())

    def __repr__(self) -> str:
        return repr(self._data())


def _by_flow(keys: Iterable[tuple[str, int]]) -> dict[str, list[int]]:
    out: dict[str, list[int]] = {}
    for flow, run_id in keys:
        out.setdefault(flow, []).append(run_id)
    return out


def _bulk(conn: Any, rows: list[Any]) -> tuple[dict[Any, dict[str, Any]], dict[Any, list[str]]]:
    import sqlalchemy as sa

    from keel.store.metadata import params, tags

    p_out: dict[Any, dict[str, Any]] = {}
    t_out: dict[Any, list[str]] = {}

    for flow, ids in _by_flow((r.flow, r.run_id) for r in rows).items():
        for i in range(0, len(ids), _CHUNK):
            chunk = ids[i:i + _CHUNK]
            for r in conn.execute(sa.select(params.c.run_id, params.c.name, params.c.value)
                                  .where(params.c.flow == flow, params.c.run_id.in_(chunk))):
                p_out.setdefault((flow, r.run_id), {})[r.name] = json.loads(r.value or "null")
            for r in conn.execute(sa.select(tags.c.run_id, tags.c.tag)
                                  .where(tags.c.flow == flow, tags.c.run_id.in_(chunk), tags.c.system.is_not(True))):
                t_out.setdefault((flow, r.run_id), []).append(r.tag)
    return p_out, t_out


def last_metrics(metadata: Any, records: list[Any], names: Iterable[str]) -> dict[tuple[str, int], dict[str, float]]:
    """The last value of each named metric of each run: {(flow, run_id): {name: value}}."""
    import sqlalchemy as sa

    from keel.store.metadata import metrics

    names = list(dict.fromkeys(names))
    out: dict[tuple[str, int], dict[str, float]] = {}
    if not names or not records:
        return out
    with metadata.engine.connect() as conn:
        for flow, ids in _by_flow((r.flow, r.run_id) for r in records).items():
            for i in range(0, len(ids), _CHUNK):
                chunk = ids[i:i + _CHUNK]
                last = (sa.select(sa.func.max(metrics.c.id))
                        .where(metrics.c.flow == flow, metrics.c.run_id.in_(chunk), metrics.c.name.in_(names))
                        .group_by(metrics.c.run_id, metrics.c.name))
                for r in conn.execute(sa.select(metrics.c.run_id, metrics.c.name, metrics.c.value)
                                      .where(metrics.c.id.in_(last))):
                    out.setdefault((flow, r.run_id), {})[r.name] = r.value
    return out


def field_value(record: Any, field: str, metrics: dict[tuple[str, int], dict[str, float]]) -> Any:
    """The value of a ``params.X`` or ``metrics.X`` column for one run (None when it has none)."""
    kind, _, name = field.partition(".")
    if kind == "params":
        return record.params.get(name)
    return metrics.get((record.flow, record.run_id), {}).get(name)


def run_last_values(metadata: Any, flow: str, run_id: int) -> dict[str, float]:
    """Every metric of one run with its last value, in the order the metrics were first logged."""
    import sqlalchemy as sa

    from keel.store.metadata import metrics

    last = (sa.select(sa.func.max(metrics.c.id).label("last"), sa.func.min(metrics.c.id).label("first"))
            .where(metrics.c.flow == flow, metrics.c.run_id == run_id).group_by(metrics.c.name).subquery())
    query = (sa.select(metrics.c.name, metrics.c.value).join(last, metrics.c.id == last.c.last)
             .order_by(last.c.first))
    with metadata.engine.connect() as conn:
        return {r.name: r.value for r in conn.execute(query)}
