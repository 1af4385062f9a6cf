"""A router over several executors: each step's tasks go to the executor the plan names.

With ``@ray`` on one step, that step's tasks go to Ray and the others are forked here; the
scheduler still sees one :class:`~keel.runtime.executors.base.Executor` and never learns
where a task ran.
"""

from __future__ import annotations

import time

from keel.runtime.executors.base import Executor, Outcome
from keel.runtime.task import TaskSpec

_SLICE = 0.02  # seconds each busy executor may block while several have tasks running


class RoutingExecutor:
    """Dispatches tasks by step to one of several executors and waits on all of them."""

    name = "routing"

    def __init__(self, executors: dict[str, Executor], route: dict[str, str], default: str = "local"):
        self.executors = executors
        self.route = route
        self.default = default
        self.where: dict[tuple[int, int], Executor] = {}

    def executor_for(self, step: str) -> Executor:
        return self.executors[self.route.get(step, self.default)]

    def submit(self, spec: TaskSpec) -> None:
        executor = self.executor_for(spec.step)
        self.where[(spec.task_id, spec.attempt)] = executor
        executor.submit(spec)

    def running(self) -> int:
        return sum(e.running() for e in self.executors.values())

    def wait(self, timeout: float) -> list[Outcome]:
        busy = [e for e in self.executors.values() if e.running()]
        if not busy:
            if timeout > 0:
                time.sleep(timeout)
            return []
        if len(busy) == 1:
            return self._forget(busy[0].wait(timeout))
        deadline = time.monotonic() + max(timeout, 0)
        while True:
            out: list[Outcome] = []
            for executor in busy:
                out += executor.wait(0)
            left = deadline - time.monotonic()
            if out or left <= 0:
                return self._forget(out)
            for executor in busy:
                out += executor.wait(min(_SLICE, max(left, 0) / len(busy)))
            if out:
                return self._forget(out)

    def _forget(self, outcomes: list[Outcome]) -> list[Outcome]:
        for outcome in outcomes:
            self.where.pop((outcome.spec.task_id, outcome.spec.attempt), None)
        return outcomes

    def kill(self, spec: TaskSpec) -> None:
        executor = self.where.get((spec.task_id, spec.attempt))
        if executor is not None:
            executor.kill(spec)

    def shutdown(self) -> list[Outcome]:
        outcomes: list[Outcome] = []
        for executor in self.executors.values():
            outcomes += executor.shutdown() or []
        self.where.clear()
        return outcomes

    def close(self) -> None:
        for executor in self.executors.values():
            executor.close()
