"""`keel scheduler`: cron times with a fake clock, overlap, missed times, restarts; one real minute."""

from __future__ import annotations

import datetime as dt
import io
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from keel.flow.loader import load_flow_file
from keel.flow.project import load_project
from keel.schedule.cron import CronScheduler, schedule_rows
from keel.store import Store

PROJECTS = Path(__file__).resolve().parents[1] / "projects"
KEEL = str(Path(sys.executable).with_name("keel"))


class FakeClock:
    def __init__(self, t: float):
        self.t = t

    def now(self) -> float:
        return self.t

    def sleep(self, seconds: float) -> None:
        self.t += seconds


def at(hour: int, minute: int, second: int = 0) -> float:
    return dt.datetime(2030, 1, 7, hour, minute, second).timestamp()  # local time, like cron


def settle(sched: CronScheduler, timeout: float = 240) -> None:
    """Tick (at the same fake time: nothing new is due) until every fired run has ended."""
    deadline = time.time() + timeout
    while sched.children:
        assert time.time() < deadline, f"runs still going: {[c.job for c in sched.children]}"
        sched.tick()
        time.sleep(0.05)


@pytest.fixture
def project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("KEEL_HOME", str(tmp_path / "keelhome"))
    monkeypatch.delenv("KEEL_METADATA_URL", raising=False)
    monkeypatch.delenv("KEEL_ARTIFACT_URL", raising=False)
    target = tmp_path / "scheduled"
    shutil.copytree(PROJECTS / "scheduled", target)
    return target


def fires(store: Store, job: str) -> list[tuple[float, str]]:
    return sorted((f["fire_time"], f["status"]) for f in store.metadata.schedules.list_fires("scheduled", job))


def test_cron_times_dependants_missed_times_restart_and_overlap(project: Path) -> None:
    store = Store.from_env()
    proj = load_project(str(project / "keel.yaml"), flow_loader=load_flow_file)
    clock = FakeClock(at(10, 2))
    out = io.StringIO()
    sched = CronScheduler(proj, store=store, clock=clock, out=out)
    assert sched.tick() == []                          # first start: nothing from the past fires

    clock.t = at(10, 5, 30)
    assert sorted((e.job, e.status) for e in sched.tick()) == [("boom", "started"), ("tick", "started")]
    settle(sched)
    tick_run = store.metadata.runs.get_run("scheduled", store.metadata.schedules.list_fires("scheduled", "tick")[0]["run_id"])
    assert tick_run.status == "succeeded" and tick_run.tags == ["schedule:tick"]
    assert [s["step"] for s in store.metadata.runs.list_steps("scheduled", tick_run.run_id)] == ["tick", "after_tick"]
    boom = store.metadata.schedules.list_fires("scheduled", "boom")[0]
    assert store.metadata.runs.get_run("scheduled", boom["run_id"]).status == "failed"
    assert f"job 'boom': scheduled/{boom['run_id']} failed (exit status 1); see: keel show " \
           f"scheduled/{boom['run_id']}" in out.getvalue()   # a failing job does not stop the scheduler

    # down from 10:06 to 10:31: the missed times fire once, for the latest one
    clock.t = at(10, 31)
    assert sorted((e.job, e.fire_time) for e in sched.tick()) == [("boom", at(10, 30)), ("tick", at(10, 30))]
    settle(sched)
    assert fires(store, "tick") == [(at(10, 5), "started"), (at(10, 30), "started")]

    # a restarted scheduler does not fire the same time again
    again = CronScheduler(proj, store=store, clock=FakeClock(at(10, 31, 40)), out=io.StringIO())
    assert again.tick() == []

    # overlap: 'hold' is still going at its next time and is skipped; 'hold_overlap' starts again
    # (at 11:00 'tick' and 'boom' also catch up, once, on 10:35..10:55)
    clock.t = at(11, 0, 10)
    assert sorted((e.job, e.fire_time) for e in sched.tick()) == [
        ("boom", at(10, 55)), ("hold", at(11, 0)), ("hold_overlap", at(11, 0)), ("tick", at(10, 55))]
    deadline = time.time() + 120   # four runs start at once: slow on a loaded machine
    while not all(c.run_id for c in sched.children):  # the runs have their ids once they started
        assert time.time() < deadline
        sched.tick()
        time.sleep(0.05)
    clock.t = at(12, 0, 5)
    events = {e.job: e for e in sched.tick()}
    assert events["hold"].status == "skipped" and events["hold_overlap"].status == "started"
    assert events["hold"].note.startswith("the previous run scheduled/")
    (project / "release").touch()
    settle(sched)
    assert fires(store, "hold") == [(at(11, 0), "started"), (at(12, 0), "skipped")]
    assert [s for _, s in fires(store, "hold_overlap")] == ["started", "started"]

    rows = {r.job: r for r in schedule_rows(proj, store, now=at(12, 1))}
    assert set(rows) == {"tick", "boom", "hold", "hold_overlap"}
    assert (rows["tick"].last_fire, rows["tick"].last_status, rows["tick"].next_fire) == (
        at(10, 55), "succeeded", at(10, 0) + 86400)
    assert rows["tick"].jobs == ["tick", "after_tick"]
    assert (rows["boom"].last_status, rows["hold"].last_status) == ("failed", "skipped")
    assert rows["hold"].next_fire == at(11, 0) + 86400

    listed = subprocess.run([KEEL, "schedule", "list"], cwd=project, capture_output=True, text=True)
    assert listed.returncode == 0, listed.stderr
    tick_line = next(line for line in listed.stdout.splitlines() if line.strip().startswith("tick"))
    assert "*/5 10 * * *" in tick_line and "tick, after_tick" in tick_line and "succeeded" in tick_line
    assert "2030-01-07 10:55:00" in tick_line


@pytest.mark.serial  # a wall-time bound that is part of the behaviour: run alone
def test_real_minute_and_sigterm(tmp_path: Path) -> None:
    """`keel scheduler` with a `* * * * *` job fires within about a minute and stops on SIGTERM."""
    (tmp_path / "keel.yaml").write_text(
        "name: minutely\njobs:\n  - name: ping\n    entrypoint: echo ping\n    schedule: '* * * * *'\n")
    env = {**os.environ, "KEEL_HOME": str(tmp_path / "keelhome")}
    env.pop("KEEL_METADATA_URL", None)
    env.pop("KEEL_ARTIFACT_URL", None)
    proc = subprocess.Popen([KEEL, "scheduler"], cwd=tmp_path, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)
    try:
        from keel.store import StoreSettings

        settings = StoreSettings(home=tmp_path / "keelhome", metadata_url=f"sqlite:///{tmp_path}/keelhome/metadata.db",
                                 artifact_url=str(tmp_path / "keelhome" / "artifacts"))
        deadline = time.time() + 180  # the next minute, then the run: slow on a loaded machine
        status = None
        while time.time() < deadline:
            assert proc.poll() is None, proc.stdout.read() if proc.stdout else ""
            if (tmp_path / "keelhome" / "metadata.db").exists():
                store = Store(settings)
                done = [f for f in store.metadata.schedules.list_fires("minutely", "ping") if f["run_id"]]
                if done:
                    record = store.metadata.runs.get_run("minutely", done[0]["run_id"])
                    status = record.status if record else None
                    if status not in (None, "running"):
                        break
            time.sleep(0.5)
        assert status == "succeeded"
        fire_time = done[0]["fire_time"]
        assert fire_time % 60 == 0 and fire_time <= time.time()
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            output, _ = proc.communicate(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            raise
    assert proc.returncode == 0
    assert "job 'ping': fired for" in output and output.rstrip().endswith("scheduler stopped")
