"""@retry, @catch, @timeout, @environment and @resources on the local runtime."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import psutil

from keel_testing import run_cli, run_in_process, write_flow
from keel import Flow

DECO = '''
    import os, time
    from keel import FlowSpec, step, retry, catch, timeout, environment, current

    class Deco(FlowSpec):
        @step
        def start(self):
            self.next(self.flaky, self.boom, self.slow)

        @retry(times=2, minutes_between_retries=0)
        @step
        def flaky(self):
            if current.retry_count < 2:
                raise RuntimeError(f"attempt {current.retry_count} fails")
            self.f = current.retry_count
            self.next(self.join)

        @catch(var="err")
        @step
        def boom(self):
            os._exit(3)
            self.next(self.join)

        @catch(var="terr")
        @timeout(seconds=1)
        @environment(vars={"MYVAR": "hello"})
        @step
        def slow(self):
            self.env = os.environ["MYVAR"]
            time.sleep(300)
            self.next(self.join)

        @step
        def join(self, inputs):
            self.f = inputs.flaky.f
            self.err = inputs.boom.err
            self.terr = inputs.slow.terr
            self.next(self.end)

        @step
        def end(self):
            pass
'''


def test_retry_catch_timeout_environment(keel_home, tmp_path):
    started = time.monotonic()
    result = run_in_process(write_flow(tmp_path, "deco", DECO))
    assert result.status == "succeeded", result.outcome
    assert time.monotonic() - started < 120  # the 300 s sleep was cut by @timeout (slack for a loaded machine)
    run = Flow("Deco").latest_run
    assert run.data.f == 2
    flaky = run["flaky"].task
    assert flaky.attempts == 3 and flaky.retry_count == 2
    assert run.data.err.type == "keel.errors.FailureHandledByCatch"  # Metaflow's name for a death
    assert str(run.data.err) == ("keel.errors.FailureHandledByCatch: task execution kept failing over 1 "
                                 "attempt(s) without a Python exception: the task process exited with status 3 "
                                 "before it finished (os._exit or sys.exit?)")
    assert str(run.data.terr) == "keel.errors.StepTimeout: step 'slow' ran longer than its @timeout of 1 seconds"
    assert run["boom"].task.status == "caught"


def test_crash_of_one_task_fails_the_run_with_its_traceback(keel_home, tmp_path):
    path = write_flow(tmp_path, "crash", '''
        from keel import FlowSpec, step

        class Crash(FlowSpec):
            @step
            def start(self):
                self.items = [1, 2, 0, 4]
                self.next(self.part, foreach="items")

            @step
            def part(self):
                self.x = 10 / self.input
                self.next(self.join)

            @step
            def join(self, inputs):
                self.next(self.end)

            @step
            def end(self):
                pass

        if __name__ == "__main__":
            Crash()
    ''')
    proc = run_cli(str(path), "run", cwd=tmp_path)
    assert proc.returncode == 1
    assert "Run Crash/1 failed at step 'part' (task 4): ZeroDivisionError: division by zero" in proc.stderr
    assert "self.x = 10 / self.input" in proc.stderr
    assert proc.stderr.rstrip().endswith("Fix it, then: python crash.py resume 1")
    assert "keel/runtime" not in proc.stderr  # only the user's frames
    run = Flow("Crash").latest_run
    assert run.status == "failed"
    assert sorted(t.status for t in run["part"]) == ["failed", "succeeded", "succeeded", "succeeded"]


def test_sigterm_stops_every_task_and_marks_the_run_interrupted(keel_home, tmp_path):
    path = write_flow(tmp_path, "sleepy", '''
        import time
        from keel import FlowSpec, step

        class Sleepy(FlowSpec):
            @step
            def start(self):
                self.items = list(range(4))
                self.next(self.part, foreach="items")

            @step
            def part(self):
                time.sleep(120)
                self.next(self.join)

            @step
            def join(self, inputs):
                self.next(self.end)

            @step
            def end(self):
                pass

        if __name__ == "__main__":
            Sleepy()
    ''')
    proc = subprocess.Popen([sys.executable, str(path), "run"], cwd=tmp_path, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)
    parent = psutil.Process(proc.pid)
    deadline = time.monotonic() + 120  # generous: a loaded machine is slow to start processes
    while len(parent.children()) < 4:
        assert time.monotonic() < deadline, "tasks did not start"
        time.sleep(0.05)
    children = parent.children(recursive=True)
    proc.send_signal(signal.SIGTERM)
    out, _ = proc.communicate(timeout=30)
    assert proc.returncode == 130, out
    gone, alive = psutil.wait_procs(children, timeout=60)
    assert not alive
    assert "Run Sleepy/1 was interrupted. To finish it: python sleepy.py resume 1" in out
    assert Flow("Sleepy").latest_run.status == "interrupted"


RESOURCES = '''
    import os, time
    from keel import FlowSpec, step, resources

    class Budget(FlowSpec):
        @step
        def start(self):
            self.items = list(range(4))
            self.next(self.part, foreach="items")

        @resources(cpu={cpu})
        @step
        def part(self):
            self.span = (time.time(), time.sleep(0.4), time.time())
            self.next(self.join)

        @step
        def join(self, inputs):
            spans = sorted((i.span[0], i.span[2]) for i in inputs)
            # the largest number of tasks that ran at the same moment
            self.overlap = max(sum(1 for a, b in spans if a <= t < b) for t, _ in spans)
            self.next(self.end)

        @step
        def end(self):
            pass
'''


def test_resources_is_a_budget(keel_home, tmp_path):
    cores = os.cpu_count() or 1
    path = write_flow(tmp_path, "budget", RESOURCES.replace("{cpu}", str(cores)))
    assert run_in_process(path).status == "succeeded"
    assert Flow("Budget").latest_run.data.overlap == 1  # each task takes every core


def test_resources_above_the_machine_are_refused_before_the_run(keel_home, tmp_path):
    path = write_flow(tmp_path, "huge", RESOURCES.replace("{cpu}", "4096"))
    proc = run_cli("run", str(path), cwd=tmp_path)
    assert proc.returncode == 1
    line = [ln for ln in proc.stderr.splitlines() if "asks for" in ln][0]
    cores = os.cpu_count()
    assert line.endswith(f"huge.py:10: step 'part' asks for @resources(cpu=4096) but this machine has {cores} "
                         f"cores. Lower it, or run the step on a cluster with --with ray")
    assert not (keel_home / "metadata.db").exists() or Flow("Budget").latest_run is None
