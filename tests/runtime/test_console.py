"""RunConsole: plain lines for pipes, a live view for terminals, task output line by line."""

from __future__ import annotations

import io
import re
import threading
import time
from datetime import datetime

import pytest
from rich.console import Console

from keel.runtime import console as console_module
from keel.runtime.console import RunConsole

STEPS = ["start", "part", "join", "end"]
TS = "2026-11-21 09:01:02.123"


class FakeClock:
    def __init__(self):
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock(monkeypatch):
    fake = FakeClock()
    monkeypatch.setattr(console_module, "_clock", fake)
    monkeypatch.setattr(console_module, "_now", lambda: datetime(2026, 11, 21, 9, 1, 2, 123456))
    return fake


def visible(text: str) -> str:
    """What a terminal shows of ``text``, colours and cursor moves left out."""
    return re.sub(r"\x1b\[[0-9;?]*[A-Za-z]", "", text)


class TTYBuffer(io.StringIO):
    def isatty(self) -> bool:
        return True


def run_bigsum(con: RunConsole, clock: FakeClock) -> None:
    con.message("Run BigSum/3 started")
    con.tasks_created("start", 1)
    con.task_started("start", 1)
    clock.now += 0.25
    con.task_finished("start", 1, "succeeded")
    con.tasks_created("part", 100)
    for task_id in range(2, 102):
        con.task_started("part", task_id)
    clock.now += 0.8
    for task_id in range(2, 102):
        con.task_finished("part", task_id, "succeeded")
    con.tasks_created("join", 1)
    con.task_started("join", 102)
    con.task_finished("join", 102, "retrying")
    con.task_started("join", 102, attempt=1)
    clock.now += 75
    con.task_finished("join", 102, "failed")
    con.close("failed")


def test_plain_mode_lines(clock):
    status = io.StringIO()
    run_bigsum(RunConsole("BigSum", 3, STEPS, stream=status), clock)
    assert status.getvalue().splitlines() == [
        f"{TS} Run BigSum/3 started",
        f"{TS} start: starting 1 task",
        f"{TS} start: 1 task done in 0.2s",
        f"{TS} part: starting 100 tasks",
        f"{TS} part: 100 tasks done in 0.8s",
        f"{TS} join: starting 1 task",
        f"{TS} [BigSum/3/join/102] failed; retrying",
        f"{TS} [BigSum/3/join/102] failed (attempt 2)",
        f"{TS} join: 0 tasks done, 1 failed in 1m15s",
        f"{TS} start: 1 done",
        f"{TS} part: 100 done",
        f"{TS} join: 0 done, 1 failed",
        f"{TS} end: not run",
    ]


def test_plain_mode_caught_tasks_and_unknown_totals(clock):
    status = io.StringIO()
    con = RunConsole("F", 1, ["a"], stream=status)
    con.task_started("a", 1)
    con.task_finished("a", 1, "caught")
    con.task_started("a", 2)  # no tasks_created: the step completes only in the summary
    con.close("succeeded")
    assert status.getvalue().splitlines() == [
        f"{TS} a: starting",
        f"{TS} [F/1/a/1] failed; @catch kept the error, the run goes on",
        f"{TS} a: 1 done (1 caught), 1 running",
    ]


def test_quiet_keeps_messages_failures_and_output(clock, capsys):
    status = io.StringIO()
    con = RunConsole("F", 1, ["a"], stream=status, quiet=True)
    con.message("Run F/1 started")
    con.tasks_created("a", 2)
    con.task_started("a", 1)
    con.task_started("a", 2)
    con.output("F/1/a/1", "hi\n")
    con.task_finished("a", 1, "succeeded")
    con.task_finished("a", 2, "failed")
    con.close("failed")
    assert status.getvalue().splitlines() == [f"{TS} Run F/1 started", f"{TS} [F/1/a/2] failed"]
    assert capsys.readouterr().out == "[F/1/a/1] hi\n"


def test_unknown_status_is_refused():
    con = RunConsole("F", 1, ["a"], stream=io.StringIO())
    con.task_started("a", 1)
    with pytest.raises(ValueError, match="unknown status 'done'"):
        con.task_finished("a", 1, "done")


def test_output_lines_are_prefixed_and_partial_lines_wait(capsys):
    con = RunConsole("BigSum", 3, STEPS, stream=io.StringIO())
    con.output("BigSum/3/part/7", "one\ntwo\nthr")
    assert capsys.readouterr().out == "[BigSum/3/part/7] one\n[BigSum/3/part/7] two\n"
    con.output("BigSum/3/part/8", "other task\n")  # another task's line is not held up
    con.output("BigSum/3/part/7", "ee")
    assert capsys.readouterr().out == "[BigSum/3/part/8] other task\n"
    con.output("BigSum/3/part/7", "\n\nlast, no newline")
    assert capsys.readouterr().out == "[BigSum/3/part/7] three\n[BigSum/3/part/7] \n"
    con.output("BigSum/3/part/7", "")
    con.flush_output("BigSum/3/part/7")
    con.flush_output("BigSum/3/part/7")  # nothing left: prints nothing
    assert capsys.readouterr().out == "[BigSum/3/part/7] last, no newline\n"


def test_stderr_lines_go_to_stderr_and_are_buffered_apart(capsys):
    con = RunConsole("BigSum", 3, STEPS, stream=io.StringIO())
    con.output("BigSum/3/part/7", "out-part")
    con.output("BigSum/3/part/7", "Traceback (most recent call last):\n  File", stderr=True)
    con.output("BigSum/3/part/7", "-end\n")
    captured = capsys.readouterr()
    assert captured.out == "[BigSum/3/part/7] out-part-end\n"
    assert captured.err == "[BigSum/3/part/7] Traceback (most recent call last):\n"
    con.close("failed")  # flushes what is left of every task's lines
    assert capsys.readouterr().err == "[BigSum/3/part/7]   File\n"


def test_auto_mode_is_plain_on_a_pipe_and_live_on_a_terminal(clock):
    assert RunConsole("F", 1, ["a"], stream=io.StringIO())._live is None
    tty = TTYBuffer()
    con = RunConsole("F", 1, ["a"], stream=tty)
    assert con._live is not None
    con.close("succeeded")
    assert "F/1" in tty.getvalue()


def test_live_view_shows_steps_and_counts_and_starts_no_thread(clock, capsys):
    threads = threading.active_count()
    out = io.StringIO()
    con = RunConsole(
        "BigSum", 3, STEPS, console=Console(file=out, force_terminal=True, width=120)
    )
    con.tasks_created("start", 1)
    con.task_started("start", 1)
    con.task_finished("start", 1, "succeeded")
    con.tasks_created("part", 100)
    for task_id in range(2, 102):
        con.task_started("part", task_id)
    for task_id in range(2, 62):
        con.task_finished("part", task_id, "succeeded")
    con.task_finished("part", 70, "failed")
    clock.now += 1
    con.refresh()
    assert threading.active_count() == threads
    view = visible(out.getvalue())
    for text in ("BigSum/3", "start", "part", "join", "end", "1/1", "61/100", "39 running",
                 "1 failed", "[BigSum/3/part/70] failed"):
        assert text in view, text
    con.close("failed")
    assert "BigSum/3 failed" in visible(out.getvalue())
    assert threading.active_count() == threads
    assert capsys.readouterr().out == ""


def test_live_view_redraws_at_most_ten_times_a_second(clock):
    out = io.StringIO()
    con = RunConsole("F", 1, ["a"], console=Console(file=out, force_terminal=True, width=100))
    con.tasks_created("a", 10_000)
    drawn = len(out.getvalue())
    for task_id in range(10_000):  # the clock stands still: no redraw is due
        con.task_started("a", task_id)
        con.task_finished("a", task_id, "succeeded")
    assert len(out.getvalue()) == drawn
    clock.now += 0.1
    con.refresh()
    assert "10000/10000" in out.getvalue()
    con.close("succeeded")


def test_live_view_prints_terminal_output_above_it_in_batches(clock, monkeypatch):
    terminal = TTYBuffer()
    monkeypatch.setattr("sys.stdout", terminal)
    out = io.StringIO()
    con = RunConsole("F", 1, ["a"], console=Console(file=out, force_terminal=True, width=100))
    con.output("F/1/a/1", "first\n")  # no redraw due yet: held
    con.output("F/1/a/1", "second\n")
    assert "first" not in out.getvalue()
    clock.now += 0.1
    con.refresh()
    assert "[F/1/a/1] first" in out.getvalue() and "[F/1/a/1] second" in out.getvalue()
    con.output("F/1/a/1", "third\n")
    con.close("succeeded")
    assert "[F/1/a/1] third" in out.getvalue()
    assert terminal.getvalue() == ""


def test_plain_mode_costs_microseconds_per_task():
    con = RunConsole("F", 1, ["a"], stream=io.StringIO())
    n = 20_000
    con.tasks_created("a", n)
    started = time.process_time()   # CPU time: other processes on a loaded machine do not count
    for task_id in range(n):
        con.task_started("a", task_id)
        con.task_finished("a", task_id, "succeeded")
    per_task = (time.process_time() - started) / n
    assert per_task < 50e-6, f"{per_task * 1e6:.1f} µs per task"
