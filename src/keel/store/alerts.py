"""Alert firings and their outbox, in SQL (``AlertStore``).

A firing is unique per (rule, flow, run, key): :meth:`SqlAlerts.fire` inserts it and one
``pending`` delivery per action in one transaction, so an evaluator killed at any point has
either recorded the whole firing or nothing, and a restarted one cannot fire it twice.
Deliverers :meth:`claim` due deliveries with a lease (``sending`` until ``next_at``); one that
dies holding a lease loses it when the lease ends, and the delivery is claimed again
(at least once). A delivery id travels with each notification so receivers can dedupe.
"""

from __future__ import annotations

import json
import time
from typing import Any

import sqlalchemy as sa

from keel.store.records import Delivery, Firing
from keel.store.schema import alert_cursors, alert_deliveries, alert_firings
from keel.store.sql import Database


class SqlAlerts:
    def __init__(self, db: Database):
        self.db = db

    def fire(self, rule: str, flow: str, run_id: int, key: str, *, summary: str, fields: dict[str, Any],
             targets: list[dict[str, Any]], cooldown: float = 0.0, now: float | None = None,
             cursor: tuple[str, int] | None = None) -> Firing | None:
        """Record a firing and its deliveries; None if it fired already or the rule is cooling down.

        ``cursor`` (an evaluator's name, the id of the event that made this fire) is saved in the
        same transaction, so an evaluator killed right after has its place with its firing."""
        now = time.time() if now is None else now
        try:
            with self.db.write() as conn:
                if cursor is not None:
                    self._save_cursor(conn, *cursor)
                if cooldown > 0:
                    last = conn.execute(sa.select(sa.func.max(alert_firings.c.fired_at))
                                        .where(alert_firings.c.rule == rule)).scalar()
                    if last is not None and now - last < cooldown:
                        return None
                firing_id = conn.execute(alert_firings.insert().values(
                    rule=rule, flow=flow, run_id=run_id, key=key, fired_at=now, summary=summary,
                    fields=json.dumps(fields, default=str, sort_keys=True))).inserted_primary_key[0]
                if targets:
                    conn.execute(alert_deliveries.insert(), [
                        {"firing_id": firing_id, "action": i, "target": json.dumps(t, sort_keys=True),
                         "status": "pending", "attempts": 0, "next_at": now} for i, t in enumerate(targets)])
        except sa.exc.IntegrityError:
            return None
        return Firing(id=int(firing_id), rule=rule, flow=flow, run_id=run_id, key=key, fired_at=now,
                      summary=summary, fields=fields)

    def cursor(self, name: str) -> int | None:
        """The id of the last event the evaluator ``name`` evaluated (None: it never saved one)."""
        with self.db.read() as conn:
            value = conn.execute(sa.select(alert_cursors.c.event_id).where(alert_cursors.c.name == name)).scalar()
        return None if value is None else int(value)

    def save_cursor(self, name: str, event_id: int) -> None:
        """Record that the evaluator ``name`` evaluated every event up to ``event_id``."""
        with self.db.write() as conn:
            self._save_cursor(conn, name, event_id)

    def _save_cursor(self, conn: Any, name: str, event_id: int) -> None:
        self.db.upsert(conn, alert_cursors, {"name": name, "event_id": int(event_id), "updated_at": time.time()},
                       ("name",))

    def claim(self, *, now: float | None = None, lease: float = 30.0, limit: int = 50) -> list[Delivery]:
        """Due deliveries (pending and due, or sending with an expired lease), leased to the caller."""
        now = time.time() if now is None else now
        d = alert_deliveries.c
        out = []
        with self.db.write() as conn:
            rows = conn.execute(sa.select(alert_deliveries).where(
                d.status.in_(("pending", "sending")), d.next_at <= now).order_by(d.next_at).limit(limit)).all()
            for r in rows:
                taken = conn.execute(alert_deliveries.update().where(
                    d.id == r.id, d.status == r.status, d.next_at == r.next_at).values(
                    status="sending", next_at=now + lease, attempts=r.attempts + 1)).rowcount
                if taken:
                    out.append(_delivery(r._mapping, status="sending", attempts=r.attempts + 1, next_at=now + lease))
        return out

    def delivered(self, delivery_id: int, *, now: float | None = None) -> None:
        with self.db.write() as conn:
            conn.execute(alert_deliveries.update().where(alert_deliveries.c.id == delivery_id).values(
                status="delivered", delivered_at=time.time() if now is None else now, last_error=None))

    def retry_later(self, delivery_id: int, error: str, next_at: float | None) -> None:
        """Record a failed try: retried at ``next_at``, or ``failed`` for good when it is None."""
        values: dict[str, Any] = {"last_error": error[:2000]}
        values.update(status="failed") if next_at is None else values.update(status="pending", next_at=next_at)
        with self.db.write() as conn:
            conn.execute(alert_deliveries.update().where(alert_deliveries.c.id == delivery_id).values(**values))

    def firings(self, rule: str | None = None, limit: int | None = 50, *, flow: str | None = None,
                run_id: int | None = None) -> list[Firing]:
        """Firings, newest first, optionally of one rule, flow or run."""
        query = sa.select(alert_firings).order_by(alert_firings.c.fired_at.desc(), alert_firings.c.id.desc())
        for column, value in (("rule", rule), ("flow", flow), ("run_id", run_id)):
            if value is not None:
                query = query.where(alert_firings.c[column] == value)
        if limit:
            query = query.limit(limit)
        with self.db.read() as conn:
            return [_firing(r._mapping) for r in conn.execute(query)]

    def get_firing(self, firing_id: int) -> Firing | None:
        with self.db.read() as conn:
            row = conn.execute(sa.select(alert_firings).where(alert_firings.c.id == firing_id)).first()
        return _firing(row._mapping) if row is not None else None

    def deliveries(self, firing_id: int) -> list[Delivery]:
        with self.db.read() as conn:
            return [_delivery(r._mapping) for r in conn.execute(sa.select(alert_deliveries).where(
                alert_deliveries.c.firing_id == firing_id).order_by(alert_deliveries.c.action))]


def _firing(m: Any) -> Firing:
    return Firing(id=m["id"], rule=m["rule"], flow=m["flow"], run_id=m["run_id"], key=m["key"],
                  fired_at=m["fired_at"], summary=m["summary"], fields=json.loads(m["fields"] or "{}"))


def _delivery(m: Any, **override: Any) -> Delivery:
    row = {**dict(m), **override}
    row["target"] = json.loads(row["target"]) if isinstance(row["target"], str) else row["target"]
    return Delivery(**row)
