"""Gaps found walking issue 16's items with flows written the way Metaflow's docs show them:
@catch's variable on success, ``current.task_id`` a string, the client's ``task["x"]``, ``task.artifacts.x`` and ``step.tasks()``."""

from __future__ import annotations

from keel_testing import run_in_process, write_flow
from keel import Flow

CAUGHT = '''
    from keel import FlowSpec, step, catch, current

    class CatchNone(FlowSpec):
        @step
        def start(self):
            self.items = [1, 2]
            self.ids = (current.run_id, current.task_id)
            self.fields = (current.get("no_such_field", "none"), "step_name" in current, "origin_run_id" in current,
                           current.tempdir)
            self.next(self.each, foreach="items")

        @catch(var="err")
        @step
        def each(self):
            self.x = self.input
            if self.input == 2:
                raise ValueError("two")
            self.next(self.join)

        @step
        def join(self, inputs):
            self.errs = [None if i.err is None else i.err.type for i in inputs]
            self.next(self.end)

        @step
        def end(self):
            pass
'''


def test_catch_sets_its_variable_to_none_when_the_step_succeeds_and_the_client_reads_metaflow_style(
        keel_home, tmp_path):
    assert run_in_process(write_flow(tmp_path, "catchnone", CAUGHT)).status == "succeeded"
    run = Flow("CatchNone").latest_run
    assert run.data.errs == [None, "builtins.ValueError"]
    assert run["start"].task.data.ids == (str(run.id), str(run["start"].task.id))   # strings, as in Metaflow
    assert run["start"].task.data.fields == ("none", True, False, ".")
    first = run["each"].tasks()[0]                      # step.tasks() as in Metaflow; step.tasks still a list
    assert first["x"].data == 1 and "err" in first and first["err"].data is None
    assert first.artifacts.x.data == 1                  # task.artifacts.NAME, as Metaflow's namedtuple
    assert sorted(a.name for a in first) == ["err", "fields", "ids", "items", "x"]
    assert len(run["each"].tasks) == 2


def test_catch_on_a_conditional_step_is_refused_before_the_run(tmp_path):
    import pytest

    from keel.errors import GraphError
    from keel.flow.graph import FlowGraph
    from keel_testing import load_flow

    path = write_flow(tmp_path, "catchswitch", '''
        from keel import FlowSpec, step, catch

        class CatchSwitch(FlowSpec):
            @catch(var="err")
            @step
            def start(self):
                self.mode = "a"
                self.next({"a": self.a}, condition="mode")

            @step
            def a(self):
                self.next(self.end)

            @step
            def end(self):
                pass
    ''')
    with pytest.raises(GraphError) as info:
        FlowGraph(load_flow(path)).check()
    assert "catchswitch.py:4: step 'start' has @catch, but it chooses a branch" in str(info.value)
