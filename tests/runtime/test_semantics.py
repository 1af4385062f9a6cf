"""Metaflow semantics on the local runtime: artifacts, foreach, joins, parameters, tracking."""

from __future__ import annotations

import pytest

from keel_testing import run_cli, run_in_process, write_flow
from keel import Flow


def test_foreach_input_index_and_stack(keel_home, tmp_path):
    path = write_flow(tmp_path, "fe", '''
        from keel import FlowSpec, step

        class Fe(FlowSpec):
            @step
            def start(self):
                self.letters = ["a", "b"]
                self.next(self.outer, foreach="letters")

            @step
            def outer(self):
                self.letter = self.input
                self.nums = [1, 2, 3]
                self.next(self.inner, foreach="nums")

            @step
            def inner(self):
                self.stack = self.foreach_stack()
                self.tag_ = f"{self.letter}{self.input}@{self.index}"
                self.next(self.inner_join)

            @step
            def inner_join(self, inputs):
                self.tags = [i.tag_ for i in inputs]
                self.next(self.outer_join)

            @step
            def outer_join(self, inputs):
                self.all = [t for i in inputs for t in i.tags]
                self.next(self.end)

            @step
            def end(self):
                pass
    ''')
    assert run_in_process(path).status == "succeeded"
    run = Flow("Fe").latest_run
    assert run.data.all == ["a1@0", "a2@1", "a3@2", "b1@0", "b2@1", "b3@2"]
    stacks = sorted(t.data.stack for t in run["inner"])
    assert stacks[0] == [(0, 2, "a"), (0, 3, 1)]
    assert len(run["inner"]) == 6 and sorted(t.index for t in run["inner"]) == [0, 0, 1, 1, 2, 2]


def test_merge_artifacts_and_inherited_values(keel_home, tmp_path):
    path = write_flow(tmp_path, "merge", '''
        from keel import FlowSpec, step

        class Merge(FlowSpec):
            @step
            def start(self):
                self.shared = {"big": list(range(1000))}
                self.next(self.a, self.b)

            @step
            def a(self):
                self.x = 1
                self.same = "s"
                self.next(self.join)

            @step
            def b(self):
                self.x = 2
                self.same = "s"
                self.next(self.join)

            @step
            def join(self, inputs):
                self.xs = sorted(i.x for i in inputs)
                self.merge_artifacts(inputs, exclude=["x"])
                self.next(self.end)

            @step
            def end(self):
                self.n = len(self.shared["big"])
    ''')
    assert run_in_process(path).status == "succeeded"
    run = Flow("Merge").latest_run
    assert run.data.xs == [1, 2] and run.data.same == "s" and run.data.n == 1000
    # Merged and inherited artifacts are references to the same stored bytes.
    start_key = run["start"].task.artifacts["shared"].key
    assert run["end"].task.artifacts["shared"].key == start_key
    assert run["join"].task.artifacts["shared"].key == start_key


def test_merge_conflict_is_an_error(keel_home, tmp_path):
    path = write_flow(tmp_path, "conflict", '''
        from keel import FlowSpec, step

        class Conflict(FlowSpec):
            @step
            def start(self):
                self.next(self.a, self.b)

            @step
            def a(self):
                self.x = 1
                self.next(self.join)

            @step
            def b(self):
                self.x = 2
                self.next(self.join)

            @step
            def join(self, inputs):
                self.merge_artifacts(inputs)
                self.next(self.end)

            @step
            def end(self):
                pass
    ''')
    result = run_in_process(path)
    assert result.status == "failed" and result.outcome.failed_step == "join"
    assert result.outcome.error["message"] == (
        "merge_artifacts: the branches have different values for 'x'. Set them in the join step first, "
        "or pass exclude=['x']")


def test_parameters_typed_json_bool_and_include_file(keel_home, tmp_path):
    (tmp_path / "data.csv").write_text("a,b\n1,2\n")
    path = write_flow(tmp_path, "params", '''
        from keel import FlowSpec, step, Parameter, IncludeFile

        class Params(FlowSpec):
            n = Parameter("n", default=3)
            alpha = Parameter("alpha", default=0.5)
            model = Parameter("model-name", default="lin")
            flag = Parameter("flag", default=False)
            layers = Parameter("layers", default=[8, 8])
            data = IncludeFile("data", default="data.csv")

            @step
            def start(self):
                self.seen = (self.n, self.alpha, self.model, self.flag, self.layers, self.data)
                self.next(self.end)

            @step
            def end(self):
                pass
    ''')
    proc = run_cli("run", str(path), "--n", "5", "--alpha=0.25", "--model-name", "rf", "--flag",
                   "--layers", "[1, 2]", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    run = Flow("Params").latest_run
    assert run.data.seen == (5, 0.25, "rf", True, [1, 2], "a,b\n1,2\n")
    assert run.params["n"] == 5 and run.params["layers"] == [1, 2]
    (tmp_path / "data.csv").unlink()  # the run keeps the file's content
    assert Flow("Params").latest_run["start"].task.data.data == "a,b\n1,2\n"


def test_parameters_are_read_only(keel_home, tmp_path):
    path = write_flow(tmp_path, "ro", '''
        from keel import FlowSpec, step, Parameter

        class Ro(FlowSpec):
            n = Parameter("n", default=3)

            @step
            def start(self):
                self.n = 4
                self.next(self.end)

            @step
            def end(self):
                pass
    ''')
    result = run_in_process(path)
    assert result.status == "failed"
    assert result.outcome.error["message"] == ("parameter 'n' is read-only inside a run; set it on the "
                                               "command line with --n")


def test_metrics_tags_and_logs(keel_home, tmp_path):
    path = write_flow(tmp_path, "track", '''
        import sys
        from keel import FlowSpec, step, current

        class Track(FlowSpec):
            @step
            def start(self):
                for i in range(1000):
                    current.log_metric("loss", 1.0 / (i + 1), step=i)
                current.log_metrics({"acc": 0.9, "f1": 0.8})
                current.tag("baseline", "v1")
                print("hello from", current.pathspec)
                print("to stderr", file=sys.stderr)
                self.next(self.end)

            @step
            def end(self):
                pass
    ''')
    proc = run_cli("run", str(path), "--tag", "cli-tag", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert "[Track/1/start/1] hello from Track/1/start/1" in proc.stdout
    run = Flow("Track").latest_run
    loss = run.metrics["loss"]
    assert len(loss) == 1000 and loss[0][:2] == (0, 1.0) and loss[-1][0] == 999
    assert run.metrics["acc"][0][1] == 0.9
    assert set(run.tags) == {"baseline", "v1", "cli-tag"}
    task = run["start"].task
    assert task.stdout == "hello from Track/1/start/1\n"
    assert task.stderr == "to stderr\n"
    logs = run_cli("logs", "Track/1/start", cwd=tmp_path)
    assert logs.returncode == 0 and logs.stdout == "hello from Track/1/start/1\n"


def test_max_num_splits_names_the_flag(keel_home, tmp_path):
    path = write_flow(tmp_path, "wide", '''
        from keel import FlowSpec, step

        class Wide(FlowSpec):
            @step
            def start(self):
                self.items = list(range(20))
                self.next(self.part, foreach="items")

            @step
            def part(self):
                self.next(self.join)

            @step
            def join(self, inputs):
                self.next(self.end)

            @step
            def end(self):
                pass
    ''')
    result = run_in_process(path, max_num_splits=10)
    assert result.status == "failed"
    assert result.outcome.error["message"] == ("step 'start' fans out into 20 tasks, more than --max-num-splits "
                                               "10. Raise it with --max-num-splits 20, or split less")


def test_random_state_differs_between_forked_tasks(keel_home, tmp_path):
    path = write_flow(tmp_path, "rnd", '''
        import random
        import numpy as np
        from keel import FlowSpec, step

        class Rnd(FlowSpec):
            @step
            def start(self):
                self.items = list(range(4))
                self.next(self.part, foreach="items")

            @step
            def part(self):
                self.r = (random.random(), float(np.random.random()))
                self.next(self.join)

            @step
            def join(self, inputs):
                self.rs = [i.r for i in inputs]
                self.next(self.end)

            @step
            def end(self):
                pass
    ''')
    assert run_in_process(path).status == "succeeded"
    rs = Flow("Rnd").latest_run.data.rs
    assert len({r[0] for r in rs}) == 4 and len({r[1] for r in rs}) == 4


def test_missing_artifact_message(keel_home, tmp_path):
    path = write_flow(tmp_path, "miss", '''
        from keel import FlowSpec, step

        class Miss(FlowSpec):
            @step
            def start(self):
                self.a = 1
                self.next(self.end)

            @step
            def end(self):
                print(self.b)
    ''')
    result = run_in_process(path)
    assert result.status == "failed"
    assert result.outcome.error["message"] == "Miss/1/end/2 has no artifact 'b' (artifacts here: a)"
