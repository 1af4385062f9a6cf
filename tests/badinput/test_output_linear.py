"""A task's output is handled in linear time: a huge line without a newline, and progress bars
that redraw with \\r, cost in proportion to their size (the console once re-joined the held
part of a line with every chunk)."""

from __future__ import annotations

import pytest
import io
import sys
import time

from keel.runtime.console import RunConsole

CHUNK = 65536  # what a pipe read gives


def _feed(total: int, piece: str = "x") -> float:
    console = RunConsole("F", 1, ["start"], stream=io.StringIO(), live=False, quiet=True)
    chunk = piece * (CHUNK // len(piece))
    out, sys.stdout = sys.stdout, io.StringIO()
    try:
        started = time.process_time()   # CPU time: other processes on a loaded machine do not count
        for _ in range(total // CHUNK):
            console.output("F/1/start/1", chunk)
        console.output("F/1/start/1", "\n")
        elapsed = time.process_time() - started
        printed = sys.stdout.getvalue()
    finally:
        sys.stdout = out
    assert printed.count(piece) == total // CHUNK * (CHUNK // len(piece))
    return elapsed


def test_a_line_without_newline_costs_linear_time():
    small, large = _feed(5 << 20), _feed(20 << 20)
    # quadratic would be 16x; linear is about 4x. A generous bound for a loaded machine.
    assert large < max(small * 9, 0.5), (small, large)


@pytest.mark.serial  # a wall-time bound that is part of the behaviour: run alone
def test_a_50_mb_line_is_printed_whole_and_fast():
    console = RunConsole("F", 1, ["start"], stream=io.StringIO(), live=False, quiet=True)
    out, sys.stdout = sys.stdout, io.StringIO()
    try:
        started = time.process_time()   # CPU time: other processes on a loaded machine do not count
        for _ in range((50 << 20) // CHUNK):
            console.output("F/1/start/1", "x" * CHUNK)
        console.output("F/1/start/1", "end\n")
        elapsed = time.process_time() - started
        printed = sys.stdout.getvalue()
    finally:
        sys.stdout = out
    assert printed.count("x") == 50 << 20 and printed.rstrip().endswith("end")
    assert elapsed < 10, elapsed  # 14.6 s (wall) when it was quadratic


def test_a_progress_bar_shows_its_latest_state():
    console = RunConsole("F", 1, ["start"], stream=io.StringIO(), live=False, quiet=True)
    out, sys.stdout = sys.stdout, io.StringIO()
    try:
        for i in range(1000):
            console.output("F/1/start/1", f"\r{i / 10:.1f}%")
        console.output("F/1/start/1", "\rdone\n")
        printed = sys.stdout.getvalue()
    finally:
        sys.stdout = out
    assert printed == "[F/1/start/1] done\n"


def test_a_run_without_a_terminal_prints_progress_for_a_long_step(tmp_path, keel_home):
    from keel_testing import run_cli, write_flow

    path = write_flow(tmp_path, "slow_flow", """
        import time
        from keel import FlowSpec, step

        class SlowFlow(FlowSpec):
            @step
            def start(self):
                time.sleep(3)  # the long step (its work), not a wait for a condition
                self.next(self.end)

            @step
            def end(self):
                pass
        """)
    proc = run_cli("run", str(path), cwd=tmp_path, env={"KEEL_PROGRESS_SECONDS": "1"})
    assert proc.returncode == 0, proc.stderr
    assert "start: 1 running, 0 done, for " in proc.stderr, proc.stderr
