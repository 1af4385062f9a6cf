"""A task killed by a signal, by os._exit, or by the out-of-memory killer is a failed attempt
whose error names what happened; @retry applies."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from reliability_kit import FLOWS, env_for, run, store_of

from keel.client.core import Run

FLOW = str(FLOWS / "crashes.py")


def _memory_cgroup(limit: int) -> Path | None:
    """A child memory cgroup with ``limit`` bytes (cgroup v1 or v2), or None where none can be made."""
    try:
        lines = Path("/proc/self/cgroup").read_text().splitlines()
    except OSError:
        return None
    candidates = []
    for line in lines:
        _, controllers, path = line.split(":", 2)
        if "memory" in controllers.split(","):
            candidates.append((Path("/sys/fs/cgroup/memory") / path.lstrip("/"), "memory.limit_in_bytes"))
        elif controllers == "":
            for root in (Path("/sys/fs/cgroup/unified"), Path("/sys/fs/cgroup")):
                candidates.append((root / path.lstrip("/"), "memory.max"))
    for parent, knob in candidates:
        group = parent / f"keel-oom-{os.getpid()}"
        try:
            group.mkdir()
        except OSError:
            continue
        try:
            (group / knob).write_text(str(limit))
            swap = group / ("memory.memsw.limit_in_bytes" if knob == "memory.limit_in_bytes" else "memory.swap.max")
            if swap.exists():
                try:
                    swap.write_text(str(limit) if knob == "memory.limit_in_bytes" else "0")
                except OSError:
                    pass
            return group
        except OSError:
            group.rmdir()
    return None


def _attempts(home, run_id=1):
    store = store_of(home)
    task = Run(f"Crashes/{run_id}", _store=store)["boom"].task
    return task, store.metadata.runs.list_attempts("Crashes", run_id, task.id)


@pytest.mark.parametrize("how, message", [
    ("sigkill", "the task process was killed by SIGKILL (sent by another process, not by the out-of-memory killer)"),
    ("exit", "the task process exited with status 3 before it finished (os._exit or sys.exit?)"),
])
def test_a_killed_task_is_a_failed_attempt_that_says_why(tmp_path, how, message):
    home = tmp_path / ".keel"
    proc = run([FLOW, "run", "--how", how, "--quiet"], env_for(home), tmp_path)
    assert proc.returncode == 1
    assert f"Run Crashes/1 failed at step 'boom' (task 2): TaskCrashed: {message}" in proc.stderr
    task, attempts = _attempts(home)
    assert task.status == "failed" and task.attempts == 2          # @retry(times=1): tried twice
    assert [(a["status"], a["error_type"], a["error_message"]) for a in attempts] == [
        ("failed", "TaskCrashed", message)] * 2
    assert task.exception["message"] == message


def test_retry_applies_to_a_crash(tmp_path):
    home = tmp_path / ".keel"
    proc = run([FLOW, "run", "--how", "exit", "--once", "true", "--quiet"], env_for(home), tmp_path)
    assert proc.returncode == 0, proc.stderr
    task, attempts = _attempts(home)
    assert task.status == "succeeded" and task.data.survived == 1
    assert [a["status"] for a in attempts] == ["failed", "succeeded"]
    assert attempts[0]["error_message"].startswith("the task process exited with status 3")


def test_the_out_of_memory_killer_is_named(tmp_path):
    group = _memory_cgroup(64 << 20)
    if group is None:
        pytest.skip("no memory cgroup can be made here (needs root and a writable cgroup v1/v2 memory controller)")
    if not os.access("/dev/kmsg", os.R_OK):
        pytest.skip("/dev/kmsg cannot be read here, so an OOM kill cannot be told from another SIGKILL")
    try:
        home = tmp_path / ".keel"
        proc = run([FLOW, "run", "--how", "oom", "--once", "true", "--quiet"],
                   env_for(home, KEEL_TEST_CGROUP=str(group)), tmp_path)
        assert proc.returncode == 0, proc.stderr                     # @retry: the second attempt succeeds
        task, attempts = _attempts(home)
        assert [a["status"] for a in attempts] == ["failed", "succeeded"]
        assert attempts[0]["error_type"] == "TaskCrashed"
        assert attempts[0]["error_message"] == (
            "the task process was killed by the out-of-memory killer (SIGKILL): it needed more memory than "
            "the machine or its memory limit allows. Use less memory in the step, or run it where there is more")
    finally:
        try:
            group.rmdir()
        except OSError:
            pass
