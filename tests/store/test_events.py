"""The event log through real runs: a run's state changes in order, read once by a follower."""

from __future__ import annotations

import subprocess
import threading

from keel_testing import PYTHON, write_flow
from keel.store import Store

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
