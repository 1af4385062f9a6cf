"""Run searches for the CLI and the client, through the store's query API
(``store.metadata.query``, ``store.metadata.metrics``); no SQL here.

    records = search_runs(store.metadata, "Train", where="params.alpha > 0.3", sort="-metrics.acc", limit=20)
    last = last_metrics(store.metadata, records, ["acc"])     # {(flow, run_id): {"acc": 0.93}}
"""

from __future__ import annotations

from typing import Any, Iterable

from keel.store.querylang import Query


def search_runs(metadata: Any, flow: str | None = None, where: str | None = None, sort: str | None = None,
                limit: int | None = None, offset: int = 0, query: Query | None = None) -> list[Any]:
    """Matching runs as ``RunRecord``s (with params and tags), sorted, newest first by default."""
    return metadata.query.search_runs(flow=flow, where=where, sort=sort, limit=limit, offset=offset, query=query)


def last_metrics(metadata: Any, records: list[Any], names: Iterable[str]) -> dict[tuple[str, int], dict[str, float]]:
    """The last value of each named metric of each run: {(flow, run_id): {name: value}}."""
    return metadata.metrics.last_of_runs([(r.flow, r.run_id) for r in records], names)


def field_value(record: Any, field: str, metrics: dict[tuple[str, int], dict[str, float]]) -> Any:
    """The value of a ``params.X`` or ``metrics.X`` column for one run (None when it has none)."""
    kind, _, name = field.partition(".")
    if kind == "params":
        return record.params.get(name)
    return metrics.get((record.flow, record.run_id), {}).get(name)


def run_last_values(metadata: Any, flow: str, run_id: int) -> dict[str, float]:
    """Every metric of one run with its last value, in the order the metrics were first logged."""
    return metadata.metrics.last_values(flow, run_id)
