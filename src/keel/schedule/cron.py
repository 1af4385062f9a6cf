"""``keel scheduler``: fire a project's scheduled jobs at their cron times, in the foreground.

Each scheduled job (``schedule: "0 * * * *"``) fires, with the jobs that depend on it, as a
project run of its own: a project request (``--job JOB --downstream``) run by the one entry
point in a child process (``python -m keel.runtime.entry REQUEST.json``), so a failing or
crashing job never stops the scheduler. The rules:

* **No pile-up.** A job whose previous run is still going is not started again (the time is
  recorded as *skipped*) unless the job says ``overlap: true``.
* **Missed times run once.** After the scheduler was down, the latest missed time fires once,
  not once per missed tick. On the very first start nothing from the past fires.
* **Never twice.** Each (project, job, time) is claimed in the store before it fires
  (``schedule_fires``), so a restarted scheduler, or a second one, does not fire it again.
* **Clean stop.** SIGTERM or Ctrl-C stops firing, passes SIGTERM to the runs in flight (they
  record themselves as interrupted) and exits 0.

Time comes from a :class:`Clock`, so tests move it by hand instead of waiting for minutes.
Cron expressions are read in local time, like cron's.
"""

from __future__ import annotations

import datetime as dt
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from typing import IO, Any, Callable, Protocol

from keel.flow.project import Project
from keel.store import Store

_STOP_GRACE = 10.0  # seconds the runs in flight get to stop after SIGTERM


class Clock(Protocol):
    def now(self) -> float: ...
    def sleep(self, seconds: float) -> None: ...


class SystemClock:
    """The wall clock."""

    def now(self) -> float:
        return time.time()

    def sleep(self, seconds: float) -> None:
        time.sleep(seconds)


def cron_prev(expr: str, now: float) -> float:
    """The latest time of ``expr`` at or before ``now`` (UNIX seconds): never one still in the future.

    croniter works in whole seconds and its ``get_prev`` excludes its start, so the whole second
    ``floor(now)`` (which is not after ``now``) is checked on its own first."""
    import math

    from croniter import croniter

    second = math.floor(now)
    start = dt.datetime.fromtimestamp(second).astimezone()
    at = float(croniter(expr, start - dt.timedelta(seconds=1)).get_next(float))
    if at <= now:
        return at
    return float(croniter(expr, start).get_prev(float))


def cron_next(expr: str, now: float) -> float:
    """The first time of ``expr`` after ``now``."""
    from croniter import croniter

    return float(croniter(expr, dt.datetime.fromtimestamp(now).astimezone()).get_next(float))


def when(ts: float | None) -> str:
    """A schedule time with its time zone (cron reads expressions in local time)."""
    return dt.datetime.fromtimestamp(ts).astimezone().strftime("%Y-%m-%d %H:%M:%S %Z") if ts else "-"


@dataclass
class _Child:
    job: str
    fire_time: float
    proc: subprocess.Popen[bytes]
    run_id_file: str
    run_id: int | None = None


@dataclass
class FireEvent:
    """What one tick did for one job."""

    job: str
    fire_time: float
    status: str            # "started" | "skipped"
    note: str | None = None


@dataclass
class ScheduleRow:
    job: str
    schedule: str
    overlap: bool
    last_fire: float | None
    last_status: str | None
    last_run: str | None
    next_fire: float
    jobs: list[str] = field(default_factory=list)


def watcher_for(project: Project, metadata: Any) -> Any:
    """A ``keel.alerts.watch.Watcher`` over the project's rules (and ``KEEL_ALERTS``'s), or None."""
    from keel.settings import Settings

    if not project.alerts and not Settings.from_env().alerts_file:
        return None
    from keel.alerts import active_rules
    from keel.alerts.watch import Watcher

    schedules = [(project.name, j, project.jobs[j].schedule or "") for j in project.scheduled]
    return Watcher(active_rules(list(project.alerts)), metadata, schedules=schedules, name=f"scheduler:{project.name}")


class CronScheduler:
    """Fires the scheduled jobs of one project. Call :meth:`run` (blocks), or :meth:`tick` in tests."""

    def __init__(self, project: Project, *, store: Store | None = None, clock: Clock | None = None,
                 out: IO[str] | None = None, python: str | None = None):
        self.project = project
        self.store = store or Store.from_env()
        self.md = self.store.metadata
        self.clock = clock or SystemClock()
        self.out = out or sys.stdout
        self.python = python or sys.executable
        self.started_at = self.clock.now()
        self.children: list[_Child] = []
        self._stop = False
        log_dir = self.store.settings.home / "scheduler"
        log_dir.mkdir(parents=True, exist_ok=True)
        self.log_path = log_dir / f"{project.name}.log"
        self.alerts = watcher_for(project, self.md)

    # -- one step --------------------------------------------------------------------------
    def due(self, job: str, now: float) -> float | None:
        """The latest time of ``job``'s schedule that is due and not fired yet (missed times fold into it)."""
        expr = self.project.jobs[job].schedule
        assert expr
        last = self.md.schedules.list_fires(self.project.name, job, limit=1)
        baseline = last[0]["fire_time"] if last else self.started_at
        latest = cron_prev(expr, now)
        return latest if latest > baseline else None

    def tick(self) -> list[FireEvent]:
        """Reap finished runs, then fire every job that is due. Returns what it fired."""
        self._reap()
        now = self.clock.now()
        if self.alerts is not None:  # clock rules, missed schedules, the outbox (never stops the cron)
            try:
                self.alerts.tick(now)
            except Exception as exc:  # noqa: BLE001
                self._say(f"alerts: {type(exc).__name__}: {exc}")
        else:  # no rules: still record the project's crashed runs (resume and readers keep them)
            try:
                from keel.store.crashes import settle_crashed_runs

                settle_crashed_runs(self.md, flow=self.project.name)
            except Exception as exc:  # noqa: BLE001
                self._say(f"crash check: {type(exc).__name__}: {exc}")
        events = []
        for job in self.project.scheduled:
            fire_time = self.due(job, now)
            if fire_time is not None:
                event = self._fire(job, fire_time)
                if event is not None:
                    events.append(event)
        return events

    def _fire(self, job: str, fire_time: float) -> FireEvent | None:
        busy = self._still_running(job)
        if busy and not self.project.jobs[job].overlap:
            note = f"the previous run {busy} is still going (set overlap: true to start anyway)"
            if self.md.schedules.claim_fire(self.project.name, job, fire_time, status="skipped", note=note):
                self._say(f"job {job!r}: skipped {when(fire_time)}: {note}")
                return FireEvent(job, fire_time, "skipped", note)
            return None
        if not self.md.schedules.claim_fire(self.project.name, job, fire_time):
            return None  # fired already (by an earlier life of this scheduler, or another one)
        from keel.runtime.entry import write_request

        stem = str(self.store.scratch / f"schedule-{self.project.name}-{job}-{int(fire_time)}")
        run_id_file = stem + ".runid"
        write_request(stem + ".request.json", {
            "kind": "project", "project_file": os.path.abspath(self.project.path), "jobs": [job],
            "downstream": True, "tags": [f"schedule:{job}"], "quiet": True})
        argv = [self.python, "-m", "keel.runtime.entry", stem + ".request.json", run_id_file]
        try:
            with open(self.log_path, "ab") as log:
                proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=log, stderr=log,
                                        cwd=self.project.root, start_new_session=True)
        except OSError as exc:
            note = f"could not start: {exc}"
            self.md.schedules.update_fire(self.project.name, job, fire_time, status="failed", note=note)
            self._say(f"job {job!r}: {note}")
            return FireEvent(job, fire_time, "failed", note)
        self.children.append(_Child(job, fire_time, proc, run_id_file))
        self._say(f"job {job!r}: fired for {when(fire_time)}")
        return FireEvent(job, fire_time, "started")

    def _still_running(self, job: str) -> str | None:
        """The pathspec (or 'pid N') of a run of ``job`` that is still going, if any."""
        for child in self.children:
            if child.job == job and child.proc.poll() is None:
                return f"{self.project.name}/{child.run_id}" if child.run_id else f"(pid {child.proc.pid})"
        for fire in self.md.schedules.list_fires(self.project.name, job, limit=5):  # an earlier life of the scheduler
            if fire["run_id"]:
                record = self.md.runs.get_run(self.project.name, fire["run_id"])
                if record is not None and record.effective_status == "running":
                    return record.pathspec
        return None

    def _reap(self) -> None:
        for child in list(self.children):
            if child.run_id is None:
                child.run_id = _read_int(child.run_id_file)
                if child.run_id is not None:
                    self.md.schedules.update_fire(self.project.name, child.job, child.fire_time, run_id=child.run_id)
            code = child.proc.poll()
            if code is None:
                continue
            self.children.remove(child)
            for path in (child.run_id_file, child.run_id_file[: -len(".runid")] + ".request.json"):
                try:
                    os.unlink(path)
                except FileNotFoundError:
                    pass
            run = f"{self.project.name}/{child.run_id}" if child.run_id else "the run"
            outcome = {0: "succeeded", 130: "was interrupted"}.get(code, f"failed (exit status {code})")
            hint = "" if code == 0 else f"; see: keel show {run}" if child.run_id else f"; see {self.log_path}"
            self._say(f"job {child.job!r}: {run} {outcome}{hint}")

    # -- the loop ---------------------------------------------------------------------------
    def run(self, *, until: Callable[[], bool] | None = None) -> int:
        """Fire jobs until SIGTERM/SIGINT (or ``until()`` is true); stop the runs in flight; return 0."""
        handlers = {}
        for sig in (signal.SIGTERM, signal.SIGINT):
            handlers[sig] = signal.signal(sig, self._on_signal)
        try:
            names = ", ".join(f"{j} ({self.project.jobs[j].schedule})" for j in self.project.scheduled)
            self._say(f"scheduler for project {self.project.name} started: {names or 'no scheduled jobs'}; "
                      f"runs' output goes to {self.log_path}")
            while not self._stop and not (until and until()):
                self.tick()
                self.clock.sleep(self._sleep_time())
        finally:
            for sig, handler in handlers.items():
                signal.signal(sig, handler)
            self._shutdown()
        return 0

    def stop(self) -> None:
        self._stop = True

    def _on_signal(self, signum: int, frame: Any) -> None:
        self._stop = True

    def _sleep_time(self) -> float:
        now = self.clock.now()
        upcoming = [cron_next(self.project.jobs[j].schedule or "", now) for j in self.project.scheduled]
        wait = min([t - now for t in upcoming] + [1.0])  # wake at least every second: reap, notice signals
        return max(0.05, wait)

    def _shutdown(self) -> None:
        if self.children:
            self._say(f"stopping: {len(self.children)} run(s) in flight get SIGTERM")
        for child in self.children:
            if child.proc.poll() is None:
                try:
                    os.killpg(child.proc.pid, signal.SIGTERM)
                except ProcessLookupError:
                    pass
        deadline = time.time() + _STOP_GRACE
        for child in self.children:
            try:
                child.proc.wait(max(0.0, deadline - time.time()))
            except subprocess.TimeoutExpired:
                try:
                    os.killpg(child.proc.pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
                child.proc.wait()
        self._reap()
        self._say("scheduler stopped")

    def _say(self, text: str) -> None:
        stamp = dt.datetime.fromtimestamp(time.time()).strftime("%Y-%m-%d %H:%M:%S")
        self.out.write(f"{stamp} {text}\n")
        self.out.flush()


def schedule_rows(project: Project, store: Store, now: float | None = None) -> list[ScheduleRow]:
    """What ``keel schedule list`` shows: each scheduled job's last and next fire, and how its last run went."""
    now = time.time() if now is None else now
    md = store.metadata
    rows = []
    for job in project.scheduled:
        expr = project.jobs[job].schedule or ""
        fires = md.schedules.list_fires(project.name, job, limit=1)
        last = fires[0] if fires else None
        status = run = None
        if last is not None:
            status = last["status"]
            if last["run_id"]:
                record = md.runs.get_run(project.name, last["run_id"])
                run = f"{project.name}/{last['run_id']}"
                status = record.effective_status if record is not None else status
        rows.append(ScheduleRow(job=job, schedule=expr, overlap=project.jobs[job].overlap,
                                last_fire=last["fire_time"] if last else None, last_status=status, last_run=run,
                                next_fire=cron_next(expr, now), jobs=project.downstream(job)))
    return rows


def _read_int(path: str) -> int | None:
    try:
        with open(path) as fh:
            return int(fh.read().strip())
    except (FileNotFoundError, ValueError):
        return None
