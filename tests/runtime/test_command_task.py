"""Command tasks on the local executor: a shell line forked and exec'd, its output, exit status,
tags and the environment it gets."""

from __future__ import annotations

import time
from pathlib import Path

from keel.runtime.command import CommandTask
from keel.runtime.executors.base import Outcome
from keel.runtime.executors.local import LocalExecutor
from keel.runtime.task import TaskResult, TaskSpec
from keel.store.artifacts import ArtifactStore
from keel.store.backend import MemoryBackend


def _spec(tmp_path: Path, task_id: int, command: CommandTask) -> TaskSpec:
    stem = tmp_path / f"t{task_id}"
    return TaskSpec(flow="proj", run_id=1, step="job", task_id=task_id, attempt=0, inputs=[], input_steps=[],
                    is_join=False, param_names=[], result_path=f"{stem}.result", metrics_path=f"{stem}.metrics",
                    command=command)


def _run(tmp_path: Path, *commands: CommandTask) -> tuple[dict[int, Outcome], dict[tuple[int, str], bytes]]:
    output: dict[tuple[int, str], bytes] = {}

    def sink(spec: TaskSpec, stream: str, data: bytes) -> None:
        output[(spec.task_id, stream)] = output.get((spec.task_id, stream), b"") + data

    executor = LocalExecutor(None, ArtifactStore(MemoryBackend()), sink)
    outcomes: dict[int, Outcome] = {}
    try:
        for i, command in enumerate(commands, start=1):
            executor.submit(_spec(tmp_path, i, command))
        deadline = time.monotonic() + 120  # generous: a loaded machine is slow to start processes
        while len(outcomes) < len(commands):
            assert time.monotonic() < deadline, "the commands did not end"
            outcomes.update({o.spec.task_id: o for o in executor.wait(0.5)})
    finally:
        executor.close()
    return outcomes, output


def test_a_shell_command_runs_in_its_folder_with_its_environment(tmp_path: Path) -> None:
    (tmp_path / "here.txt").write_text("found")
    tags = str(tmp_path / "tags")
    ok = CommandTask(kind="shell", cwd=str(tmp_path), env={"GREETING": "hello", "TAGS": tags},
                     shell='echo "$GREETING $(cat here.txt)"; echo to-stderr >&2; echo tagged >> "$TAGS"',
                     tags_path=tags)
    outcomes, output = _run(tmp_path, ok)
    assert outcomes[1].result == TaskResult(ok=True, tags=("tagged",))
    assert output[(1, "stdout")] == b"hello found\n" and output[(1, "stderr")] == b"to-stderr\n"
    assert not (tmp_path / "tags").exists()  # read and removed


def test_a_failing_or_killed_command_reports_its_exit_status_or_signal(tmp_path: Path) -> None:
    failing = CommandTask(kind="shell", cwd=str(tmp_path), shell="exit 3")
    killed = CommandTask(kind="shell", cwd=str(tmp_path), shell="kill -9 $$")
    outcomes, _ = _run(tmp_path, failing, killed)
    assert (outcomes[1].result, outcomes[1].exit_code, outcomes[1].signal) == (None, 3, None)
    assert (outcomes[2].result, outcomes[2].signal) == (None, 9)


def test_a_command_does_not_inherit_the_identity_of_the_task_that_started_it(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("KEEL_RUN_ID", "99")
    env = CommandTask(kind="shell", cwd=str(tmp_path)).environment()
    assert "KEEL_RUN_ID" not in env and env["PYTHONUNBUFFERED"] == "1"
