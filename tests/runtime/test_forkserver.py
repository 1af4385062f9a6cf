"""With KEEL_FORK_SERVER=1 (and by default from a run's 8th step task on) the local executor
forks step tasks from a small fork server, not from the scheduler; with KEEL_FORK_SERVER=0, in
a run's first tasks, or when the server dies, the scheduler forks them."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

FLOW = textwrap.dedent("""
    import os

    from keel import FlowSpec, current, retry, step


    class Forked(FlowSpec):
        @retry(times=1, minutes_between_retries=0)
        @step
        def start(self):
            with open(os.environ["MARKS"], "a") as fh:
                fh.write(f"{os.getpid()} {os.getppid()} {current.retry_count}\\n")
            while current.retry_count == 0 and os.environ.get("HOLD"):
                pass  # held until the test kills the process that forked it
            self.next(self.end)

        @step
        def end(self):
            pass


    if __name__ == "__main__":
        Forked()
""")


def _setup(tmp_path: Path, **extra: str) -> tuple[Path, dict[str, str], Path]:
    flow = tmp_path / "forked.py"
    flow.write_text(FLOW)
    marks = tmp_path / "marks"
    env = {k: v for k, v in os.environ.items() if not k.startswith("KEEL_")}
    env.update(KEEL_HOME=str(tmp_path / ".keel"), MARKS=str(marks), **extra)
    return flow, env, marks


def _marks(path: Path) -> list[tuple[int, int, int]]:
    if not path.exists():
        return []
    return [tuple(int(x) for x in line.split()) for line in path.read_text().splitlines()]  # type: ignore[misc]


def _wait_for_marks(path: Path, n: int, proc: subprocess.Popen, deadline_s: float = 60) -> list[tuple[int, int, int]]:
    deadline = time.monotonic() + deadline_s
    while time.monotonic() < deadline:
        rows = _marks(path)
        if len(rows) >= n:
            return rows
        assert proc.poll() is None, proc.stderr.read() if proc.stderr else proc.returncode
        time.sleep(0.01)
    raise AssertionError(f"no {n} task marks in {deadline_s} s: {_marks(path)}")


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as fh:
            return fh.read().rsplit(")", 1)[1].split()[0] != "Z"  # a zombie waits only to be reaped
    except FileNotFoundError:
        return False


def test_a_step_task_is_forked_by_the_fork_server_not_the_scheduler(tmp_path):
    flow, env, marks = _setup(tmp_path, KEEL_FORK_SERVER="1")
    proc = subprocess.Popen([sys.executable, str(flow), "run", "--quiet"], env=env, cwd=tmp_path,
                            stderr=subprocess.PIPE, text=True)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 0, err
    [(pid, ppid, retry)] = _marks(marks)
    assert ppid != proc.pid and retry == 0  # its parent is the fork server


def test_with_the_fork_server_off_the_scheduler_forks_tasks(tmp_path):
    flow, env, marks = _setup(tmp_path, KEEL_FORK_SERVER="0")
    proc = subprocess.Popen([sys.executable, str(flow), "run", "--quiet"], env=env, cwd=tmp_path,
                            stderr=subprocess.PIPE, text=True)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 0, err
    [(_, ppid, _)] = _marks(marks)
    assert ppid == proc.pid


def test_when_the_fork_server_dies_its_task_is_killed_and_the_retry_forks_from_the_scheduler(tmp_path):
    flow, env, marks = _setup(tmp_path, HOLD="1", KEEL_FORK_SERVER="1")
    proc = subprocess.Popen([sys.executable, str(flow), "run", "--quiet"], env=env, cwd=tmp_path,
                            stderr=subprocess.PIPE, text=True)
    try:
        [(task, server, _)] = _wait_for_marks(marks, 1, proc)
        assert server != proc.pid
        os.kill(server, signal.SIGKILL)
        _, err = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 0, err
    first, second = _marks(marks)
    assert second[1:] == (proc.pid, 1)  # the retry ran, forked by the scheduler
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:  # the held task died with its server (PR_SET_PDEATHSIG)
        if not _alive(task):
            break
        time.sleep(0.01)
    else:
        raise AssertionError(f"task {task} outlived its fork server")


def test_by_default_a_run_of_a_few_tasks_forks_them_from_the_scheduler(tmp_path):
    flow, env, marks = _setup(tmp_path)  # the fork server starts only with a run's 8th step task
    proc = subprocess.Popen([sys.executable, str(flow), "run", "--quiet"], env=env, cwd=tmp_path,
                            stderr=subprocess.PIPE, text=True)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 0, err
    [(_, ppid, _)] = _marks(marks)
    assert ppid == proc.pid
