"""The client reads runs, steps, tasks, artifacts, metrics and logs back from the store."""

from __future__ import annotations

import datetime as dt

import pytest

from keel_testing import FLOWS, run_in_process, write_flow
from keel import Flow, Run, Step, Task
from keel.errors import NotFoundError, UsageError

FLOW = '''
    from keel import FlowSpec, step, Parameter, current

    class Client(FlowSpec):
        fail = Parameter("fail", default=False)

        @step
        def start(self):
            import numpy as np
            self.arr = np.arange(10)
            self.items = [1, 2, 3]
            print("start out")
            self.next(self.part, foreach="items")

        @step
        def part(self):
            self.sq = self.input ** 2
            current.log_metric("sq", self.sq, step=self.index)
            self.next(self.join)

        @step
        def join(self, inputs):
            if self.fail:
                raise ValueError("asked to fail")
            self.total = sum(i.sq for i in inputs)
            self.next(self.end)

        @step
        def end(self):
            pass
'''


@pytest.fixture
def runs(keel_home, tmp_path):
    path = write_flow(tmp_path, "client_flow", FLOW)
    ok = run_in_process(path)
    bad = run_in_process(path, {"fail": True})
    assert (ok.status, bad.status) == ("succeeded", "failed")
    return ok, bad


def test_flow_and_runs(runs):
    flow = Flow("Client")
    assert [r.id for r in flow.runs()] == [2, 1]
    assert flow.latest_run.id == 2 and flow.latest_successful_run.id == 1
    assert flow[1].pathspec == "Client/1"
    assert Run("Client/2").status == "failed" and not Run("Client/2").successful
    run = Run("Client/1")
    assert run.finished and run.successful and run.params == {"fail": False}
    assert isinstance(run.created_at, dt.datetime) and run.duration > 0
    assert [s.id for s in run] == ["start", "part", "join", "end"]
    assert Run("Client/2").error == "ValueError: asked to fail"


def test_steps_tasks_and_artifacts(runs):
    run = Run("Client/1")
    start = run["start"].task
    assert start.data.items == [1, 2, 3] and start.data.arr.tolist() == list(range(10))
    assert start.stdout == "start out\n" and start.stderr == ""
    assert start.artifacts["arr"].serializer == "numpy" and start.artifacts["arr"].size > 0
    part = run["part"]
    assert len(part) == 3 and sorted(t.data.sq for t in part) == [1, 4, 9]
    assert sorted(t.index for t in part) == [0, 1, 2]
    task = next(iter(part))
    assert Task(task.pathspec).data.sq == task.data.sq
    assert Step("Client/1/part").pathspec == "Client/1/part"
    assert run.data.total == 14
    assert sorted(v for _, v, _ in run.metrics["sq"]) == [1.0, 4.0, 9.0]
    assert task.started_at <= task.finished_at


def test_failed_run_keeps_what_finished(runs):
    run = Run("Client/2")
    assert run["part"].task.successful
    join = run["join"].task
    assert join.status == "failed"
    assert join.exception["type"] == "ValueError" and join.exception["message"] == "asked to fail"
    assert "raise ValueError" in join.exception["traceback"]
    with pytest.raises(NotFoundError, match="did not finish its end step"):
        run.data  # noqa: B018


def test_lookups_that_fail_say_why(runs):
    with pytest.raises(NotFoundError, match=r"no run Client/9; list the runs with: keel runs Client"):
        Run("Client/9")
    with pytest.raises(UsageError, match=r"malformed pathspec 'Client': expected Flow/RUN"):
        Run("Client")
    with pytest.raises(KeyError, match="has no step 'nope'; its steps are: start, part, join, end"):
        Run("Client/1")["nope"]
    with pytest.raises(AttributeError, match=r"Client/1/start/1 has no artifact 'zzz' \(it has: arr, fail, items\)"):
        Run("Client/1")["start"].task.data.zzz  # noqa: B018
    assert Flow("Unknown").latest_run is None


def test_tags_added_and_removed_from_the_client(keel_home):
    result = run_in_process(FLOWS / "linear.py")
    run = Run(f"{result.flow}/1")
    run.add_tag("keep", "review")
    run.remove_tag("review")
    assert Run(f"{result.flow}/1").tags == ["keep"]
    assert [r.id for r in Flow(result.flow).runs("keep")] == [1]
