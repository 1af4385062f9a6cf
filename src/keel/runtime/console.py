"""What a run shows while it runs: progress per step, failures, and the tasks' output.

The scheduler calls a :class:`RunConsole` as things happen; the console never calls back
and starts no thread (the scheduler forks task processes, and threads do not survive a
fork safely). So the live view is redrawn by those calls, at most ~10 times a second, and
by :meth:`RunConsole.refresh`, which the scheduler calls when it has waited a while with
nothing to report.

Two modes, chosen from the status stream (``sys.stderr`` by default):

* **live** (a terminal): one line per step (bar, ``done/total``, running, failed), drawn with
  ``rich.live.Live(auto_refresh=False)``; task output and failures are printed above it.
* **plain** (a pipe or a file): a line when a step starts and when it completes, failures
  and retries at once, and a summary at the end. Nothing is printed per task otherwise, so
  ``task_started``/``task_finished`` cost a few microseconds::

      2026-11-21 09:01:02.123 part: starting 100 tasks
      2026-11-21 09:01:02.923 part: 100 tasks done in 0.8s

Task output always goes to ``sys.stdout`` / ``sys.stderr`` line by line, each line prefixed
with the task's pathspec: ``[BigSum/3/part/7] line``.
"""

from __future__ import annotations

import os
import sys
import time
from datetime import datetime
from typing import IO, TYPE_CHECKING, Any

if TYPE_CHECKING:
    from rich.console import Console, RenderableType

__all__ = ["RunConsole"]

_REFRESH_INTERVAL = 0.1  # seconds between redraws of the live view
_STATUSES = ("succeeded", "failed", "retrying", "caught", "interrupted")

_clock = time.monotonic  # replaced in tests


def _progress_interval() -> float:
    from keel.settings import Settings

    return max(1.0, Settings.from_env().progress_seconds)
_now = datetime.now  # replaced in tests


def _timestamp() -> str:
    return _now().strftime("%Y-%m-%d %H:%M:%S.%f")[:-3]


def _plural(n: int, word: str) -> str:
    return f"{n} {word}" if n == 1 else f"{n} {word}s"


def _duration(seconds: float) -> str:
    if seconds < 60:
        return f"{seconds:.1f}s"
    minutes, secs = divmod(int(seconds), 60)
    if minutes < 60:
        return f"{minutes}m{secs:02d}s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h{minutes:02d}m"


class _StepState:
    __slots__ = (
        "name", "total", "running", "done", "failed", "caught", "retries", "interrupted",
        "first_start", "last_finish", "announced", "completed",
    )

    def __init__(self, name: str):
        self.name = name
        self.total: int | None = None  # known once the scheduler has created the tasks
        self.running = 0
        self.done = 0  # succeeded or caught
        self.failed = 0  # failed for good
        self.caught = 0
        self.retries = 0
        self.interrupted = 0
        self.first_start: float | None = None
        self.last_finish: float | None = None
        self.announced = False
        self.completed = False

    def is_complete(self) -> bool:
        return (
            self.total is not None and self.running == 0
            and self.done + self.failed >= self.total
        )


_MAX_HELD = 1 << 20  # characters of an unfinished line held back before it is printed anyway


class RunConsole:
    """The console of one run. Every method is cheap and safe to call 10,000s of times.

    ``steps`` in graph order. ``stream`` is where status goes (default ``sys.stderr``);
    ``live=None`` picks the live view when ``stream`` is a terminal. ``console`` (a
    ``rich.console.Console``) draws the live view somewhere else, e.g. into a buffer.
    ``quiet`` drops the progress lines, the summary and the live view, and keeps the
    scheduler's messages, failures and the tasks' output.

    Use it as a context manager, or call :meth:`close` at the end: the live view hides the
    cursor until it is stopped.
    """

    def __init__(
        self, flow: str, run_id: int, steps: list[str], *, stream: IO[str] | None = None,
        live: bool | None = None, quiet: bool = False, console: Console | None = None,
    ):
        self.flow = flow
        self.run_id = run_id
        self._prefix = f"{flow}/{run_id}"
        self._stream = stream if stream is not None else sys.stderr
        self._quiet = quiet
        self._steps = {name: _StepState(name) for name in steps}
        self._attempts: dict[tuple[str, int], int] = {}
        # a task's unfinished last line, as chunks (joined once, when its newline comes: linear)
        self._partial: dict[tuple[str, bool], list[str]] = {}
        self._held_size: dict[tuple[str, bool], int] = {}
        self._closed = False
        if live is None:
            live = console is not None or _isatty(self._stream)
        self._live: Any = None
        self._pending: list[tuple[str, bool]] = []  # output lines waiting for the next redraw
        self._next_refresh = 0.0
        self._next_progress = _clock() + _progress_interval()
        self._status = "running"
        if live and not quiet:
            self._start_live(console)

    # -- the scheduler's calls

    def message(self, text: str) -> None:
        """Print one line of the scheduler's own, e.g. ``Run BigSum/3 started``."""
        if self._live is not None:
            self._flush_pending()
            self._live.console.print(f"[dim]{_timestamp()}[/] {_escape(text)}", highlight=False)
            self._redraw()
        else:
            self._stream.write(f"{_timestamp()} {text}\n")
            self._stream.flush()

    def tasks_created(self, step: str, n: int) -> None:
        """The scheduler created ``n`` (more) tasks of ``step``; totals add up over calls."""
        state = self._state(step)
        state.total = (state.total or 0) + n
        self._changed()

    def task_started(self, step: str, task_id: int, attempt: int = 0) -> None:
        """A task (or a retry of it: ``attempt`` counts from 0) started running."""
        state = self._state(step)
        state.running += 1
        if attempt:
            self._attempts[(step, task_id)] = attempt
        if state.first_start is None:
            state.first_start = _clock()
        if not state.announced:
            state.announced = True
            if self._live is None and not self._quiet:
                count = f" {_plural(state.total, 'task')}" if state.total else ""
                self._line(f"{step}: starting{count}")
        self._changed()

    def task_finished(self, step: str, task_id: int, status: str) -> None:
        """A task ended: ``succeeded``, ``failed`` (for good), ``retrying`` or ``caught``."""
        state = self._state(step)
        state.running -= 1
        state.last_finish = _clock()
        if status == "succeeded":
            state.done += 1
        elif status in _STATUSES:
            self._report_failure(state, task_id, status)
        else:
            raise ValueError(f"task_finished: unknown status {status!r}; expected one of {_STATUSES}")
        if not state.completed and state.is_complete():
            state.completed = True
            if self._live is None and not self._quiet:
                self._line(f"{step}: {self._outcome(state)} in {_duration(self._elapsed(state))}")
        self._changed()

    def output(self, pathspec: str, text: str, *, stderr: bool = False) -> None:
        """A chunk of a task's stdout (or stderr): print its complete lines, keep the rest.

        Lines go to ``sys.stdout`` / ``sys.stderr`` as ``[Flow/run/step/task] line``.
        """
        if not text:
            return
        key = (pathspec, stderr)
        end = text.rfind("\n")
        if end < 0:  # no line ends in this chunk: hold it, in O(len(text))
            held = self._partial.setdefault(key, [])
            cr = text.rstrip("\r").rfind("\r")
            if cr >= 0 or (held and held[-1].endswith("\r")):  # a progress bar redrawn with \r:
                held.clear()                                     # only its latest state is shown
                text = text[cr + 1:]
            held.append(text)
            size = self._held_size[key] = (self._held_size.get(key, 0) if len(held) > 1 else 0) + len(text)
            if size > _MAX_HELD:  # a huge line: print it in pieces, memory stays bounded
                text = "".join(held) + "\n"
                held.clear()
            else:
                return
        else:
            held_chunks = self._partial.pop(key, None)
            rest = text[end + 1:]
            text = text[: end + 1]
            first = text.find("\n")
            cr = text.rfind("\r", 0, first - 1 if text[first - 1:first] == "\r" else first)
            if cr >= 0 or (held_chunks and held_chunks[-1].endswith("\r")):  # the bar's last state ends the line
                held_chunks = None
                text = text[cr + 1:]
            if held_chunks:
                held_chunks.append(text)
                text = "".join(held_chunks)
            if rest:
                self._partial[key] = [rest]
        prefix = f"[{pathspec}] "
        if text.find("\n") == len(text) - 1:
            lines = prefix + text
        else:
            lines = prefix + text[:-1].replace("\n", "\n" + prefix) + "\n"
        if self._live is None:
            (sys.stderr if stderr else sys.stdout).write(lines)
        else:
            self._emit(lines, stderr)

    def flush_output(self, pathspec: str) -> None:
        """The task has ended: print what is left of its last line, if anything."""
        for stderr in (False, True):
            held = "".join(self._partial.pop((pathspec, stderr), []))
            if held:
                self._emit(f"[{pathspec}] {held}\n", stderr)

    def refresh(self) -> None:
        """Redraw the live view if it is due; call it when waiting with nothing to report."""
        self._changed()

    def close(self, status: str) -> None:
        """The run ended with ``status``: print a summary line per step, stop the live view."""
        if self._closed:
            return
        self._closed = True
        self._status = status
        for pathspec, _ in list(self._partial):
            self.flush_output(pathspec)
        if self._live is not None:
            self._flush_pending()
            self._live.update(self._render())
            self._live.stop()  # draws the final view, which stays as the summary
            self._live = None
            return
        if self._quiet:
            return
        for state in self._steps.values():
            if state.first_start is None:
                self._line(f"{state.name}: not run")
                continue
            summary = f"{state.name}: {state.done} done"
            if state.caught:
                summary += f" ({state.caught} caught)"
            if state.failed:
                summary += f", {state.failed} failed"
            if state.running:
                summary += f", {state.running} running"
            self._line(summary)

    def __enter__(self) -> RunConsole:
        return self

    def __exit__(self, exc_type: Any, exc: Any, tb: Any) -> None:
        self.close("succeeded" if exc_type is None else "failed")

    # -- bookkeeping

    def _state(self, step: str) -> _StepState:
        state = self._steps.get(step)
        if state is None:  # a step the graph did not list: show it rather than fail the run
            state = self._steps[step] = _StepState(step)
        return state

    def _report_failure(self, state: _StepState, task_id: int, status: str) -> None:
        attempt = self._attempts.pop((state.name, task_id), 0)
        pathspec = f"{self._prefix}/{state.name}/{task_id}"
        tries = f" (attempt {attempt + 1})" if attempt else ""
        if status == "retrying":
            state.retries += 1
            self._failure_line(f"[{pathspec}] failed{tries}; retrying")
        elif status == "interrupted":
            state.interrupted += 1
        elif status == "caught":
            state.done += 1
            state.caught += 1
            self._failure_line(f"[{pathspec}] failed{tries}; @catch kept the error, the run goes on")
        else:
            state.failed += 1
            self._failure_line(f"[{pathspec}] failed{tries}")

    @staticmethod
    def _outcome(state: _StepState) -> str:
        text = f"{_plural(state.done, 'task')} done"
        if state.caught:
            text += f" ({state.caught} caught)"
        if state.failed:
            text += f", {state.failed} failed"
        if state.interrupted:
            text += f", {state.interrupted} interrupted"
        return text

    @staticmethod
    def _elapsed(state: _StepState) -> float:
        if state.first_start is None:
            return 0.0
        end = state.last_finish if state.completed and state.last_finish else _clock()
        return max(0.0, end - state.first_start)

    # -- printing

    def _line(self, text: str) -> None:
        self._stream.write(f"{_timestamp()} {text}\n")
        self._stream.flush()

    def _failure_line(self, text: str) -> None:
        if self._live is not None:
            self._flush_pending()
            self._live.console.print(f"[red]{_escape(text)}[/]", highlight=False)
            self._next_refresh = 0.0  # redraw now: a failure should be seen at once
        else:
            self._stream.write(f"{_timestamp()} {text}\n")
            self._stream.flush()

    def _emit(self, lines: str, stderr: bool) -> None:
        target = sys.stderr if stderr else sys.stdout
        if self._live is not None and _isatty(target):
            # Every print above a live region redraws it; batch lines until the next redraw.
            self._pending.append((lines, stderr))
            self._changed()
        else:
            target.write(lines)

    # -- the live view

    def _start_live(self, console: Console | None) -> None:
        from rich.console import Console
        from rich.live import Live

        if console is None:
            console = Console(file=self._stream)
        self._live = Live(
            self._render(), console=console, auto_refresh=False, transient=False,
            redirect_stdout=False, redirect_stderr=False,
        )
        self._live.start(refresh=True)
        self._next_refresh = _clock() + _REFRESH_INTERVAL

    def _changed(self) -> None:
        if self._live is None:
            self._progress()
            return
        now = _clock()
        if now >= self._next_refresh:
            self._next_refresh = now + _REFRESH_INTERVAL
            self._redraw()

    def _progress(self) -> None:
        """Without a live view (a pipe, a CI log): a line per running step every
        ``KEEL_PROGRESS_SECONDS`` (default 30), so a long step is not mistaken for a hung one."""
        if self._quiet or self._closed:
            return
        now = _clock()
        if now < self._next_progress:
            return
        self._next_progress = now + _progress_interval()
        for state in self._steps.values():
            if state.running and not state.completed and state.first_start is not None:
                total = f" of {state.total}" if state.total else ""
                self._line(f"{state.name}: {state.running} running, {state.done}{total} done, "
                           f"for {_duration(self._elapsed(state))}")

    def _redraw(self) -> None:
        self._flush_pending()
        self._live.update(self._render(), refresh=True)

    def _flush_pending(self) -> None:
        if not self._pending:
            return
        from rich.text import Text

        text = Text()
        for lines, stderr in self._pending:
            text.append(lines, style="red" if stderr else None)
        self._pending.clear()
        text.rstrip()
        self._live.console.print(text, soft_wrap=True, highlight=False)

    def _render(self) -> RenderableType:
        from rich.console import Group
        from rich.progress_bar import ProgressBar
        from rich.table import Table
        from rich.text import Text

        grid = Table.grid(padding=(0, 1))
        for _ in range(6):
            grid.add_column(no_wrap=True)
        width = max((len(name) for name in self._steps), default=4)
        for state in self._steps.values():
            finished = state.done + state.failed
            total = state.total
            if total:
                bar_total: float | None = float(total)
                completed = float(finished)
            else:  # unknown: pulse while running, else an empty bar (a full one for 0 tasks)
                bar_total = None if state.running else 1.0
                completed = 1.0 if total == 0 else 0.0
            bar = ProgressBar(
                total=bar_total, completed=completed, width=24,
                style="bar.back",
                complete_style="red" if state.failed else "green" if state.completed else "bar.complete",
                finished_style="red" if state.failed else "green",
            )
            grid.add_row(
                Text(state.name.ljust(width), style="bold"),
                bar,
                Text(f"{finished}/{total if total is not None else '?'}"),
                Text(f"{state.running} running" if state.running else "", style="cyan"),
                Text(f"{state.failed} failed" if state.failed else "", style="red"),
                Text(_duration(self._elapsed(state)) if state.first_start is not None else "",
                     style="dim"),
            )
        title = Text(f"{self._prefix}", style="bold")
        if self._status != "running":
            title.append(f" {self._status}", style="green" if self._status == "succeeded" else "red")
        return Group(title, grid)


class _SideChannel:
    """``sys.stdout``/``sys.stderr`` during a run: the run's output is a side channel, so a reader
    that went away (``| head -1``: EPIPE), a closed or failing stream stops the printing, never
    the run. The dead stream's descriptor is pointed at /dev/null, so that nothing later (click,
    rich, the interpreter's last flush) trips over it again."""

    def __init__(self, inner: Any):
        self._inner = inner
        self.broken = False

    def _dead(self) -> None:
        self.broken = True
        try:
            fd = self._inner.fileno()
            null = os.open(os.devnull, os.O_WRONLY)
            os.dup2(null, fd)
            os.close(null)
        except (OSError, ValueError, AttributeError):
            pass

    def write(self, text: str) -> int:
        if not self.broken:
            try:
                return int(self._inner.write(text))
            except (OSError, ValueError):
                self._dead()
        return len(text)

    def flush(self) -> None:
        if not self.broken:
            try:
                self._inner.flush()
            except (OSError, ValueError):
                self._dead()

    def isatty(self) -> bool:
        try:
            return not self.broken and bool(self._inner.isatty())
        except (OSError, ValueError):
            return False

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)


def protect_streams() -> None:
    """Wrap ``sys.stdout`` and ``sys.stderr`` in :class:`_SideChannel` (once) for a run. A standard
    descriptor that was closed (``keel run flow.py >&-``) is opened on /dev/null first, so that no
    file the run opens later (the database!) gets descriptor 1 and receives its printing."""
    for fd in (0, 1, 2):
        try:
            os.fstat(fd)
        except OSError:
            null = os.open(os.devnull, os.O_RDWR)
            if null != fd:
                os.dup2(null, fd)
                os.close(null)
    for name, fd in (("stdout", 1), ("stderr", 2)):
        stream = getattr(sys, name)
        if stream is None:  # Python found the descriptor closed at start-up
            stream = open(fd, "w", encoding="utf-8", errors="backslashreplace", closefd=False)
        if not isinstance(stream, _SideChannel):
            setattr(sys, name, _SideChannel(stream))


def _isatty(stream: Any) -> bool:
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError):
        return False


def _escape(text: str) -> str:
    from rich.markup import escape

    return escape(text)
