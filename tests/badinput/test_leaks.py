"""What a task starts (setsid, double fork) does not outlive it; a task's output never fails a run."""

from __future__ import annotations

import os
import subprocess
import sys
import time

import pytest

from keel_testing import PYTHON, run_cli, write_flow

ESCAPER = """
from keel import FlowSpec, step

class Escaper(FlowSpec):
    @step
    def start(self):
        import os, subprocess, sys
        # a daemon: setsid and a double fork, then a long sleep; its pid goes to a file
        code = ("import os,sys,time\\n"
                "if os.fork(): os._exit(0)\\n"
                "os.setsid()\\n"
                "if os.fork(): os._exit(0)\\n"
                "open(sys.argv[1], 'w').write(str(os.getpid()))\\n"
                "time.sleep(600)\\n")
        subprocess.run([sys.executable, "-c", code, os.environ["PID_FILE"]], check=True)
        while not os.path.exists(os.environ["PID_FILE"]) or not open(os.environ["PID_FILE"]).read():
            pass
        self.next(self.end)

    @step
    def end(self):
        pass

if __name__ == "__main__":
    Escaper()
"""

CHATTY = """
from keel import FlowSpec, step

class Chatty(FlowSpec):
    @step
    def start(self):
        for i in range(20000):
            print("line", i)
        self.next(self.end)

    @step
    def end(self):
        self.done = True
        print("the end")

if __name__ == "__main__":
    Chatty()
"""


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as fh:
            return fh.read().split(") ")[1][0] != "Z"
    except FileNotFoundError:
        return False


def _gone_within(pid: int, seconds: float) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if not _alive(pid):
            return True
        time.sleep(0.05)
    return False


def test_a_double_forked_daemon_dies_with_its_task(tmp_path, keel_home):
    flow = write_flow(tmp_path, "escaper", ESCAPER)
    pid_file = tmp_path / "daemon.pid"
    done = run_cli(str(flow), "run", cwd=tmp_path, env={"PID_FILE": str(pid_file)})
    assert done.returncode == 0, done.stderr
    pid = int(pid_file.read_text())
    try:
        assert _gone_within(pid, 60), "the daemon outlived its task"
    finally:
        if _alive(pid):
            os.kill(pid, 9)


def test_a_daemon_of_a_project_shell_job_dies_with_the_job(tmp_path, keel_home):
    (tmp_path / "daemon.py").write_text(
        "import os,sys,time\nif os.fork(): os._exit(0)\nos.setsid()\nif os.fork(): os._exit(0)\n"
        "open('daemon.pid','w').write(str(os.getpid()))\ntime.sleep(600)\n")
    (tmp_path / "keel.yaml").write_text(
        f"name: leaky\njobs:\n  - name: start\n    entrypoint: {sys.executable} daemon.py && sleep 0.5\n")
    done = run_cli("project", "run", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    pid = int((tmp_path / "daemon.pid").read_text())
    try:
        assert _gone_within(pid, 60), "the daemon outlived its job"
    finally:
        if _alive(pid):
            os.kill(pid, 9)


def test_a_reader_that_goes_away_does_not_fail_the_run(tmp_path, keel_home):
    flow = write_flow(tmp_path, "chatty", CHATTY)
    proc = subprocess.Popen([PYTHON, str(flow), "run"], cwd=tmp_path, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    assert proc.stdout is not None
    proc.stdout.readline()  # `| head -1`
    proc.stdout.close()
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 0, err
    assert "BrokenPipe" not in err and "Traceback" not in err
    from keel import Run

    assert Run("Chatty/1").successful and Run("Chatty/1").data.done


def test_a_closed_stdout_does_not_fail_the_run(tmp_path, keel_home):
    flow = write_flow(tmp_path, "chatty", CHATTY)
    done = subprocess.run(f"{PYTHON} {flow} run >&-", shell=True, cwd=tmp_path, capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 0, done.stderr
    assert "Traceback" not in done.stderr
    from keel import Run

    assert Run("Chatty/1").successful
    assert "the end" in Run("Chatty/1")["end"].task.stdout


KILLED = """
from keel import FlowSpec, step

class Killed(FlowSpec):
    @step
    def start(self):
        import os, subprocess, sys, time
        # a daemon (double fork, setsid) whose pid goes to a file; then this task waits to be killed -9
        code = ("import os,sys,time\\n"
                "if os.fork(): os._exit(0)\\n"
                "os.setsid()\\n"
                "if os.fork(): os._exit(0)\\n"
                "open(sys.argv[1] + '.tmp', 'w').write(str(os.getpid()))\\n"
                "os.rename(sys.argv[1] + '.tmp', sys.argv[1])\\n"
                "time.sleep(600)\\n")
        subprocess.run([sys.executable, "-c", code, os.environ["PID_FILE"]], check=True)
        with open(os.environ["PID_FILE"] + ".task", "w") as fh:
            fh.write(str(os.getpid()))
        time.sleep(600)
        self.next(self.end)

    @step
    def end(self):
        pass

if __name__ == "__main__":
    Killed()
"""


def _wait_for_file(path, proc, seconds: float = 60) -> int:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if path.exists() and path.read_text():
            return int(path.read_text())
        assert proc.poll() is None, proc.communicate()
        time.sleep(0.05)
    raise AssertionError(f"{path} was not written")


def test_a_daemon_dies_when_its_task_is_killed_from_outside(tmp_path, keel_home):
    flow = write_flow(tmp_path, "killed", KILLED)
    pid_file = tmp_path / "daemon.pid"
    env = {**os.environ, "PID_FILE": str(pid_file)}
    proc = subprocess.Popen([PYTHON, str(flow), "run"], cwd=tmp_path, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    daemon = None
    try:
        daemon = _wait_for_file(pid_file, proc)
        task = _wait_for_file(tmp_path / "daemon.pid.task", proc)
        os.kill(task, 9)  # a user's kill -9 of the task, not Keel's
        _, err = proc.communicate(timeout=120)
        assert proc.returncode == 1 and "Traceback" not in err.split("[keel]")[0]
        assert _gone_within(daemon, 60), "the daemon outlived its task, killed from outside"
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
        if daemon is not None and _alive(daemon):
            os.kill(daemon, 9)


FULL_DISK = """
import os
from keel import FlowSpec, current, step

class FullDisk(FlowSpec):
    @step
    def start(self):
        # this task's log file is the "full disk" before its first line: every write of it fails (ENOSPC)
        log = os.path.join(os.environ["KEEL_HOME"], "logs", current.flow_name, str(current.run_id), "start",
                           f"{current.task_id}.stdout")
        os.makedirs(os.path.dirname(log), exist_ok=True)
        os.symlink("/dev/full", log)
        for i in range(100):
            print("line", i)
        self.answer = 42
        self.next(self.end)

    @step
    def end(self):
        print("the end")

if __name__ == "__main__":
    FullDisk()
"""


@pytest.mark.skipif(not os.path.exists("/dev/full"), reason="needs /dev/full")
def test_a_log_that_cannot_be_written_is_recorded_with_the_task(tmp_path, keel_home):
    flow = write_flow(tmp_path, "fulldisk", FULL_DISK)
    done = run_cli(str(flow), "run", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert done.stdout.count("logs cannot be written") + done.stderr.count("logs cannot be written") == 1
    from keel import Run
    from keel.store import Store

    run = Run("FullDisk/1")
    assert run.successful and run["start"].task.data.answer == 42  # the result is kept
    events = Store.from_env().metadata.events.read(flow="FullDisk", run_id=1, limit=None, kinds=("task.log_lost",))
    # from the first failed write on, the run keeps no more output: every task that printed says so
    assert [(e.step, e.task_id) for e in events] == [("start", run["start"].task.id), ("end", run["end"].task.id)]
    assert "No space left on device" in events[0].detail["error"]
    shown = run_cli("show", "FullDisk/1", cwd=tmp_path)
    assert shown.returncode == 0, shown.stderr
    assert "its log misses output that could not be written: No space left on device" in " ".join(shown.stdout.split())
