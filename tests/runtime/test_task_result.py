"""A task's result: the typed record run_task hands the scheduler, across every way it travels."""

from __future__ import annotations

import pickle
import textwrap
from pathlib import Path

from keel_testing import load_flow
from keel.runtime.task import TaskResult, TaskSpec, read_result, run_task, write_result
from keel.store.artifacts import ArtifactStore
from keel.store.backend import MemoryBackend

_FLOW = '''
    from keel import FlowSpec, step

    class Fan(FlowSpec):
        @step
        def start(self):
            self.items = [1, 2, 3]
            self.next(self.part, foreach="items")

        @step
        def part(self):
            raise ValueError("no part today")

        @step
        def end(self):
            pass
'''


def _spec(tmp_path: Path, step: str) -> TaskSpec:
    return TaskSpec(flow="Fan", run_id=1, step=step, task_id=1, attempt=0, inputs=[], input_steps=[],
                    is_join=False, param_names=[], metrics_path=str(tmp_path / f"{step}.metrics"))


def _flow(tmp_path: Path) -> type:
    path = tmp_path / "fan.py"
    path.write_text(textwrap.dedent(_FLOW))
    return load_flow(path)


def test_a_foreach_step_reports_its_fan_out_as_typed_fields(tmp_path: Path) -> None:
    store = ArtifactStore(MemoryBackend())
    result = run_task(_spec(tmp_path, "start"), _flow(tmp_path), store)
    assert isinstance(result, TaskResult)
    assert (result.ok, result.caught, result.error) == (True, False, None)
    assert (result.transition, result.foreach, result.num_splits) == (("part",), "items", 3)
    assert result.own == ("items",) and result.foreach_ref == result.artifacts["items"]


def test_a_failed_step_reports_its_error_and_no_artifacts(tmp_path: Path) -> None:
    result = run_task(_spec(tmp_path, "part"), _flow(tmp_path), ArtifactStore(MemoryBackend()))
    assert not result.ok and result.artifacts == {} and result.transition == ()
    assert result.error is not None
    assert (result.error["type"], result.error["message"]) == ("ValueError", "no part today")
    assert "raise ValueError" in result.error["traceback"]


def test_a_result_survives_the_result_file_and_pickle(tmp_path: Path) -> None:
    result = run_task(_spec(tmp_path, "start"), _flow(tmp_path), ArtifactStore(MemoryBackend()))
    path = str(tmp_path / "start.result")
    write_result(path, result)
    assert read_result(path) == result
    assert pickle.loads(pickle.dumps(result, protocol=pickle.HIGHEST_PROTOCOL)) == result
    assert read_result(str(tmp_path / "missing.result")) is None
