"""@catch, @timeout, @retry and signal deaths as Metaflow has them (issue 16, items 6-9)."""

from __future__ import annotations

import time

from keel_testing import run_in_process, write_flow
from keel import Flow


def test_catch_stores_metaflows_shape_and_keeps_earlier_artifacts(keel_home, tmp_path):
    path = write_flow(tmp_path, "caught", '''
        from keel import FlowSpec, step, catch

        class Caught(FlowSpec):
            @step
            def start(self):
                self.next(self.boom)

            @catch(var="ex")
            @step
            def boom(self):
                self.before = "kept"
                1 / 0
                self.next(self.end)

            @step
            def end(self):
                self.ex_type, self.ex_text = self.ex.type, self.ex.exception
                self.stack = self.ex.stacktrace
    ''')
    assert run_in_process(path).status == "succeeded"
    run = Flow("Caught").latest_run
    assert run.data.ex_type == "builtins.ZeroDivisionError"
    assert run.data.ex_text == "division by zero"
    assert "1 / 0" in run.data.stack
    assert run.data.before == "kept"
    assert run["boom"].task.exception is None
    assert run["boom"].task.status == "caught"


def test_timeout_raises_inside_the_step_so_catch_keeps_its_artifacts(keel_home, tmp_path):
    path = write_flow(tmp_path, "slowpoke", '''
        import time
        from keel import FlowSpec, step, catch, timeout

        class Slowpoke(FlowSpec):
            @step
            def start(self):
                self.next(self.slow)

            @catch(var="ex")
            @timeout(seconds=1)
            @step
            def slow(self):
                self.progress = "halfway"
                time.sleep(300)
                self.next(self.end)

            @step
            def end(self):
                pass
    ''')
    started = time.monotonic()
    assert run_in_process(path).status == "succeeded"
    assert time.monotonic() - started < 120  # the 300 s sleep was cut (slack for a loaded machine)
    run = Flow("Slowpoke").latest_run
    assert run.data.progress == "halfway"
    assert run.data.ex.type == "keel.errors.StepTimeout"
    assert run.data.ex.exception == "step 'slow' ran longer than its @timeout of 1 seconds"


def test_timeout_kills_code_that_never_returns_to_python(keel_home, tmp_path):
    path = write_flow(tmp_path, "stuck", '''
        import signal, time
        from keel import FlowSpec, step, timeout

        class Stuck(FlowSpec):
            @step
            def start(self):
                self.next(self.stuck)

            @timeout(seconds=1)
            @step
            def stuck(self):
                signal.signal(signal.SIGALRM, signal.SIG_IGN)  # the step swallows the alarm
                time.sleep(300)
                self.next(self.end)

            @step
            def end(self):
                pass
    ''')
    started = time.monotonic()
    result = run_in_process(path)
    assert time.monotonic() - started < 120  # the 300 s sleep was cut (slack for a loaded machine)
    assert result.status == "failed"
    assert result.outcome.error["type"] == "StepTimeout"
    assert "did not stop when told, so it was killed" in result.outcome.error["message"]


def test_retry_runs_again_at_once_locally(keel_home, tmp_path):
    path = write_flow(tmp_path, "flaky", '''
        from keel import FlowSpec, step, retry, current

        class Flaky(FlowSpec):
            @step
            def start(self):
                self.next(self.flaky)

            @retry(times=3, minutes_between_retries=2)
            @step
            def flaky(self):
                if current.retry_count < 3:
                    raise RuntimeError("not yet")
                self.attempt = current.retry_count
                self.next(self.end)

            @step
            def end(self):
                pass
    ''')
    started = time.monotonic()
    assert run_in_process(path).status == "succeeded"
    assert time.monotonic() - started < 180  # not 3 x 2 minutes (slack for a loaded machine)
    assert Flow("Flaky").latest_run.data.attempt == 3


def test_a_task_killed_by_a_signal_says_so_in_its_stderr_and_catch_stores_the_catch_exception(keel_home, tmp_path):
    path = write_flow(tmp_path, "killed", '''
        import os, signal
        from keel import FlowSpec, step, catch

        class Killed(FlowSpec):
            @step
            def start(self):
                self.next(self.die)

            @catch(var="ex")
            @step
            def die(self):
                os.kill(os.getpid(), signal.SIGKILL)
                self.next(self.end)

            @step
            def end(self):
                pass
    ''')
    assert run_in_process(path).status == "succeeded"
    run = Flow("Killed").latest_run
    task = run["die"].task
    assert "[keel] the task process was killed by SIGKILL" in task.stderr
    assert run.data.ex.type == "keel.errors.FailureHandledByCatch"
    assert "killed by SIGKILL" in run.data.ex.exception


def test_a_catch_value_stored_before_the_metaflow_shape_still_loads():
    import pickle

    from keel.runtime.task import CaughtException

    old = CaughtException.__new__(CaughtException)
    old.__dict__.update(type="TaskCrashed", message="it died", traceback="")  # an earlier release's value
    value = pickle.loads(pickle.dumps(old))
    assert (value.type, value.exception, value.stacktrace, str(value)) == ("TaskCrashed", "it died", "",
                                                                           "TaskCrashed: it died")
