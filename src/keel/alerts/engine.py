"""The alert engine: which rules an event, a metric series or the clock makes fire.

It only decides and records: a firing goes to the store's outbox (``AlertStore.fire``, unique
per rule, flow, run and key, with the rule's cooldown), and ``keel.alerts.outbox`` delivers it.
Evaluating the same input twice is harmless (the key makes the second a no-op), so an
evaluator killed at any point is simply restarted.
"""

from __future__ import annotations

import time
from typing import Any, Iterable, Sequence

from keel.flow.alert_rules import Rule, When
from keel.store.records import Event, Firing

TASK_ENDS = frozenset({"task.succeeded", "task.failed", "task.caught"})
_RECENT = 24 * 3600.0   # runs older than this are not checked for crashes or long runs


def breaches(when: When, values: Sequence[float]) -> bool:
    """Whether a metric series breaks the rule's threshold for ``consecutive`` points in a row.

    The series is the raw values (``agg: last``), their running min or max, or with
    ``relative: true`` the relative change of each point from the one before."""
    if when.relative:
        series = [(b - a) / abs(a) if a else (0.0 if b == a else float("inf") * (1 if b > a else -1))
                  for a, b in zip(values, values[1:])]
    elif when.agg == "min":
        series = _running(values, min)
    elif when.agg == "max":
        series = _running(values, max)
    else:
        series = list(values)
    run = 0
    for x in series:
        hit = x < when.below if when.below is not None else x > when.above  # type: ignore[operator]
        run = run + 1 if hit else 0
        if run >= when.consecutive:
            return True
    return False


def _running(values: Sequence[float], pick: Any) -> list[float]:
    out: list[float] = []
    for v in values:
        out.append(v if not out else pick(out[-1], v))
    return out


class AlertEngine:
    """Evaluates ``rules`` against a metadata store (SQL or the in-memory fake)."""

    def __init__(self, rules: Iterable[Rule], metadata: Any, *, cursor: str | None = None):
        self.rules = list(rules)
        self.md = metadata
        self.cursor = cursor               # an evaluator's name: its place is saved with each firing
        self._kinds: dict[str, str] = {}   # flow -> run kind ("project" or "flow"), cached
        self._event: Event | None = None   # the event being evaluated

    # -- scope -----------------------------------------------------------------------------
    def _in_scope(self, w: When, flow: str, run_id: int, step: str | None) -> bool:
        if w.flow is not None and w.flow != flow:
            return False
        if w.project is not None and w.project != flow:
            return False
        if w.job is not None and (w.job != step or self._kind(flow, run_id) != "project"):
            return False
        return w.step is None or w.step == step

    def _kind(self, flow: str, run_id: int) -> str:
        if flow not in self._kinds:
            run = self.md.runs.get_run(flow, run_id)
            self._kinds[flow] = run.kind if run is not None else "flow"
        return self._kinds[flow]

    # -- events ----------------------------------------------------------------------------
    def on_events(self, events: Iterable[Event]) -> list[Firing]:
        """Fire what these events (in log order) make fire."""
        fired: list[Firing] = []
        for event in events:
            self._event = event
            try:
                for rule in self.rules:
                    firing = self._on_event(rule, event)
                    if firing is not None:
                        fired.append(firing)
            finally:
                self._event = None
        return fired

    def _on_event(self, rule: Rule, e: Event) -> Firing | None:
        w = rule.when
        task_scoped = w.job is not None or w.step is not None
        if w.event == "crashed" and task_scoped:   # a step's (job's) tasks that ran when the scheduler died
            if e.kind != "task.crashed" or not self._in_scope(w, e.flow, e.run_id, e.step):
                return None
            return self._fire(rule, e.flow, e.run_id, f"task:{e.task_id}",
                              f"{e.flow}/{e.run_id}: step {e.step!r} (task {e.task_id}) crashed (the run's "
                              f"scheduler stopped while it ran)",
                              {"event": e.kind, "step": e.step, "task_id": e.task_id, "event_id": e.id})
        if w.event == "crashed":
            if e.kind != "run.crashed" or not self._in_scope(w, e.flow, e.run_id, None):
                return None
            return self._fire(rule, e.flow, e.run_id, "run",
                              f"{e.flow}/{e.run_id}: the run crashed (its scheduler stopped without finishing it)",
                              {"event": e.kind, "event_id": e.id})
        if w.event in ("failed", "succeeded"):
            kind = f"task.{w.event}" if task_scoped else f"run.{w.event}"
            if e.kind != kind or not self._in_scope(w, e.flow, e.run_id, e.step):
                return None
            key = f"task:{e.task_id}" if task_scoped else "run"
            what = f"step {e.step!r} (task {e.task_id})" if task_scoped else "the run"
            detail = f": {e.detail['error']}" if e.detail.get("error") else ""
            return self._fire(rule, e.flow, e.run_id, key, f"{e.flow}/{e.run_id}: {what} {w.event}{detail}",
                              {"event": e.kind, "step": e.step, "task_id": e.task_id, "event_id": e.id})
        if w.event == "retried":
            if e.kind != "task.retried" or not self._in_scope(w, e.flow, e.run_id, e.step):
                return None
            return self._fire(rule, e.flow, e.run_id, f"retry:{e.task_id}:{e.attempt}",
                              f"{e.flow}/{e.run_id}: step {e.step!r} (task {e.task_id}) is retried "
                              f"(attempt {e.attempt})", {"event": e.kind, "step": e.step, "task_id": e.task_id})
        if w.event == "metric" and (e.kind in TASK_ENDS or e.ends_run):
            if self._in_scope(w, e.flow, e.run_id, e.step if w.step or w.job else None):
                return self.check_metric(rule, e.flow, e.run_id)
        return None

    def check_metric(self, rule: Rule, flow: str, run_id: int) -> Firing | None:
        w = rule.when
        assert w.metric is not None
        points = self.md.metrics.run_metrics(flow, run_id, w.metric).get(w.metric, [])
        values = [v for _, v, _ in points]
        if not values or not breaches(w, values):
            return None
        side = f"below {w.below:g}" if w.below is not None else f"above {w.above:g}"
        agg = "relative change" if w.relative else w.agg
        return self._fire(rule, flow, run_id, "metric",
                          f"{flow}/{run_id}: metric {w.metric!r} ({agg}) went {side}"
                          + (f" for {w.consecutive} points" if w.consecutive > 1 else "")
                          + f"; last value {values[-1]:g}",
                          {"metric": w.metric, "last": values[-1], "points": len(values)})

    # -- the clock ---------------------------------------------------------------------------
    def check_clock(self, now: float | None = None, *, flow: str | None = None, run_id: int | None = None,
                    schedules: Any = None) -> list[Firing]:
        """Time-based rules: runs longer than allowed, crashed runs, schedules that did not run.

        ``flow``/``run_id`` limit the check to one run (a run's own process); ``schedules`` is
        ``[(project, job, cron, grace_floor)]`` from a project file (``keel scheduler``)."""
        now = time.time() if now is None else now
        fired: list[Firing] = []
        timed = [r for r in self.rules if r.when.event == "running_longer_than"]
        if timed:
            if run_id is not None and flow is not None:
                run = self.md.runs.get_run(flow, run_id)
                runs = [run] if run is not None else []
            else:
                runs = [r for r in self.md.runs.list_runs(limit=500) if now - r.created_at < _RECENT]
            for run in runs:
                if run.status != "running":
                    continue
                self._kinds.setdefault(run.flow, run.kind)
                if run_id is None and run.effective_status != "running":
                    continue   # crashed: recorded by settle_crashed_runs, fired from its event
                for rule in timed:
                    firing = self._clock_rule(rule, run, now)
                    if firing is not None:
                        fired.append(firing)
        for rule in self.rules:
            if rule.when.event == "missed_schedule" and schedules:
                fired.extend(self._missed(rule, schedules, now))
        return fired

    def _clock_rule(self, rule: Rule, run: Any, now: float) -> Firing | None:
        w = rule.when
        limit = w.duration or 0.0
        if w.job is None and w.step is None:
            if not self._in_scope(w, run.flow, run.run_id, None) or now - run.created_at < limit:
                return None
            return self._fire(rule, run.flow, run.run_id, "long",
                              f"{run.flow}/{run.run_id}: still running after {_took(now - run.created_at)} "
                              f"(limit {_took(limit)})", {"started_at": run.created_at, "limit_seconds": limit})
        step = w.job or w.step
        if not self._in_scope(w, run.flow, run.run_id, step):
            return None
        for task in self.md.runs.list_tasks(run.flow, run.run_id, step):
            if task.status == "running" and task.started_at and now - task.started_at >= limit:
                return self._fire(rule, run.flow, run.run_id, f"long:{task.task_id}",
                                  f"{run.flow}/{run.run_id}: step {step!r} (task {task.task_id}) still running "
                                  f"after {_took(now - task.started_at)} (limit {_took(limit)})",
                                  {"step": step, "task_id": task.task_id, "limit_seconds": limit})
        return None

    def _missed(self, rule: Rule, schedules: Any, now: float) -> list[Firing]:
        from keel.schedule.cron import cron_prev

        w, out = rule.when, []
        grace = w.duration if w.duration is not None else 60.0
        for project, job, cron, since in schedules:
            if job != w.job or (w.project is not None and w.project != project):
                continue
            due = cron_prev(cron, now - grace)
            if due < since:
                continue  # that time came before anyone was watching
            fires = [f for f in self.md.schedules.list_fires(project, job, limit=5) if f.fire_time == due]
            if any(f.status == "started" for f in fires):
                continue
            firing = self._fire(rule, project, 0, f"schedule:{due:.0f}",
                                f"{project}: job {job!r} did not start for its schedule time "
                                f"{time.strftime('%Y-%m-%d %H:%M:%S', time.localtime(due))} ({cron})",
                                {"job": job, "schedule": cron, "due": due})
            if firing is not None:
                out.append(firing)
        return out

    # -- recording -------------------------------------------------------------------------
    def _fire(self, rule: Rule, flow: str, run_id: int, key: str, summary: str,
              fields: dict[str, Any]) -> Firing | None:
        # A firing made by an event is dated by the event, so the cooldown gives the same answer
        # whoever evaluates it and whenever (a restarted watcher, the run's own thread).
        # The cursor saved with it stops just before the event: the event's other rules may not
        # be evaluated yet, and a restart evaluates it again (what fired already is a no-op).
        e = self._event
        cursor = (self.cursor, e.id - 1) if self.cursor is not None and e is not None else None
        return self.md.alerts.fire(rule.name, flow, run_id, key, summary=summary,
                                   fields={"rule": rule.name, "flow": flow, "run_id": run_id, **fields},
                                   targets=[a.target() for a in rule.notify], cooldown=rule.cooldown,
                                   now=e.ts if e is not None else None, cursor=cursor)


def _took(seconds: float) -> str:
    return f"{seconds / 60:.1f} min" if seconds >= 120 else f"{seconds:.1f} s"
