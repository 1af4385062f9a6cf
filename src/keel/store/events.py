"""The event log, in SQL (``EventLog``): run and task state changes in commit order.

Writers add events in the transaction of the change (``SqlRuns.new_run``,
``set_run_status``, ``write_batch``). Readers keep a cursor, the last id they saw::

    cursor = 0
    for event in store.events.follow(after=cursor, flow="Train", run_id=3):
        print(event.kind, event.step, event.task_id)     # ends after run.succeeded/failed/...

On PostgreSQL, event-writing transactions take an advisory lock, so ids commit in order and
a cursor never skips an event that commits late.
"""

from __future__ import annotations

import json
import time
from typing import Any, Callable, Iterator

import sqlalchemy as sa

from keel.store.records import Event
from keel.store.schema import events
from keel.store.sql import Database


class SqlEvents:
    def __init__(self, db: Database):
        self.db = db

    def read(self, after: int = 0, *, flow: str | None = None, run_id: int | None = None,
             limit: int | None = 1000, kinds: tuple[str, ...] | None = None) -> list[Event]:
        """Events with an id greater than ``after``, oldest first, optionally of one flow or run
        and of some kinds only."""
        query = sa.select(events).where(events.c.id > after).order_by(events.c.id)
        if kinds is not None:
            query = query.where(events.c.kind.in_(kinds))
        if flow is not None:
            query = query.where(events.c.flow == flow)
        if run_id is not None:
            query = query.where(events.c.run_id == run_id)
        if limit:
            query = query.limit(limit)
        with self.db.read() as conn:
            return [event_record(r) for r in conn.execute(query)]

    def last_id(self) -> int:
        """The newest event's id (0 when there is none): a cursor that skips the past."""
        with self.db.read() as conn:
            return int(conn.execute(sa.select(sa.func.coalesce(sa.func.max(events.c.id), 0))).scalar_one())

    def follow(self, after: int = 0, *, flow: str | None = None, run_id: int | None = None,
               poll: float = 0.2, until: Callable[[Event], bool] | None = None,
               timeout: float | None = None) -> Iterator[Event]:
        """Every event after ``after``, then new ones as they are written (one indexed query per
        ``poll`` seconds). Stops after an event for which ``until`` is true (by default, when
        following one run, the event that ends it), or after ``timeout`` seconds."""
        return follow(self.read, after, flow=flow, run_id=run_id, poll=poll, until=until, timeout=timeout)


def follow(read: Callable[..., list[Event]], after: int, *, flow: str | None, run_id: int | None, poll: float,
           until: Callable[[Event], bool] | None, timeout: float | None) -> Iterator[Event]:
    """The polling loop behind every ``EventLog.follow`` (SQL and in-memory)."""
    if until is None and run_id is not None:
        until = _ends_run
    deadline = None if timeout is None else time.monotonic() + timeout
    cursor = after
    while True:
        batch = read(cursor, flow=flow, run_id=run_id, limit=1000)
        for event in batch:
            cursor = event.id
            yield event
            if until is not None and until(event):
                return
        if deadline is not None and time.monotonic() >= deadline:
            return
        if not batch:
            time.sleep(poll)


def _ends_run(event: Event) -> bool:
    return event.ends_run


def event_record(r: Any) -> Event:
    return Event(id=r.id, ts=r.ts, flow=r.flow, run_id=r.run_id, kind=r.kind, step=r.step, task_id=r.task_id,
                 attempt=r.attempt, detail=json.loads(r.detail) if r.detail else {})
