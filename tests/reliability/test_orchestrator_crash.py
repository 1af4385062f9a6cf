"""kill -9 of the process running a run: readers see it crashed within a bounded time, none
of its task processes (nor what they started) outlive it, and resume finishes it without
redoing a finished task."""

from __future__ import annotations

import json
import shutil
import signal
import subprocess
import time
from typing import Any

import pytest
from reliability_kit import (PYTHON, alive, check_store, copy_flow, counts, env_for, marks, run, start,
                             store_of, wait_for)

from keel.client.core import Run

# KEEL_HEARTBEAT_SECONDS for these tests: crashed after 3 missed beats = 6 s. Shorter beats make a
# live run look crashed from elsewhere when a loaded machine delays its scheduler's heartbeat.
BEAT = 2.0


def _status_elsewhere(env, tmp_path) -> str:
    """`keel runs --json` as a reader on another machine: another host name (a new UTS
    namespace), so only the heartbeat can tell."""
    proc = subprocess.run(["unshare", "--uts", "sh", "-c", f"hostname elsewhere && {PYTHON} -m keel.cli.main "
                           "runs Counted --json"], env=env, cwd=tmp_path, capture_output=True, text=True,
                          timeout=60)
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout)[0]["status"]


def test_kill_9_of_the_scheduler(tmp_path):
    home = tmp_path / ".keel"
    env = env_for(home, KEEL_HEARTBEAT_SECONDS=str(BEAT))
    flow = copy_flow(tmp_path)
    proc = start([str(flow), "run", "--n", "6", "--pause", "60", "--spawn", "true", "--max-workers", "3",
                  "--quiet"], env, tmp_path)
    try:
        # three work tasks are running, each with a `sleep` child of its own
        wait_for(lambda: sum(1 for m in marks(home) if m[0] == "work") == 3, 120,
                 "three running work tasks")   # a run starting on a loaded machine: generous
        tasks = [m for m in marks(home) if m[0] == "work"]
        pids = [m[2] for m in tasks] + [int(m[3]) for m in tasks]
        assert all(alive(p) for p in pids)
        store = store_of(home)
        assert Run("Counted/1", _store=store).status == "running"
        can_unshare = shutil.which("unshare") is not None
        if can_unshare:
            assert _status_elsewhere(env, tmp_path) == "running"     # its heartbeat is fresh
        proc.send_signal(signal.SIGKILL)
        killed = time.monotonic()
        proc.wait(timeout=10)
    finally:
        if proc.poll() is None:
            proc.kill()
    # the same machine sees it at once: the scheduler's process is gone (the deadline is only
    # for a loaded machine: the first read opens the database)
    wait_for(lambda: Run("Counted/1", _store=store).status == "crashed", 30, "crashed, seen on this machine")
    # nothing it started is left: tasks die with it, what they started dies with them (the
    # guard notices the death and kills their groups; on a loaded machine that takes a while)
    wait_for(lambda: not any(alive(p) for p in pids), 60, "every task process and its children to end")
    if can_unshare:  # another machine sees it once three heartbeats are missed (each look is a
        # new `keel runs` process: seconds apiece on a loaded machine, so a generous deadline)
        wait_for(lambda: _status_elsewhere(env, tmp_path) == "crashed", 120, "crashed, seen elsewhere")
        # not before the beats were missed (the last one came at most one beat before the kill)
        assert time.monotonic() - killed >= 2 * BEAT - 0.2
    keel_runs = run(["runs", "Counted", "--json"], env, tmp_path)
    assert json.loads(keel_runs.stdout)[0]["status"] == "crashed"



@pytest.fixture
def crashed_run(tmp_path):
    """A run killed with -9 after some work tasks finished and while others ran."""
    home = tmp_path / ".keel"
    env = env_for(home, KEEL_HEARTBEAT_SECONDS=str(BEAT))
    flow = copy_flow(tmp_path)
    proc = start([str(flow), "run", "--n", "6", "--pause", "0.4", "--max-workers", "2", "--quiet"], env, tmp_path)
    store = store_of(home)

    def finished_work() -> int:
        try:
            return sum(1 for t in store.metadata.runs.list_tasks("Counted", 1, "work") if t.status == "succeeded")
        except Exception:  # noqa: BLE001 - the database may not exist yet
            return 0

    try:
        wait_for(lambda: finished_work() >= 2, 120, "two finished work tasks")
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=10)
    finally:
        if proc.poll() is None:
            proc.kill()
    return home, env, flow, store


def test_resume_finishes_a_crashed_run_without_redoing_finished_tasks(crashed_run, tmp_path):
    home, env, flow, store = crashed_run
    finished = {(t.step, str(t.foreach[-1][2]) if t.foreach else "-")
                for t in store.metadata.runs.list_tasks("Counted", 1) if t.status == "succeeded"}
    running = {t.task_id for t in store.metadata.runs.list_tasks("Counted", 1) if t.status == "running"}
    assert ("start", "-") in finished and len(finished) >= 3
    before = counts(home)

    out = run([str(flow), "resume", "--quiet"], env, tmp_path)
    assert out.returncode == 0, out.stderr
    assert "Resuming Counted/1 where it stopped" in out.stdout

    after = counts(home)
    for key in finished:  # no finished task was redone
        assert after[key] == before[key] == 1, key
    assert all(after[("work", str(i))] >= 1 for i in range(6))
    run2 = Run("Counted/2", _store=store)
    assert run2.successful and run2.data.result == 2 * 499500.0 * 15 + 499500.0 * 15 + 1
    # the crash is now on record for good, with what happened to the tasks that were running
    run1 = Run("Counted/1", _store=store)
    assert run1.status == "crashed"
    assert run1.error.startswith("SchedulerCrashed: the process running it (pid ")
    for task_id in running:
        task = store.metadata.runs.get_task("Counted", 1, task_id)
        assert task.status == "crashed"
        attempts = store.metadata.runs.list_attempts("Counted", 1, task_id)
        assert attempts[-1]["error_type"] == "SchedulerCrashed"
    check_store(home)


@pytest.mark.serial  # a wall-time bound that is part of the behaviour: run alone
def test_a_finished_task_is_on_record_at_once_and_survives_kill_9(tmp_path):
    """A task that ends while another runs is written within the flush interval (0.1 s), not
    at the scheduler's next wake-up; kill -9 right after it, and resume does not redo it."""
    home = tmp_path / ".keel"
    env = env_for(home)
    flow = copy_flow(tmp_path, "held")
    hold = tmp_path / "hold"
    hold.touch()
    proc = start([str(flow), "run", "--hold", str(hold), "--quiet"], env, tmp_path)
    store = store_of(home)

    def succeeded(step: str) -> Any:
        try:
            return next((t for t in store.metadata.runs.list_tasks("Held", 1, step) if t.status == "succeeded"), None)
        except Exception:  # noqa: BLE001 - the database may not exist yet
            return None

    try:
        wait_for(lambda: succeeded("start"), 120, "step 'start' on record")  # the reader is warm now
        row = wait_for(lambda: succeeded("a"), 120, "step 'a' on record", every=0.005)
        seen = time.time()
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=10)
    finally:
        if proc.poll() is None:
            proc.kill()
    # the scheduler stamps finished_at when it handles the end; the row follows within the
    # flush interval (0.1 s) plus polling and scheduling slack on a loaded machine, not the
    # 1 s idle wake-up (without the bound it is >= 0.99 s here: the wait starts right after)
    assert seen - row.finished_at < 0.8, seen - row.finished_at
    hold.unlink()
    out = run([str(flow), "resume", "--quiet"], env, tmp_path)
    assert out.returncode == 0, out.stderr
    assert counts(home)[("a", "-")] == 1                    # 'a' was reused, not run again
    assert Run("Held/2", _store=store).successful
