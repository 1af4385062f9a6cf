"""Resume of a flow with a conditional (switch) step (issue 16, item 14 with resume): the step that
chose a branch and the branch it chose are reused, not run again."""

from __future__ import annotations

from keel_testing import load_flow, write_flow
from keel import Flow
from keel.cli.flow_cli import dispatch

SWITCHED = '''
    import os
    from keel import FlowSpec, step, Parameter

    class Switched(FlowSpec):
        mode = Parameter("mode", default="slow")

        @step
        def start(self):
            self.choice = self.mode
            self.next({"fast": self.fast, "slow": self.slow}, condition="choice")

        @step
        def fast(self):
            self.path = "fast"
            self.next(self.after)

        @step
        def slow(self):
            self.path = "slow"
            self.next(self.after)

        @step
        def after(self):
            if os.path.exists("fail-after"):
                raise RuntimeError("told to fail")
            self.seen = self.path
            self.next(self.end)

        @step
        def end(self):
            pass
'''


def _flow(tmp_path):
    path = write_flow(tmp_path, "switched", SWITCHED)
    return load_flow(path), str(path)


def _cli(flow, *argv: str) -> int:
    return dispatch(flow[0], flow[1], list(argv), "python switched.py")


def test_resume_reuses_the_conditional_step_and_the_branch_it_took(keel_home, tmp_path):
    flow = _flow(tmp_path)
    (tmp_path / "fail-after").write_text("")
    assert _cli(flow, "run", "-q") == 1
    (tmp_path / "fail-after").unlink()
    assert _cli(flow, "resume", "-q") == 0
    run = Flow("Switched").latest_run
    assert run["start"].task.reused and run["start"].task.origin == "Switched/1/start/1"
    assert run["slow"].task.reused
    assert len(run["fast"]) == 0
    assert not run["after"].task.reused and run["after"].task.data.seen == "slow"
    assert [s.id for s in run["after"].parent_steps] == ["slow"]


def test_resume_from_the_branch_step_runs_it_again_after_the_reused_choice(keel_home, tmp_path):
    flow = _flow(tmp_path)
    assert _cli(flow, "run", "-q") == 0
    assert _cli(flow, "resume", "1", "slow", "-q") == 0
    run = Flow("Switched").latest_run
    assert run["start"].task.reused
    assert not run["slow"].task.reused and len(run["fast"]) == 0
    assert run.data.seen == "slow"
