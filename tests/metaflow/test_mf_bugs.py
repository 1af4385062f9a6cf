"""Metaflow semantics that Keel got wrong (issue 16, bugs 1-5), each run through the CLI or the
runtime and read back with the client."""

from __future__ import annotations

import pytest

from keel_testing import run_cli, run_in_process, write_flow
from keel import Flow
from keel.errors import DefinitionError

RESUMABLE = '''
    import os
    from keel import FlowSpec, step, current

    class Resumable(FlowSpec):
        @step
        def start(self):
            self.origin_at_start = current.origin_run_id
            self.next(self.middle)

        @step
        def middle(self):
            self.origin = current.origin_run_id
            self.run_id = current.run_id
            if os.environ.get("FAIL_MIDDLE") == "1":
                raise RuntimeError("middle fails")
            with open("run_id_seen.txt", "w") as fh:
                fh.write(current.run_id)
            self.next(self.end)

        @step
        def end(self):
            pass

    if __name__ == "__main__":
        Resumable()
'''


def test_a_resumed_run_knows_its_origin_and_writes_its_run_id_file(keel_home, tmp_path):
    path = write_flow(tmp_path, "resumable", RESUMABLE)
    first = run_cli(str(path), "run", cwd=tmp_path, env={"FAIL_MIDDLE": "1"})
    assert first.returncode == 1, first.stderr
    proc = run_cli(str(path), "resume", "--run-id-file", "resumed.id", cwd=tmp_path, env={"FAIL_MIDDLE": "0"})
    assert proc.returncode == 0, proc.stderr
    written = (tmp_path / "resumed.id").read_text()
    assert written == "2"
    assert written == (tmp_path / "run_id_seen.txt").read_text()  # open(F).read() == current.run_id
    run = Flow("Resumable")["2"]
    assert run["middle"].task.data.origin == "1"
    assert run["middle"].task.data.run_id == "2"
    assert run["start"].task.reused  # start was taken from run 1, where origin_run_id was None
    assert Flow("Resumable")["1"]["start"].task.data.origin_at_start is None


def test_merge_artifacts_sets_nothing_when_branches_disagree(keel_home, tmp_path):
    path = write_flow(tmp_path, "atomic", '''
        from keel import FlowSpec, step

        class Atomic(FlowSpec):
            @step
            def start(self):
                self.next(self.a, self.b)

            @step
            def a(self):
                self.same, self.differ = 1, "a"
                self.next(self.join)

            @step
            def b(self):
                self.same, self.differ = 1, "b"
                self.next(self.join)

            @step
            def join(self, inputs):
                try:
                    self.merge_artifacts(inputs)
                except Exception as exc:
                    self.error = str(exc)
                self.has_same = "same" in dir(self) or hasattr(self, "same")
                self.next(self.end)

            @step
            def end(self):
                pass
    ''')
    assert run_in_process(path).status == "succeeded"
    data = Flow("Atomic").latest_run["join"].task.data
    assert "'differ'" in data.error
    assert data.has_same is False  # nothing was merged, not even the artifact the branches agree on


def test_merge_artifacts_outside_a_join_raises(keel_home, tmp_path):
    path = write_flow(tmp_path, "nojoin", '''
        from keel import FlowSpec, step

        class NoJoin(FlowSpec):
            @step
            def start(self):
                self.merge_artifacts([])
                self.next(self.end)

            @step
            def end(self):
                pass
    ''')
    result = run_in_process(path)
    assert result.status == "failed"
    assert result.outcome.error["message"] == ("merge_artifacts works only in a join step (one that takes "
                                               "inputs), not in NoJoin/1/start/1")


def test_assigning_to_a_class_level_constant_is_refused(keel_home, tmp_path):
    path = write_flow(tmp_path, "const", '''
        from keel import FlowSpec, step

        class Const(FlowSpec):
            int_const = 121

            @step
            def start(self):
                self.int_const = 122
                self.next(self.end)

            @step
            def end(self):
                pass
    ''')
    result = run_in_process(path)
    assert result.status == "failed"
    assert result.outcome.error["message"] == (
        "step 'start' sets self.int_const, but 'int_const' is a class-level constant of Const (later steps "
        "would still read the class value). Store the value under another name, e.g. self.int_const_value")


def test_a_json_default_is_parsed_and_separator_splits(keel_home, tmp_path):
    path = write_flow(tmp_path, "params", '''
        from keel import FlowSpec, step, Parameter, JSONType

        class Params(FlowSpec):
            config = Parameter("config", type=JSONType, default='{"a": [1]}')
            words = Parameter("words", default="x,y", separator=",")
            nums = Parameter("nums", type=int, default="1,2", separator=",")

            @step
            def start(self):
                self.seen = (self.config, self.words, self.nums)
                self.next(self.end)

            @step
            def end(self):
                pass

        if __name__ == "__main__":
            Params()
    ''')
    proc = run_cli(str(path), "run", "--words", "p,q,r", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert Flow("Params").latest_run.data.seen == ({"a": [1]}, ["p", "q", "r"], [1, 2])


def test_an_unknown_parameter_argument_is_refused(tmp_path):
    from keel import Parameter

    with pytest.raises(DefinitionError) as info:
        Parameter("alpha", default=1, sepatator=",")
    assert str(info.value) == ("Parameter 'alpha' has no argument 'sepatator'; its arguments are: name, default, "
                               "type, help, required, separator, show_default")
