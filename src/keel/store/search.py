"""The store's one query API for runs (``RunQuery``): the ``--where``/``--sort`` language
(:mod:`keel.store.querylang`) run in the database, for ``keel runs``, the client and the
dashboard alike.

One SELECT finds the matching runs (filter, sort, limit and offset happen in the database);
their parameters and tags are then read in bulk, a few hundred runs per query. Whether a
run kept as ``running`` has crashed is decided once, by ``keel.store.liveness.effective_status``,
before the query runs, so ``status = "crashed"`` and the listed status always agree.

    records = md.query.search_runs(flow="Train", where="params.alpha > 0.3", sort="-metrics.acc", limit=20)
"""

from __future__ import annotations

import json
import time
from collections.abc import Mapping
from typing import Any, Iterator

import sqlalchemy as sa

from keel.store.querylang import Query
from keel.store.records import RunPage, RunRecord
from keel.store.runs import run_record
from keel.store.schema import params, runs, tags
from keel.store.sql import Database

_CHUNK = 500


class SqlRunQuery:
    def __init__(self, db: Database):
        self.db = db

    def search_runs(self, *, flow: str | None = None, where: str | None = None, sort: str | None = None,
                    limit: int | None = None, offset: int = 0, query: Query | None = None) -> list[RunRecord]:
        """Matching runs (with params and tags), sorted, newest first by default.

        Raises ``QueryError`` (naming the column) for a malformed ``where`` or ``sort``."""
        query = query or Query(where, sort)
        with self.db.read() as conn:
            crashed = self._crashed(conn, flow) if query.where is not None else set()
            rows = conn.execute(query.select(flow, limit=limit, offset=offset, crashed=crashed)).all()
            p, t = _bulk(conn, rows)
        return [run_record(row, _LazyJSON(row.environment), p.get((row.flow, row.run_id), {}),
                           sorted(t.get((row.flow, row.run_id), []))) for row in rows]

    def search_page(self, *, flow: str | None = None, limit: int = 50, offset: int = 0,
                    query: Query | None = None) -> RunPage:
        """A page of matching runs and how many match in all, for a table with pages.

        A filtered search counts its matches in the same SELECT (``count(*) OVER ()``), so the
        filter runs once; an unfiltered one counts the runs table, a cheaper query than the window."""
        query = query or Query()
        with self.db.read() as conn:
            if query.where is None:
                rows = conn.execute(query.select(flow, limit=limit, offset=offset)).all()
                count = sa.select(sa.func.count()).select_from(runs)
                total = int(conn.execute(count if flow is None else count.where(runs.c.flow == flow)).scalar_one())
            else:
                rows = conn.execute(query.select(flow, limit=limit, offset=offset, crashed=self._crashed(conn, flow),
                                                 counted=True)).all()
                # past the last page there is no row to read the total from: count apart
                total = int(rows[0].keel_total) if rows else self.count_runs(flow, query=query)
            p, t = _bulk(conn, rows)
        records = [run_record(row, _LazyJSON(row.environment), p.get((row.flow, row.run_id), {}),
                              sorted(t.get((row.flow, row.run_id), []))) for row in rows]
        return RunPage(runs=records, total=total)

    def count_runs(self, flow: str | None = None, where: str | None = None, *, query: Query | None = None) -> int:
        """How many runs match ``where`` (all of ``flow``'s, or every run, without one); the
        same filter as :meth:`search_runs`, counted in the database."""
        query = query or Query(where, None)
        with self.db.read() as conn:
            crashed = self._crashed(conn, flow) if query.where is not None else set()
            inner = query.select(flow, crashed=crashed, ordered=False).subquery()   # a count needs no order
            return int(conn.execute(sa.select(sa.func.count()).select_from(inner)).scalar_one())

    def effective_statuses(self, flow: str | None = None) -> dict[tuple[str, int], str]:
        """(flow, run_id) -> effective status of every run kept as running (few, usually)."""
        with self.db.read() as conn:
            return self._running(conn, flow)

    def _crashed(self, conn: Any, flow: str | None) -> set[tuple[str, int]]:
        return {key for key, status in self._running(conn, flow).items() if status == "crashed"}

    def _running(self, conn: Any, flow: str | None) -> dict[tuple[str, int], str]:
        from keel.store.liveness import effective_status

        q = (sa.select(runs.c.flow, runs.c.run_id, runs.c.environment, runs.c.heartbeat_at, runs.c.created_at)
             .where(runs.c.status == "running"))
        if flow is not None:
            q = q.where(runs.c.flow == flow)
        now = time.time()
        return {(r.flow, r.run_id): effective_status("running", json.loads(r.environment or "{}"), r.heartbeat_at,
                                                     r.created_at, now)
                for r in conn.execute(q)}


class _LazyJSON(Mapping[str, Any]):
    """A run's environment (a few KB of JSON: every installed package), decoded when first read:
    listing 10,000 runs should not parse 10,000 package lists nobody looks at."""

    def __init__(self, text: str | None):
        self._text: str | None = text
        self._value: dict[str, Any] | None = None

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


def _bulk(conn: Any, rows: list[Any]) -> tuple[dict[Any, dict[str, Any]], dict[Any, list[str]]]:
    p_out: dict[Any, dict[str, Any]] = {}
    t_out: dict[Any, list[str]] = {}
    by_flow: dict[str, list[int]] = {}
    for r in rows:
        by_flow.setdefault(r.flow, []).append(r.run_id)
    for flow, ids in by_flow.items():
        for i in range(0, len(ids), _CHUNK):
            chunk = ids[i:i + _CHUNK]
            found = conn.execute(sa.select(params.c.run_id, params.c.name, params.c.value)
                                 .where(params.c.flow == flow, params.c.run_id.in_(chunk))).all()
            for r, value in zip(found, _json_values([r.value for r in found])):
                p_out.setdefault((flow, r.run_id), {})[r.name] = value
            for r in conn.execute(sa.select(tags.c.run_id, tags.c.tag)
                                  .where(tags.c.flow == flow, tags.c.run_id.in_(chunk),
                                         tags.c.system.is_not(True))):  # user tags
                t_out.setdefault((flow, r.run_id), []).append(r.tag)
    return p_out, t_out


def _json_values(texts: list[str | None]) -> list[Any]:
    """Decode many stored JSON values in one ``json.loads`` (a page of 50 runs with 50 parameters
    each is 2,500 values: one call is 5x faster than 2,500); one by one if any is not JSON."""
    try:
        values = json.loads("[" + ",".join(t or "null" for t in texts) + "]")
    except ValueError:
        values = None
    if not isinstance(values, list) or len(values) != len(texts):
        values = [json.loads(t or "null") for t in texts]
    return values
