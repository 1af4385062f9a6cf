"""Every graph shape runs through the real local runtime and reads back through the client."""

from __future__ import annotations

import pytest

from keel_testing import FLOWS, module_of, run_in_process
from keel import Flow, Run

SHAPES = ["linear", "branch", "nested_branch", "foreach", "nested_foreach", "foreach_in_branch",
          "branch_in_foreach"]


@pytest.mark.parametrize("shape", SHAPES)
def test_shape_runs_and_reads_back(shape, keel_home):
    path = FLOWS / f"{shape}.py"
    result = run_in_process(path)
    assert result.status == "succeeded", result.outcome
    run = Flow(result.flow).latest_run
    assert run.id == result.run_id == 1
    assert run.successful and run.finished and run.status == "succeeded"
    for name, value in module_of(path).EXPECTED.items():
        assert getattr(run.data, name) == value
    # Every task of every step finished and is visible through the client.
    for step in run:
        assert len(step) >= 1
        assert all(t.successful and t.finished for t in step)
    assert Run(f"{result.flow}/1").pathspec == f"{result.flow}/1"


def test_run_ids_increase_per_flow(keel_home):
    first = run_in_process(FLOWS / "linear.py")
    second = run_in_process(FLOWS / "linear.py")
    other = run_in_process(FLOWS / "branch.py")
    assert (first.run_id, second.run_id, other.run_id) == (1, 2, 1)
    assert [r.id for r in Flow(first.flow).runs()] == [2, 1]
