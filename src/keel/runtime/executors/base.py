"""The small interface between the scheduler and wherever tasks run.

The scheduler submits ready tasks, waits for the first ones to finish, records them, and
repeats. It never knows whether a task ran in a local process, on Ray or on Kubernetes.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Protocol

from keel.runtime.task import TaskSpec

# (task spec, "stdout" | "stderr", bytes) — a chunk of a task's output as it is written.
OutputSink = Callable[[TaskSpec, str, bytes], None]


@dataclass
class Outcome:
    """How one attempt ended. ``result`` is the task's own report, or None if it died first."""

    spec: TaskSpec
    result: dict[str, Any] | None
    exit_code: int | None = None
    signal: int | None = None
    reason: str | None = None       # the executor's words when there is no result
    node: str | None = None         # where it ran (hostname, Ray node id, pod)


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
