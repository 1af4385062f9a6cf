"""The scheduler alone, with an in-memory store and an executor fake that runs tasks inline.

These pin the loop's decisions (join matching, retries, @catch after a crash, limits)
without processes; tests/runtime/test_shapes.py and friends run the same through real ones.
"""

from __future__ import annotations

import textwrap
import time
from collections import deque
from typing import Any

import pytest

from keel_testing import load_flow
from keel.flow.graph import FlowGraph
from keel.runtime.executors.base import Outcome
from keel.runtime.scheduler import _FLUSH_EVERY, Options, Scheduler
from keel.runtime.task import TaskSpec, run_task
from keel.store.artifacts import ArtifactRef, ArtifactStore
from keel.store.backend import MemoryBackend
from keel.store.memory import MemoryMetadata
from keel.store.metadata import MetadataStore


class InlineExecutor:
    """Runs each submitted task at once, in this process; crashes are scripted per step."""

    name = "inline"

    def __init__(self, flow_cls: type, artifacts: ArtifactStore, crash: dict[str, int] | None = None):
        self.flow_cls, self.artifacts = flow_cls, artifacts
        self.crash = dict(crash or {})     # step -> how many attempts die with SIGKILL
        self.done: deque[Outcome] = deque()
        self.submitted: list[TaskSpec] = []
        self.most_at_once = 0

    def submit(self, spec: TaskSpec) -> None:
        self.submitted.append(spec)
        if self.crash.get(spec.step, 0) > spec.attempt:
            self.done.append(Outcome(spec=spec, result=None, signal=9, reason="killed by SIGKILL"))
        else:
            self.done.append(Outcome(spec=spec, result=run_task(spec, self.flow_cls, self.artifacts)))
        self.most_at_once = max(self.most_at_once, len(self.done))

    def wait(self, timeout: float) -> list[Outcome]:
        out = list(self.done)
        self.done.clear()
        return out

    def kill(self, spec: TaskSpec) -> None:
        pass

    def shutdown(self) -> list[Outcome]:
        return []

    def close(self) -> None:
        pass


def schedule(tmp_path, source: str, *, crash: dict[str, int] | None = None, **options: Any):
    path = tmp_path / "flow.py"
    path.write_text(textwrap.dedent(source))
    flow_cls = load_flow(path)
    graph = FlowGraph(flow_cls)
    graph.check()
    artifacts = ArtifactStore(MemoryBackend())
    metadata = MemoryMetadata()
    run_id = metadata.runs.new_run(graph.name, params={})
    metadata.runs.register_steps(graph.name, run_id, graph.sorted_nodes())
    executor = InlineExecutor(flow_cls, artifacts, crash)
    scheduler = Scheduler(flow=graph.name, run_id=run_id, graph=graph, executor=executor, metadata=metadata.runs,
                          artifacts=artifacts, scratch=str(tmp_path), params={}, options=Options(**options))
    outcome = scheduler.run()
    scheduler.finish()
    return outcome, metadata, artifacts, executor, graph.name


def end_value(metadata: MemoryMetadata, artifacts: ArtifactStore, flow: str, name: str) -> Any:
    end = metadata.runs.list_tasks(flow, 1, "end")[0]
    ref = metadata.runs.task_artifacts(flow, 1, end.task_id)[name]
    return artifacts.get(ArtifactRef(ref["key"], ref["serializer"], ref["size"]))


NESTED = '''
    from keel import FlowSpec, step

    class Nested(FlowSpec):
        @step
        def start(self):
            self.xs = [1, 2]
            self.next(self.outer, foreach="xs")

        @step
        def outer(self):
            self.x = self.input
            self.next(self.a, self.b)

        @step
        def a(self):
            self.v = self.x * 10
            self.next(self.meet)

        @step
        def b(self):
            self.v = self.x * 100
            self.next(self.meet)

        @step
        def meet(self, inputs):
            self.v = inputs.a.v + inputs.b.v
            self.next(self.join)

        @step
        def join(self, inputs):
            self.total = sorted(i.v for i in inputs)
            self.next(self.end)

        @step
        def end(self):
            pass
'''


def test_joins_match_the_split_they_close(tmp_path):
    outcome, metadata, artifacts, executor, flow = schedule(tmp_path, NESTED)
    assert outcome.status == "succeeded"
    assert end_value(metadata, artifacts, flow, "total") == [110, 220]
    meets = metadata.runs.list_tasks(flow, 1, "meet")
    assert len(meets) == 2 and all(len(t.parents) == 2 for t in meets)


CRASHY = '''
    from keel import FlowSpec, step, retry, catch

    class Crashy(FlowSpec):
        @step
        def start(self):
            self.next(self.flaky, self.doomed)

        @retry(times=2, minutes_between_retries=0)
        @step
        def flaky(self):
            self.ok = True
            self.next(self.join)

        @catch(var="err")
        @step
        def doomed(self):
            self.next(self.join)

        @step
        def join(self, inputs):
            self.ok = inputs.flaky.ok
            self.err = str(inputs.doomed.err)
            self.next(self.end)

        @step
        def end(self):
            pass
'''


def test_retries_after_crashes_and_catch_on_the_last_attempt(tmp_path):
    outcome, metadata, artifacts, executor, flow = schedule(tmp_path, CRASHY, crash={"flaky": 2, "doomed": 9})
    assert outcome.status == "succeeded"
    assert end_value(metadata, artifacts, flow, "ok") is True
    assert end_value(metadata, artifacts, flow, "err") == ("keel.errors.FailureHandledByCatch: task execution kept "
                                                           "failing over 1 attempt(s) without a Python exception: "
                                                           "killed by SIGKILL")
    flaky = metadata.runs.list_tasks(flow, 1, "flaky")[0]
    assert (flaky.status, flaky.attempts) == ("succeeded", 3)
    statuses = [a["status"] for a in metadata.runs.list_attempts(flow, 1, flaky.task_id)]
    assert statuses == ["failed", "failed", "succeeded"]
    assert metadata.runs.list_tasks(flow, 1, "doomed")[0].status == "caught"


def test_retries_run_out_and_the_run_fails_at_that_task(tmp_path):
    outcome, metadata, _, executor, flow = schedule(tmp_path, CRASHY, crash={"flaky": 3})
    assert (outcome.status, outcome.failed_step) == ("failed", "flaky")
    assert outcome.error == {"type": "TaskCrashed", "message": "killed by SIGKILL", "traceback": ""}
    assert not metadata.runs.list_tasks(flow, 1, "join")


WIDE = '''
    from keel import FlowSpec, step

    class Wide(FlowSpec):
        @step
        def start(self):
            self.items = list(range(30))
            self.next(self.part, foreach="items")

        @step
        def part(self):
            self.next(self.join)

        @step
        def join(self, inputs):
            self.n = len(list(inputs))
            self.next(self.end)

        @step
        def end(self):
            pass
'''


@pytest.mark.parametrize("workers", [1, 4, 16])
def test_max_workers_bounds_what_is_in_flight(tmp_path, workers):
    outcome, metadata, artifacts, executor, flow = schedule(tmp_path, WIDE, max_workers=workers)
    assert outcome.status == "succeeded" and end_value(metadata, artifacts, flow, "n") == 30
    assert executor.most_at_once <= workers


def test_max_num_splits_stops_the_fan_out(tmp_path):
    outcome, metadata, _, executor, flow = schedule(tmp_path, WIDE, max_num_splits=29)
    assert (outcome.status, outcome.failed_step) == ("failed", "start")
    assert "--max-num-splits 29" in outcome.error["message"]
    assert [s.step for s in executor.submitted] == ["start"]


class HoldingExecutor(InlineExecutor):
    """Runs tasks inline, except those of step 'hold', which run only once ``release`` is set;
    records each wait's timeout and whether step 'a' was on record when the wait began."""

    def __init__(self, flow_cls: type, artifacts: ArtifactStore, metadata: MetadataStore):
        super().__init__(flow_cls, artifacts)
        self.metadata = metadata
        self.held: list[TaskSpec] = []
        self.waits: list[tuple[float, bool]] = []

    def submit(self, spec: TaskSpec) -> None:
        if spec.step == "hold":
            self.held.append(spec)
        else:
            super().submit(spec)

    def wait(self, timeout: float) -> list[Outcome]:
        if self.done:
            return super().wait(timeout)
        a_done = any(t.status == "succeeded" for t in self.metadata.runs.list_tasks("Held", 1, "a"))
        self.waits.append((timeout, a_done))
        if len(self.waits) >= 3:  # the hold step ends now; what it sees of the past is recorded
            spec = self.held.pop()
            return [Outcome(spec=spec, result=run_task(spec, self.flow_cls, self.artifacts))]
        time.sleep(timeout)  # as the real executors do when nothing happens
        return []


def test_a_finished_task_is_on_record_within_the_flush_interval(tmp_path):
    """A task that ends while another runs is written within _FLUSH_EVERY, not at the next
    heartbeat or the 1 s wake-up (a kill -9 in between would make resume redo it)."""
    path = tmp_path / "flow.py"
    path.write_text(textwrap.dedent("""
        from keel import FlowSpec, step

        class Held(FlowSpec):
            @step
            def start(self):
                self.next(self.a)

            @step
            def a(self):
                self.next(self.hold)

            @step
            def hold(self):
                self.next(self.end)

            @step
            def end(self):
                pass
    """))
    flow_cls = load_flow(path)
    graph = FlowGraph(flow_cls)
    artifacts = ArtifactStore(MemoryBackend())
    metadata = MetadataStore(f"sqlite:///{tmp_path / 'meta.db'}")
    run_id = metadata.runs.new_run(graph.name, params={})
    metadata.runs.register_steps(graph.name, run_id, graph.sorted_nodes())
    executor = HoldingExecutor(flow_cls, artifacts, metadata)
    scheduler = Scheduler(flow=graph.name, run_id=run_id, graph=graph, executor=executor, metadata=metadata.runs,
                          artifacts=artifacts, scratch=str(tmp_path), params={}, options=Options())
    assert scheduler.run().status == "succeeded"
    waits = executor.waits
    # While 'a' has ended but is not on record (its row waits for the flush interval), the
    # scheduler sleeps no longer than that interval, and by its next wait 'a' is on record.
    # (On a loaded machine 'a' may already be flushed at the first wait: nothing is pending.)
    for (timeout, a_seen), (_, a_seen_next) in zip(waits, waits[1:]):
        if not a_seen:
            assert timeout <= _FLUSH_EVERY
            assert a_seen_next
    assert waits[-1][1]
