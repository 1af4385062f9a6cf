"""The event log through real runs: a run's state changes in order, read once by a follower."""

from __future__ import annotations

import re
import subprocess
import threading
import time

import pytest

from keel_testing import PYTHON, write_flow
from keel.store import Store
from keel.store.crashes import settle_crashed
from keel.store.records import TaskWrite

RETRY_FLOW = """
    import os
    from keel import FlowSpec, retry, step

    class Evented(FlowSpec):
        @step
        def start(self):
            self.items = [1, 2]
            self.next(self.part, foreach="items")

        @step
        def part(self):
            self.x = self.input
            self.next(self.join)

        @step
        def join(self, inputs):
            self.next(self.flaky)

        @retry(times=1, minutes_between_retries=0)
        @step
        def flaky(self):
            marker = "flaky.once"
            if not os.path.exists(marker):
                open(marker, "w").close()
                raise RuntimeError("first attempt fails")
            self.next(self.end)

        @step
        def end(self):
            pass

    if __name__ == "__main__":
        Evented()
"""


def test_a_run_records_its_state_changes_in_order(keel_home, tmp_path):
    path = write_flow(tmp_path, "evented", RETRY_FLOW)
    done = subprocess.run([PYTHON, str(path), "run"], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    events = Store.from_env().metadata.events.read(0, flow="Evented", run_id=1)
    kinds = [(e.kind, e.step) for e in events]
    assert kinds[0] == ("run.started", None) and kinds[-1] == ("run.succeeded", None)
    assert kinds[1:3] == [("task.started", "start"), ("task.succeeded", "start")]
    parts = [k for k in kinds if k[1] == "part"]
    assert sorted(parts) == [("task.started", "part")] * 2 + [("task.succeeded", "part")] * 2
    flaky = [(e.kind, e.attempt) for e in events if e.step == "flaky"]
    assert flaky == [("task.started", 0), ("task.retried", 0), ("task.started", 1), ("task.succeeded", 1)]
    assert [e.id for e in events] == sorted({e.id for e in events})


def test_a_follower_from_cursor_zero_sees_every_event_once_in_order(keel_home, tmp_path):
    path = write_flow(tmp_path, "evented", RETRY_FLOW)
    events = Store.from_env().metadata.events   # creates the store before the run starts
    seen = []
    follower = threading.Thread(target=lambda: seen.extend(
        events.follow(0, flow="Evented", run_id=1, poll=0.05, timeout=120)))
    follower.start()
    done = subprocess.run([PYTHON, str(path), "run"], capture_output=True, text=True, timeout=120)
    follower.join(timeout=130)
    assert done.returncode == 0, done.stderr
    assert not follower.is_alive()
    assert seen == events.read(0, flow="Evented", run_id=1)
    assert seen[-1].kind == "run.succeeded" and len(seen) == len({e.id for e in seen}) > 10


def test_logs_follow_ends_when_the_run_ends(keel_home, tmp_path):
    path = write_flow(tmp_path, "evented", RETRY_FLOW)
    run = subprocess.Popen([PYTHON, str(path), "run"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        store = Store.from_env().metadata
        # wait (with a deadline) for the run to exist, then follow its flaky step's output
        for _ in store.events.follow(0, flow="Evented", until=lambda e: e.kind == "run.started", timeout=60):
            pass
        follow = subprocess.run([PYTHON, "-m", "keel.cli.main", "logs", "Evented/1/flaky", "--follow", "--stderr"],
                                capture_output=True, text=True, timeout=120)
        assert follow.returncode == 0, follow.stderr
        assert "first attempt fails" in follow.stdout
    finally:
        assert run.wait(timeout=120) == 0


def _task(run_id: int, task_id: int, step: str, status: str, attempts: int = 1) -> TaskWrite:
    return TaskWrite(flow="C", run_id=run_id, task_id=task_id, step=step, status=status, attempts=attempts,
                     created_at=time.time(), started_at=time.time())


def test_settling_a_crash_writes_task_crashed_for_each_running_task_before_run_crashed(md):
    run_id = md.runs.new_run("C", params={})
    md.runs.write_batch([_task(run_id, 1, "start", "succeeded"), _task(run_id, 2, "part", "running"),
                         _task(run_id, 3, "part", "running", attempts=2)])
    before = md.events.last_id()
    assert settle_crashed(md, md.runs.get_run("C", run_id))
    new = [(e.kind, e.step, e.task_id, e.attempt) for e in md.events.read(before, flow="C", run_id=run_id)]
    assert new == [("task.crashed", "part", 2, 0), ("task.crashed", "part", 3, 1), ("run.crashed", None, None, None)]
    assert {t.task_id: t.status for t in md.runs.list_tasks("C", run_id)} == {1: "succeeded", 2: "crashed",
                                                                                3: "crashed"}
    assert not settle_crashed(md, md.runs.get_run("C", run_id))   # recorded once
    assert md.events.last_id() == md.events.read(before)[-1].id


def test_a_crash_someone_else_recorded_writes_no_task_rows_or_events(md):
    run_id = md.runs.new_run("C", params={})
    md.runs.write_batch([_task(run_id, 1, "start", "running")])
    run = md.runs.get_run("C", run_id)
    assert md.runs.set_run_status("C", run_id, "crashed", expect="running")   # another noticer, first
    before = md.events.last_id()
    assert not settle_crashed(md, run)
    assert md.events.read(before) == []
    assert md.runs.get_task("C", run_id, 1).status == "running"   # the compare and set failed: nothing written


GATED_FLOW = """
    import os
    import time
    from keel import FlowSpec, step

    GATE = {gate!r}

    class Gated(FlowSpec):
        @step
        def start(self):
            self.items = [0, 1]
            self.next(self.part, foreach="items")

        @step
        def part(self):
            print("part", self.input, "says hello", flush=True)
            while self.input == 0 and not os.path.exists(GATE):
                time.sleep(0.05)
            self.next(self.join)

        @step
        def join(self, inputs):
            self.next(self.end)

        @step
        def end(self):
            pass

    if __name__ == "__main__":
        Gated()
"""


def test_logs_follow_learns_of_tasks_that_start_later_from_the_event_log(keel_home, tmp_path, capsys):
    import sqlalchemy as sa

    from keel.cli.reading import print_logs

    gate = tmp_path / "gate"
    path = write_flow(tmp_path, "gated", GATED_FLOW.format(gate=str(gate)))
    # one worker: part's second task starts only once its first one (held by the gate) ends
    run = subprocess.Popen([PYTHON, str(path), "run", "--max-workers", "1"], stdout=subprocess.DEVNULL,
                           stderr=subprocess.DEVNULL)
    statements: list[str] = []

    def count(conn, cursor, statement, parameters, context, executemany):
        if threading.current_thread() is follower:
            statements.append(statement)

    follower = threading.Thread(target=lambda: done.append(print_logs("Gated", 1, "part", None, "stdout", True)),
                                daemon=True)
    done: list[int] = []
    sa.event.listen(sa.engine.Engine, "before_cursor_execute", count)
    try:
        store = Store.from_env().metadata
        first = None
        for event in store.events.follow(0, flow="Gated", until=lambda e: e.kind == "task.started"
                                         and e.step == "part", timeout=120):
            first = event
        assert first is not None and first.step == "part", "the first part task never started"
        follower.start()
        # the follower printed the first task's output: it has read the run's tasks, and the
        # second one did not exist yet (its row is written when it starts)
        out, deadline = "", time.monotonic() + 120
        while not out.endswith("\n"):
            assert time.monotonic() < deadline, "the follower never showed the first task's output"
            out += capsys.readouterr().out
            time.sleep(0.05)
        assert out == "part 0 says hello\n"
        assert [t.task_id for t in store.runs.list_tasks("Gated", 1, "part")] == [first.task_id]
        gate.touch()
        follower.join(timeout=120)
        assert done == [0], "the follower did not end with the run"
        assert run.wait(timeout=120) == 0
        (second,) = [t.task_id for t in store.runs.list_tasks("Gated", 1, "part") if t.task_id != first.task_id]
        assert capsys.readouterr().out == f"[Gated/1/part/{second}] part 1 says hello\n"
        # the tasks table was read once, at the start; after that, the event log
        assert sum(bool(re.search(r"\sFROM tasks\b", s)) for s in statements) == 1, statements
        assert sum(bool(re.search(r"\sFROM events\b", s)) for s in statements) >= 2
    finally:
        sa.event.remove(sa.engine.Engine, "before_cursor_execute", count)
        gate.touch()
        follower.join(timeout=120)
        if run.poll() is None:
            run.kill()
            run.wait(timeout=30)


def test_an_interrupted_run_writes_task_interrupted_for_each_running_task_before_run_interrupted(keel_home,
                                                                                                  tmp_path):
    import signal

    gate = tmp_path / "gate"   # never opened: the part tasks run until the run is stopped
    path = write_flow(tmp_path, "gated", GATED_FLOW.format(gate=str(gate)).replace("self.input == 0 and ", ""))
    run = subprocess.Popen([PYTHON, str(path), "run"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        store = Store.from_env().metadata
        started = []
        for event in store.events.follow(0, flow="Gated", timeout=120,
                                         until=lambda e: len(started) == 2):  # checked after each event
            if event.kind == "task.started" and event.step == "part":
                started.append(event.task_id)
        assert len(started) == 2, "the part tasks never started"
        run.send_signal(signal.SIGTERM)
        assert run.wait(timeout=120) == 130
    finally:
        if run.poll() is None:
            run.kill()
            run.wait(timeout=30)
    events = store.events.read(0, flow="Gated", run_id=1)
    assert events[-1].kind == "run.interrupted"
    stopped = [e.task_id for e in events if e.kind == "task.interrupted"]
    assert sorted(stopped) == sorted(started)
    assert {t.task_id: t.status for t in store.runs.list_tasks("Gated", 1, "part")} == {
        task_id: "interrupted" for task_id in started}


def test_logs_follow_ends_when_the_runs_scheduler_dies_without_an_event(keel_home, tmp_path):
    import signal

    gate = tmp_path / "gate"   # never opened: the part tasks run until the scheduler is killed
    path = write_flow(tmp_path, "gated", GATED_FLOW.format(gate=str(gate)).replace("self.input == 0 and ", ""))
    run = subprocess.Popen([PYTHON, str(path), "run"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    follow = None
    try:
        store = Store.from_env().metadata
        for _ in store.events.follow(0, flow="Gated", until=lambda e: e.kind == "task.started" and e.step == "part",
                                     timeout=120):
            pass
        follow = subprocess.Popen([PYTHON, "-m", "keel.cli.main", "logs", "Gated/1/part", "--follow"],
                                  stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        assert "says hello" in follow.stdout.readline()   # following: it has read the run's tasks
        run.send_signal(signal.SIGKILL)   # no run.* event will come: the liveness check ends it
        run.wait(timeout=60)
        assert follow.wait(timeout=120) == 0, follow.stderr.read()
        assert [e.kind for e in store.events.read(0, flow="Gated", run_id=1) if e.kind.startswith("run.")] == [
            "run.started"]
    finally:
        for proc in (follow, run):
            if proc is not None and proc.poll() is None:
                proc.kill()
                proc.wait(timeout=30)
