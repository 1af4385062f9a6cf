"""Task links, in SQL (``TaskLinkStore``): addresses a task publishes while it runs.

A ``@spark`` step or a project job with the spark add-on records its cluster's web UI
(``spark_ui``) and its application UI (``spark_app_ui``) here, so ``keel show`` and the
dashboard can point at them after the log scrolled away. One row per (task, name); a
retry's address replaces the earlier one.

    md.links.add("Train", 3, 2, "spark_ui", "http://127.0.0.1:41234")
    md.links.list("Train", 3)        # [TaskLink(...)], by task then name
"""

from __future__ import annotations

import time

import sqlalchemy as sa

from keel.store.records import TaskLink
from keel.store.schema import task_links
from keel.store.sql import Database


class SqlTaskLinks:
    def __init__(self, db: Database):
        self.db = db

    def add(self, flow: str, run_id: int, task_id: int, name: str, url: str) -> None:
        """Record (or replace) the address ``name`` of a task."""
        row = {"flow": flow, "run_id": run_id, "task_id": task_id, "name": name, "url": url,
               "created_at": time.time()}
        with self.db.write() as conn:
            self.db.upsert(conn, task_links, row, ("flow", "run_id", "task_id", "name"))

    def list(self, flow: str, run_id: int, task_id: int | None = None) -> list[TaskLink]:
        """The links of a run (or of one of its tasks), by task id then name."""
        query = (sa.select(task_links).where(task_links.c.flow == flow, task_links.c.run_id == run_id)
                 .order_by(task_links.c.task_id, task_links.c.name))
        if task_id is not None:
            query = query.where(task_links.c.task_id == task_id)
        with self.db.read() as conn:
            return [TaskLink(flow=r.flow, run_id=r.run_id, task_id=r.task_id, name=r.name, url=r.url,
                             created_at=r.created_at) for r in conn.execute(query)]
