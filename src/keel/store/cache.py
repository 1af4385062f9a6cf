"""The step cache's records: which task computed which key, and what every cached task's key was.

Two kinds of rows:

- an **entry** (``cache_entries``): a successful task whose outputs can be reused by any later
  task with the same key; it keeps the output artifact refs (content keys, so a hit copies no
  bytes) and the files the task read, with their digests;
- a **task key** (``cache_task_keys``): the key parts of every task that ran with caching on,
  hit or miss, so ``keel cache explain`` can say which part changed.

A **claim** (``cache_claims``) marks a key being computed, so two runs that need the same key
at the same time compute it once: the second waits for the first's entry.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from typing import Any, Protocol

import sqlalchemy as sa

from keel.store.schema import cache_claims, cache_entries, cache_task_keys

@dataclass(frozen=True)
class CacheEntry:
    key: str
    flow: str
    step: str
    run_id: int
    task_id: int
    artifacts: dict[str, dict[str, Any]]
    num_splits: int | None = None
    reads: dict[str, str] = field(default_factory=dict)
    created_at: float = 0.0


@dataclass(frozen=True)
class TaskKey:
    flow: str
    run_id: int
    task_id: int
    step: str
    key: str
    parts: dict[str, str]
    hit: bool
    note: str | None = None
    created_at: float = 0.0


@dataclass(frozen=True)
class Claim:
    key: str
    flow: str
    run_id: int
    claimed_at: float


class CacheStore(Protocol):
    def add_entry(self, entry: CacheEntry) -> None: ...
    def entries(self, key: str) -> list[CacheEntry]: ...          # newest first
    def entries_of(self, flow: str, limit: int) -> list[CacheEntry]: ...   # the flow's newest, newest first
    def add_task_keys(self, records: list[TaskKey]) -> None: ...
    def task_keys(self, flow: str, run_id: int, step: str) -> list[TaskKey]: ...
    def previous_task_key(self, flow: str, step: str, before_run: int, hit_only: bool = False) -> TaskKey | None: ...
    def claim(self, claim: Claim) -> Claim | None: ...             # None: claimed; else the holder
    def release(self, key: str, run_id: int) -> None: ...
    def prune(self, older_than: float) -> int: ...


def _entry(row: Any) -> CacheEntry:
    return CacheEntry(key=row.key, flow=row.flow, step=row.step, run_id=row.run_id, task_id=row.task_id,
                      artifacts=json.loads(row.artifacts), num_splits=row.num_splits,
                      reads=json.loads(row.reads), created_at=row.created_at)


def _task_key(row: Any) -> TaskKey:
    return TaskKey(flow=row.flow, run_id=row.run_id, task_id=row.task_id, step=row.step, key=row.key,
                   parts=json.loads(row.parts), hit=bool(row.hit), note=row.note, created_at=row.created_at)


class SqlCacheStore:
    """The cache tables in the metadata database (SQLite or PostgreSQL)."""

    def __init__(self, engine: sa.engine.Engine, writer: sa.engine.Engine | None = None):
        self.engine = engine
        self.writer = writer or engine  # the tables come with the schema (migration 0004)

    def add_entry(self, entry: CacheEntry) -> None:
        with self.writer.begin() as conn:
            conn.execute(cache_entries.insert().values(
                key=entry.key, flow=entry.flow, step=entry.step, run_id=entry.run_id, task_id=entry.task_id,
                created_at=entry.created_at or time.time(), artifacts=json.dumps(entry.artifacts),
                num_splits=entry.num_splits, reads=json.dumps(entry.reads)))

    def entries(self, key: str) -> list[CacheEntry]:
        with self.engine.connect() as conn:
            rows = conn.execute(cache_entries.select().where(cache_entries.c.key == key)
                                .order_by(cache_entries.c.id.desc()).limit(20))
            return [_entry(r) for r in rows]

    def entries_of(self, flow: str, limit: int) -> list[CacheEntry]:
        """The flow's newest ``limit`` entries in one query (a run prefetches them: no query per hit)."""
        c = cache_entries.c
        with self.engine.connect() as conn:
            rows = conn.execute(cache_entries.select().where(c.flow == flow).order_by(c.id.desc()).limit(limit))
            return [_entry(r) for r in rows]

    def add_task_keys(self, records: list[TaskKey]) -> None:
        """One transaction for a batch (a task id appears once per run: a task has one key)."""
        rows = [dict(flow=r.flow, run_id=r.run_id, task_id=r.task_id, step=r.step, key=r.key,
                     parts=json.dumps(r.parts), hit=r.hit, note=r.note, created_at=r.created_at or time.time())
                for r in records]
        with self.writer.begin() as conn:
            conn.execute(cache_task_keys.insert(), rows)

    def task_keys(self, flow: str, run_id: int, step: str) -> list[TaskKey]:
        c = cache_task_keys.c
        with self.engine.connect() as conn:
            rows = conn.execute(cache_task_keys.select().where(
                (c.flow == flow) & (c.run_id == run_id) & (c.step == step)).order_by(c.task_id))
            return [_task_key(r) for r in rows]

    def previous_task_key(self, flow: str, step: str, before_run: int, hit_only: bool = False) -> TaskKey | None:
        c = cache_task_keys.c
        cond = (c.flow == flow) & (c.step == step) & (c.run_id < before_run)
        if hit_only:
            cond = cond & c.hit.is_(True)
        with self.engine.connect() as conn:
            row = conn.execute(cache_task_keys.select().where(cond)
                               .order_by(c.run_id.desc(), c.task_id).limit(1)).first()
            return _task_key(row) if row is not None else None

    def claim(self, claim: Claim) -> Claim | None:
        try:
            with self.writer.begin() as conn:
                conn.execute(cache_claims.insert().values(key=claim.key, flow=claim.flow, run_id=claim.run_id,
                                                          claimed_at=claim.claimed_at))
            return None
        except sa.exc.IntegrityError:
            with self.engine.connect() as conn:
                row = conn.execute(cache_claims.select().where(cache_claims.c.key == claim.key)).first()
            if row is None:  # released in between: try once more
                return self.claim(claim)
            return Claim(key=row.key, flow=row.flow, run_id=row.run_id, claimed_at=row.claimed_at)

    def release(self, key: str, run_id: int) -> None:
        with self.writer.begin() as conn:
            conn.execute(cache_claims.delete().where((cache_claims.c.key == key) & (cache_claims.c.run_id == run_id)))

    def prune(self, older_than: float) -> int:
        with self.writer.begin() as conn:
            n = conn.execute(cache_entries.delete().where(cache_entries.c.created_at < older_than)).rowcount
            conn.execute(cache_task_keys.delete().where(cache_task_keys.c.created_at < older_than))
            conn.execute(cache_claims.delete().where(cache_claims.c.claimed_at < older_than))
        return int(n or 0)


class MemoryCacheStore:
    """An in-memory :class:`CacheStore` for tests of the scheduler."""

    def __init__(self) -> None:
        self._entries: list[CacheEntry] = []
        self._keys: dict[tuple[str, int, int], TaskKey] = {}
        self._claims: dict[str, Claim] = {}

    def add_entry(self, entry: CacheEntry) -> None:
        self._entries.append(entry)

    def entries(self, key: str) -> list[CacheEntry]:
        return [e for e in reversed(self._entries) if e.key == key][:20]

    def entries_of(self, flow: str, limit: int) -> list[CacheEntry]:
        return [e for e in reversed(self._entries) if e.flow == flow][:limit]

    def add_task_keys(self, records: list[TaskKey]) -> None:
        for record in records:
            self._keys[(record.flow, record.run_id, record.task_id)] = record

    def task_keys(self, flow: str, run_id: int, step: str) -> list[TaskKey]:
        return sorted((k for k in self._keys.values() if (k.flow, k.run_id, k.step) == (flow, run_id, step)),
                      key=lambda k: k.task_id)

    def previous_task_key(self, flow: str, step: str, before_run: int, hit_only: bool = False) -> TaskKey | None:
        found = [k for k in self._keys.values() if k.flow == flow and k.step == step and k.run_id < before_run
                 and (k.hit or not hit_only)]
        return max(found, key=lambda k: (k.run_id, -k.task_id)) if found else None

    def claim(self, claim: Claim) -> Claim | None:
        holder = self._claims.setdefault(claim.key, claim)
        return None if holder is claim else holder

    def release(self, key: str, run_id: int) -> None:
        if key in self._claims and self._claims[key].run_id == run_id:
            del self._claims[key]

    def prune(self, older_than: float) -> int:
        before = len(self._entries)
        self._entries = [e for e in self._entries if e.created_at >= older_than]
        return before - len(self._entries)
