"""The small interface between the scheduler and wherever tasks run.

The scheduler submits ready tasks, waits for the first ones to finish, records them, and
repeats. It never knows whether a task ran in a local process, on Ray or on Kubernetes.
"""

from __future__ import annotations

import signal as _signal
from dataclasses import dataclass
from typing import Callable, Protocol

from keel.runtime.task import TaskResult, TaskSpec

# (task spec, "stdout" | "stderr", bytes) — a chunk of a task's output as it is written.
OutputSink = Callable[[TaskSpec, str, bytes], None]


@dataclass
class Outcome:
    """How one attempt ended. ``result`` is the task's own report, or None if it died first."""

    spec: TaskSpec
    result: TaskResult | None
    exit_code: int | None = None
    signal: int | None = None
    reason: str | None = None       # the executor's words when there is no result
    node: str | None = None         # where it ran (hostname, Ray node id, pod)


def signal_name(sig: int) -> str:
    """``SIGSEGV`` for 11; ``signal 77`` for a number with no name."""
    try:
        return _signal.Signals(sig).name
    except ValueError:
        return f"signal {sig}"


def record_ending(on_output: OutputSink, outcome: Outcome, words: str | None = None) -> Outcome:
    """Say in the task's own stderr log why an attempt ended when no Python exception says it: it
    died of a signal (SIGSEGV, SIGKILL, the OOM killer), or a step ended without a result (``os._exit``,
    a lost Ray worker or pod); not a shell job that exited with a status. ``words``: the executor's own (default: ``outcome.reason``, else the
    signal). Every executor calls this, so ``task.stderr`` and ``logs`` read the same everywhere::

        [keel] the task process was killed by SIGSEGV
    """
    if outcome.signal is None and outcome.result is not None:
        return outcome
    command = outcome.spec.command
    if outcome.signal is None and outcome.exit_code is not None and command is not None and command.kind == "shell":
        return outcome  # a script's exit status is its own answer, and its stderr says why
    text = words or outcome.reason
    if not text and outcome.signal is not None:
        text = f"the task process was killed by {signal_name(outcome.signal)}"
    if text:
        on_output(outcome.spec, "stderr", f"\n[keel] {text}\n".encode())
    return outcome


class Executor(Protocol):
    """Runs tasks somewhere and reports how they ended."""

    name: str

    def submit(self, spec: TaskSpec) -> None:
        """Start one attempt of a task: a step of the flow, or a command task when ``spec.command``
        is set (:mod:`keel.runtime.command`; the task's result then comes from its exit status)."""

    def wait(self, timeout: float) -> list[Outcome]:
        """Block up to ``timeout`` seconds; return the attempts that ended (maybe none)."""

    def kill(self, spec: TaskSpec) -> None:
        """Stop a running attempt now; its Outcome still comes back through wait()."""

    def running(self) -> int:
        """How many attempts are running now."""

    def shutdown(self) -> list[Outcome]:
        """Stop every running attempt now (Ctrl-C, SIGTERM) and return how each one ended;
        no process is left behind."""

    def close(self) -> None:
        """The run is over: release what the executor holds (guard process, cluster connection).
        Called once, after the last wait() or shutdown()."""
