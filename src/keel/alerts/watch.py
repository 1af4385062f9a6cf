"""Where rules run: beside a run (:class:`RunAlerts`, in the run's own process) and over the
whole store (:class:`Watcher`: ``keel alerts watch`` and ``keel scheduler``)."""

from __future__ import annotations

import threading
import time
from typing import Any, Callable, Iterable, Sequence

from keel.alerts.engine import AlertEngine
from keel.alerts.outbox import deliver_due
from keel.flow.alert_rules import Rule

_TICK = 0.2


class RunAlerts:
    """Evaluates rules for one run while it goes: a daemon thread reads the run's new events
    (one indexed query per tick), checks its clock rules and delivers the outbox. Started by
    the run only when there are rules, so a run without rules pays nothing."""

    def __init__(self, rules: Iterable[Rule], metadata: Any, flow: str, run_id: int):
        self.engine = AlertEngine(rules, metadata)
        self.md, self.flow, self.run_id = metadata, flow, run_id
        self._cursor = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="keel-alerts", daemon=True)
        self._clock = any(r.when.event in ("running_longer_than",) for r in self.engine.rules)

    def start(self) -> "RunAlerts":
        self._thread.start()
        return self

    def _loop(self) -> None:
        while not self._stop.wait(_TICK):
            try:
                self.tick()
            except Exception:  # noqa: BLE001 - alerts never break a run; the watcher catches up
                pass

    def tick(self) -> None:
        events = self.md.events.read(self._cursor, flow=self.flow, run_id=self.run_id)
        if events:
            self._cursor = events[-1].id
            self.engine.on_events(events)
        if self._clock:
            self.engine.check_clock(flow=self.flow, run_id=self.run_id)
        deliver_due(self.md)

    def close(self, deadline: float = 3.0) -> None:
        """Stop after a last pass over the run's final events, delivering for up to ``deadline`` s
        (what is still undelivered stays in the outbox for ``keel alerts watch``)."""
        self._stop.set()
        self._thread.join()
        end = time.monotonic() + deadline
        try:
            self.tick()
            while time.monotonic() < end and self._pending():
                time.sleep(_TICK)
                deliver_due(self.md)
        except Exception:  # noqa: BLE001
            pass


    def _pending(self) -> bool:
        """Whether a notification of this run is not delivered yet (one that keeps failing is
        left to the watcher once the deadline passes)."""
        return any(d.status in ("pending", "sending") for f in self.md.alerts.firings(flow=self.flow, run_id=self.run_id)
                   for d in self.md.alerts.deliveries(f.id))


class Watcher:
    """Every rule over the whole store: events from a cursor, clock rules, crashed runs,
    schedules that did not run, and the outbox. ``tick()`` is one pass.

    The cursor is kept in the store under ``name`` (saved with each firing an event makes, and
    after each batch), so a watcher restarted after any stop, ``kill -9`` included, resumes
    at the first event it had not evaluated: every firing made once. A watcher that never saved
    a cursor starts at the newest event (``from_start``: at the first)."""

    def __init__(self, rules: Iterable[Rule], metadata: Any, *, schedules: Sequence[tuple[str, str, str]] = (),
                 from_start: bool = False, name: str = "watch"):
        self.engine = AlertEngine(rules, metadata, cursor=name)
        self.md = metadata
        self.name = name
        self.started = time.time()
        self.schedules = [(p, j, c, self.started) for p, j, c in schedules]
        saved = metadata.alerts.cursor(name)
        if saved is None:
            saved = 0 if from_start else metadata.events.last_id()
            metadata.alerts.save_cursor(name, saved)
        self._cursor: int = saved

    def tick(self, now: float | None = None) -> int:
        from keel.store.crashes import settle_crashed_runs

        settle_crashed_runs(self.md)   # their run.crashed events are read below
        while True:
            events = self.md.events.read(self._cursor)
            if not events:
                break
            self.engine.on_events(events)
            self._cursor = events[-1].id
            self.md.alerts.save_cursor(self.name, self._cursor)
        self.engine.check_clock(now, schedules=self.schedules)
        return int(deliver_due(self.md, now=now))

    def run(self, *, until: Callable[[], bool] | None = None, every: float = _TICK) -> None:
        while not (until and until()):
            self.tick()
            time.sleep(every)
