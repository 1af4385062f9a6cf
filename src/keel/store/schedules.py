"""What ``keel scheduler`` fired, in SQL (``ScheduleStore``): one row per (project, job, cron
time), claimed before the run starts, so a restarted scheduler never fires a time twice."""

from __future__ import annotations

import time
from typing import Any

import sqlalchemy as sa

from keel.store.records import Fire
from keel.store.schema import schedule_fires
from keel.store.sql import Database


class SqlSchedules:
    def __init__(self, db: Database):
        self.db = db

    def claim_fire(self, project: str, job: str, fire_time: float, *, status: str = "started",
                   note: str | None = None) -> bool:
        """Record that ``job`` fires for cron time ``fire_time``; False if that time was already taken."""
        try:
            with self.db.write() as conn:
                conn.execute(schedule_fires.insert().values(project=project, job=job, fire_time=fire_time,
                                                            fired_at=time.time(), status=status, note=note))
            return True
        except sa.exc.IntegrityError:
            return False

    def update_fire(self, project: str, job: str, fire_time: float, **values: Any) -> None:
        with self.db.write() as conn:
            conn.execute(schedule_fires.update().where(
                schedule_fires.c.project == project, schedule_fires.c.job == job,
                schedule_fires.c.fire_time == fire_time).values(**values))

    def list_fires(self, project: str, job: str | None = None, limit: int | None = None) -> list[Fire]:
        """What the scheduler fired, newest cron time first."""
        query = (sa.select(schedule_fires).where(schedule_fires.c.project == project)
                 .order_by(schedule_fires.c.fire_time.desc()))
        if job is not None:
            query = query.where(schedule_fires.c.job == job)
        if limit:
            query = query.limit(limit)
        with self.db.read() as conn:
            return [Fire(**r._mapping) for r in conn.execute(query)]
