"""Tags and comments on runs, in SQL (``AnnotationStore``).

Each change adds its event (``run.tagged``, ``run.untagged``, ``run.commented``) in its own
transaction, so readers that follow the event log (the dashboard) see it."""

from __future__ import annotations

import dataclasses
import time
from typing import Iterable

import sqlalchemy as sa

from keel.store.records import Comment, event_row
from keel.store.runs import insert_new_tags, user_name
from keel.store.schema import comments, events, tags
from keel.store.sql import Database


class SqlAnnotations:
    def __init__(self, db: Database):
        self.db = db

    def add_tags(self, flow: str, run_id: int, new_tags: Iterable[str], *, system: bool = False) -> None:
        new_tags = list(new_tags)
        with self.db.write() as conn:
            self.db.lock_events(conn)
            insert_new_tags(conn, flow, run_id, new_tags, system)
            conn.execute(events.insert().values(**event_row(flow, run_id, "run.tagged", detail={"tags": new_tags})))

    def tag_kinds(self, flow: str, run_id: int) -> dict[str, bool]:
        """The run's tags, each with True when it is a system tag (set by Keel, not the user)."""
        with self.db.read() as conn:
            return {r.tag: bool(r.system) for r in conn.execute(
                sa.select(tags.c.tag, tags.c.system).where(tags.c.flow == flow, tags.c.run_id == run_id))}

    def remove_tags(self, flow: str, run_id: int, old_tags: Iterable[str]) -> None:
        """Remove user tags; a system tag is never removed."""
        old_tags = list(old_tags)
        with self.db.write() as conn:
            self.db.lock_events(conn)
            conn.execute(tags.delete().where(tags.c.flow == flow, tags.c.run_id == run_id,
                                             tags.c.tag.in_(old_tags), tags.c.system.is_not(True)))
            conn.execute(events.insert().values(**event_row(flow, run_id, "run.untagged", detail={"tags": old_tags})))

    def add_comment(self, flow: str, run_id: int, text: str, *, author: str | None = None) -> Comment:
        """Keep a comment on a run, with its author (KEEL_USER or the login name) and time."""
        comment = Comment(id=0, flow=flow, run_id=run_id, author=author or user_name(), created_at=time.time(),
                          text=text)
        row = {"flow": comment.flow, "run_id": comment.run_id, "author": comment.author,
               "created_at": comment.created_at, "text": comment.text}
        with self.db.write() as conn:
            self.db.lock_events(conn)
            new_id = conn.execute(comments.insert().values(**row)).inserted_primary_key[0]
            conn.execute(events.insert().values(**event_row(flow, run_id, "run.commented",
                                                            detail={"comment": int(new_id)})))
        return dataclasses.replace(comment, id=int(new_id))

    def list_comments(self, flow: str, run_id: int) -> list[Comment]:
        """A run's comments, oldest first."""
        with self.db.read() as conn:
            return [Comment(id=r.id, flow=r.flow, run_id=r.run_id, author=r.author, created_at=r.created_at,
                            text=r.text)
                    for r in conn.execute(sa.select(comments).where(comments.c.flow == flow,
                                                                    comments.c.run_id == run_id)
                                          .order_by(comments.c.created_at, comments.c.id))]
