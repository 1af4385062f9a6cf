"""The scheduler: one loop over ready tasks that does not know where tasks run.

    create start -> while work remains: launch ready tasks within the budget,
    wait for the executor to report ends, record them, create the tasks that follow.

It is the only writer of the run's metadata. Joins are matched by the split that opened
them: every task carries a stack of split frames (static branch or foreach), a join pops one.
"""

from __future__ import annotations

import itertools
import os
import time
from collections import deque
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any, Callable

from keel.errors import FailureHandledByCatch
from keel.flow.decorators import find_decorator, timeout_seconds
from keel.runtime.current import MetricSpool
from keel.runtime.executors.base import Executor, Outcome
from keel.runtime.task import CaughtException, FrameSpec, TaskResult, TaskSpec
from keel.store.records import (
    ArtifactsWrite, AttemptWrite, EventWrite, HeartbeatWrite, MetricsWrite, StepWrite, TagsWrite, TaskWrite, WriteOp,
)

if TYPE_CHECKING:
    from keel.runtime.cache import StepCache
    from keel.store.interfaces import RunStore

_HEARTBEAT_EVERY = 2.0  # default; KEEL_HEARTBEAT_SECONDS is read when a run starts
_FLUSH_EVERY = 0.1  # seconds between metadata transactions while tasks run


@dataclass(frozen=True)
class SplitFrame:
    kind: str          # "static" | "foreach"
    step: str
    task_id: int
    index: int
    count: int


@dataclass
class ReusedTask:
    """A task that finished in an earlier run and is taken as it is by resume."""

    run_id: int
    task_id: int
    artifacts: dict[str, dict[str, Any]]
    num_splits: int | None = None
    branch: str | None = None    # a conditional step: the step it chose (None: unknown, run it again)


@dataclass
class Options:
    max_workers: int = 16
    max_num_splits: int = 100
    # resume: (step, foreach indices) -> the finished task of the origin run to reuse
    reuse: dict[tuple[str, tuple[int, ...]], ReusedTask] = field(default_factory=dict)
    budget: dict[str, float] = field(default_factory=lambda: {"cpu": os.cpu_count() or 1, "memory": 1 << 40})
    # steps that run elsewhere (Ray, Kubernetes): this machine's cpu/memory budget does not apply
    remote_steps: frozenset[str] = frozenset()
    # step caching: True for run --cache (every step), False for --no-cache, None for @cache steps only
    cache: bool | None = None
    # resume: the run this one resumes (current.origin_run_id in every task)
    origin_run_id: int | None = None
    # what `current` shows in every task: username, namespace, project, branch, run tags
    task_context: dict[str, Any] = field(default_factory=dict)
    # the tasks' system-metrics period in seconds, 0 for off (KEEL_SYSTEM_METRICS[_EVERY], read
    # when the run starts); None: each task reads the settings itself
    system_metrics: float | None = None


@dataclass
class _StepPolicy:
    """What a step's decorators ask of the scheduler, read once per run."""

    retries: int = 0
    retry_delay: float = 0.0
    catch: bool = False
    catch_var: str | None = None
    timeout: float | None = None
    cpu: float = 0.0
    memory: float = 0.0
    env: dict[str, str] = field(default_factory=dict)


def _backstop_grace(timeout: float) -> float:
    return min(max(2.0, 0.1 * timeout), 60.0)


def step_policy(node: Any) -> _StepPolicy:
    func_decos = {d.name: d for d in node.decorators}
    policy = _StepPolicy()
    if "retry" in func_decos:
        policy.retries = int(func_decos["retry"].times)
        policy.retry_delay = 60.0 * float(func_decos["retry"].minutes_between_retries)
    if "catch" in func_decos:
        policy.catch, policy.catch_var = True, func_decos["catch"].var
    policy.timeout = timeout_seconds(func_decos.get("timeout"))
    if "resources" in func_decos:
        policy.cpu = float(func_decos["resources"].cpu)
        policy.memory = float(func_decos["resources"].memory)
    if "environment" in func_decos:
        policy.env = {str(k): str(v) for k, v in (func_decos["environment"].vars or {}).items()}
    return policy


@dataclass
class _Task:
    task_id: int
    step: str
    parents: list[int]
    inputs: list[dict[str, dict[str, Any]]]
    input_steps: list[str]
    frames: list[FrameSpec]
    splits: list[SplitFrame]
    attempt: int = 0
    ready_at: float = 0.0
    started_at: float | None = None
    deadline: float | None = None
    timed_out: bool = False
    spec: TaskSpec | None = None
    cache_key: Any = None          # keel.runtime.cache.CacheKey of a cached step's task
    cache_miss: bool = False       # computed here: its result becomes a cache entry


@dataclass
class RunOutcome:
    status: str                       # "succeeded" | "failed" | "interrupted"
    failed_step: str | None = None
    failed_task: int | None = None
    error: dict[str, str] | None = None
    message: str | None = None


class Events:
    """What the scheduler tells the outside world (console, logs). All methods optional."""

    def task_started(self, step: str, task_id: int, attempt: int) -> None: ...
    def task_finished(self, step: str, task_id: int, status: str) -> None: ...
    def tasks_created(self, step: str, n: int) -> None: ...
    def message(self, text: str) -> None: ...
    def idle(self) -> None: ...  # called every loop: periodic progress lines, redraws


class Scheduler:
    """Runs one run's tasks through an executor and records everything in the metadata store.

    A flow's graph is the default plan. A subclass may plan differently through the hooks
    ``_policies``, ``_start``, ``_make_spec``, ``_check_transition``, ``_death``, ``_advance``
    and ``_record_steps`` (a project: :class:`keel.runtime.project.ProjectScheduler`), and keep
    the loop, retries, timeouts, budget, records and interruption.
    """

    stop_on_failure = True   # a failed task stops new launches (a flow); False: independent work goes on

    def __init__(self, *, flow: str, run_id: int, graph: Any, executor: Executor, metadata: RunStore,
                 artifacts: Any, scratch: str, params: dict[str, dict[str, Any]], options: Options,
                 events: Events | None = None, task_extras: Callable[[str], dict[str, Any]] | None = None,
                 cache: StepCache | None = None):
        self.flow, self.run_id, self.graph = flow, run_id, graph
        self.executor, self.metadata, self.artifacts = executor, metadata, artifacts
        self.scratch = scratch
        self.params = params
        self.options = options
        self.events = events or Events()
        self.task_extras = task_extras or (lambda step: {})
        self.cache = cache  # keel.runtime.cache.StepCache, or None
        self.policies = self._policies()
        for name in options.remote_steps & set(self.policies):
            self.policies[name].cpu = self.policies[name].memory = 0.0
        for name in set(self.policies) - options.remote_steps:
            # Metaflow's local runtime retries at once; the wait matters on a cluster (a node
            # coming back, a quota freeing up), so it is kept for remote steps only.
            self.policies[name].retry_delay = 0.0
        self._ids = itertools.count(1)
        self.ready: deque[_Task] = deque()
        self.delayed: list[_Task] = []
        self.running: dict[tuple[int, int], _Task] = {}
        self.joins: dict[tuple[str, int], dict[int, tuple[_Task, dict[str, Any]]]] = {}
        self.used = {"cpu": 0.0, "memory": 0.0}
        self.ops: list[WriteOp] = []
        self.failure: RunOutcome | None = None
        self.step_started: dict[str, float] = {}
        self.step_finished: dict[str, float] = {}
        self._last_beat = 0.0
        self._last_flush = 0.0
        from keel.store.liveness import heartbeat_seconds

        self._beat_every = heartbeat_seconds()

    def _policies(self) -> dict[str, _StepPolicy]:
        return {name: step_policy(self.graph[name]) for name in self.graph.sorted_nodes()}

    def _start(self) -> None:
        """Create the first tasks."""
        self._create("start", parents=[], inputs=[self.params], input_steps=[], frames=[], splits=[])

    # -- the loop ---------------------------------------------------------------------------
    def run(self) -> RunOutcome:
        self._start()
        try:
            while self.ready or self.delayed or self.running:
                now = time.time()
                self._promote_delayed(now)
                if self.failure is None or not self.stop_on_failure:
                    self._launch_ready(now)
                    self._flush(force=False)  # running tasks are on record within _FLUSH_EVERY
                if not self.running and self.failure is not None and self.stop_on_failure:
                    break
                for outcome in self.executor.wait(self._wait_time(now)):
                    self._on_outcome(outcome)
                self._check_timeouts()
                self._heartbeat()
                self._flush(force=False)
                self.events.idle()
        finally:
            self._flush()
            if self.cache is not None:
                self.cache.release_all()
        if self.failure is not None:
            return self.failure
        return RunOutcome(status="succeeded")

    def interrupt(self) -> None:
        """Stop everything now (Ctrl-C, SIGTERM): running attempts are recorded as interrupted."""
        for outcome in self.executor.shutdown():
            task = self.running.pop((outcome.spec.task_id, outcome.spec.attempt), None)
            if task is not None:
                self._record_attempt(task, "interrupted", outcome, {"type": "Interrupted",
                                     "message": "the run was interrupted", "traceback": ""})
                self._record_task(task, "interrupted")
                self.events.task_finished(task.step, task.task_id, "interrupted")
        for task in list(self.running.values()):
            self._record_task(task, "interrupted")
            self.events.task_finished(task.step, task.task_id, "interrupted")
        self.running.clear()
        self._record_steps()
        self._flush()

    def _wait_time(self, now: float) -> float:
        wake = min(now + 1.0, self._last_beat + self._beat_every)
        if self.ops:  # what has ended is on record within _FLUSH_EVERY: wake for the flush
            wake = min(wake, now + max(0.0, self._last_flush + _FLUSH_EVERY - time.monotonic()))
        for task in self.running.values():
            if task.deadline is not None:
                wake = min(wake, task.deadline)
        for task in self.delayed:
            wake = min(wake, task.ready_at)
        return max(0.0, wake - now)

    def _promote_delayed(self, now: float) -> None:
        if not self.delayed:
            return
        due = [t for t in self.delayed if t.ready_at <= now]
        if due:
            self.delayed = [t for t in self.delayed if t.ready_at > now]
            self.ready.extendleft(reversed(due))

    def _fits(self, policy: _StepPolicy) -> bool:
        if not self.running:
            return True  # a lone task always runs (requests above the machine are refused up front)
        budget = self.options.budget
        return (self.used["cpu"] + policy.cpu <= budget["cpu"] + 1e-9
                and self.used["memory"] + policy.memory <= budget["memory"])

    def _launch_ready(self, now: float) -> None:
        blocked: set[str] = set()
        checked = 0
        while self.ready and len(self.running) < self.options.max_workers and checked < len(self.ready):
            task = self.ready[0]
            policy = self.policies[task.step]
            if task.step in blocked or not self._fits(policy):
                blocked.add(task.step)
                self.ready.rotate(-1)
                checked += 1
                continue
            self.ready.popleft()
            checked = 0
            if not self._reuse(task, now) and not self._from_cache(task, now):
                self._launch(task, policy, now)

    def _reuse(self, task: _Task, now: float) -> bool:
        """Resume: take the origin run's finished task instead of running it again."""
        if not self.options.reuse:
            return False
        origin = self.options.reuse.get((task.step, tuple(f.index for f in task.frames)))
        if origin is None:
            return False
        return self._take(task, origin, now, "reused")

    def _from_cache(self, task: _Task, now: float) -> bool:
        """A cached step: take an intact earlier result with the same key, or wait for another
        run that is computing it; False when this run must compute it."""
        cache = self.cache
        if cache is None or task.cache_miss or not cache.enabled(task.step):
            return False  # (a retry of a task this run computes goes straight to the executor)
        if task.cache_key is None:
            task.cache_key = cache.key(task.step, task.inputs, task.frames)
        if not task.cache_key.cacheable:
            return False
        reuse = not cache.recompute(task.step)
        note = self._cache_hit(task, now) if reuse else "@cache(behavior='recompute')"
        if note is None:
            return True
        if not cache.claim(task.cache_key, task.task_id):
            task.ready_at = now + 0.2  # another run is computing this key: wait for its entry
            self.delayed.append(task)
            return True
        if reuse and self._cache_hit(task, now) is None:  # it landed between the lookup and the claim
            cache.release(task.task_id)
            return True
        cache.record_key(task.step, task.task_id, task.cache_key, hit=False, note=note)
        task.cache_miss = True
        return False

    def _cache_hit(self, task: _Task, now: float) -> str | None:
        """Take the task from the cache: None when taken, else why it missed."""
        assert self.cache is not None
        entry, why = self.cache.lookup(task.cache_key)
        if entry is None:
            return why
        origin = ReusedTask(run_id=entry.run_id, task_id=entry.task_id, artifacts=entry.artifacts,
                            num_splits=entry.num_splits)
        if not self._take(task, origin, now, "cached"):
            return "its cached result cannot fan out"
        self.cache.record_key(task.step, task.task_id, task.cache_key, hit=True, note=None)
        return None

    def _take(self, task: _Task, origin: ReusedTask, now: float, status: str) -> bool:
        """Record ``task`` as done by ``origin`` (resume or cache) and move on, copying no bytes."""
        result = self._taken_result(task, origin)
        if result is None:
            return False
        task.started_at = now
        self.step_started.setdefault(task.step, now)
        self.ops.append(replace(self._task_row(task, status), origin_run_id=origin.run_id,
                                 origin_task_id=origin.task_id, attempts=0))
        self.ops.append(ArtifactsWrite(self.flow, self.run_id, task.task_id, origin.artifacts))
        self.events.task_started(task.step, task.task_id, 0)
        self.events.task_finished(task.step, task.task_id, "succeeded")
        self.step_finished[task.step] = time.time()
        self._advance(task, result, origin.artifacts)
        return True

    def _taken_result(self, task: _Task, origin: ReusedTask) -> TaskResult | None:
        """The result ``task`` would have had, taken from ``origin``; None when it cannot be taken."""
        node = self.graph[task.step]
        transition = list(node.out_funcs)
        if node.kind == "switch":
            if origin.branch not in node.out_funcs:
                return None  # which branch it chose is unknown (or no longer a case): run it again
            transition = [origin.branch]
        result = TaskResult(ok=True, artifacts=origin.artifacts, transition=tuple(transition),
                            foreach=node.foreach_param)
        if node.kind == "foreach":
            ref = origin.artifacts.get(node.foreach_param)
            if ref is None or origin.num_splits is None:
                return None
            result = replace(result, num_splits=origin.num_splits, foreach_ref=ref)
        return result

    def _launch(self, task: _Task, policy: _StepPolicy, now: float) -> None:
        spec = self._make_spec(task, policy)
        task.spec = spec
        task.started_at = now
        task.timed_out = False
        # A flow step raises StepTimeout itself at its @timeout (spec.timeout); this kill is the
        # backstop for code that does not return to Python (a long C call, a signal handler
        # swallowed). A command task (project job) cannot raise: it is killed at its timeout.
        grace = _backstop_grace(policy.timeout) if policy.timeout and spec.timeout else 0.0
        task.deadline = now + policy.timeout + grace if policy.timeout else None
        self.used["cpu"] += policy.cpu
        self.used["memory"] += policy.memory
        self.running[(task.task_id, task.attempt)] = task
        self.step_started.setdefault(task.step, now)
        self.ops.append(self._task_row(task, "running"))
        self.events.task_started(task.step, task.task_id, task.attempt)
        self.executor.submit(spec)

    def _make_spec(self, task: _Task, policy: _StepPolicy) -> TaskSpec:
        """What the executor gets for one attempt of ``task``."""
        node = self.graph[task.step]
        return TaskSpec(
            flow=self.flow, run_id=self.run_id, step=task.step, task_id=task.task_id, attempt=task.attempt,
            inputs=task.inputs, input_steps=task.input_steps, is_join=bool(node.is_join),
            param_names=list(self.params), frames=task.frames, env=policy.env,
            catch_var=policy.catch_var, catch_now=policy.catch and task.attempt >= policy.retries,
            record_reads=task.cache_miss,
            result_path=os.path.join(self.scratch, f"{self.flow}-{self.run_id}-{task.task_id}-{task.attempt}.result"),
            metrics_path=os.path.join(self.scratch, f"{self.flow}-{self.run_id}-{task.task_id}-{task.attempt}.metrics"),
            origin_run_id=self.options.origin_run_id,
            extras={**self.options.task_context, **self.task_extras(task.step)},
            timeout=policy.timeout, system_metrics=self.options.system_metrics,
        )

    def _check_timeouts(self) -> None:
        now = time.time()
        for task in self.running.values():
            if task.deadline is not None and now >= task.deadline and not task.timed_out:
                task.timed_out = True
                assert task.spec is not None
                self.executor.kill(task.spec)

    def _heartbeat(self) -> None:
        now = time.time()
        if now - self._last_beat >= self._beat_every:
            self._last_beat = now
            self.ops.append(HeartbeatWrite(self.flow, self.run_id))

    def _flush(self, force: bool = True) -> None:
        """Write the queued metadata in one transaction (at most every _FLUSH_EVERY s unless forced)."""
        if not self.ops:
            return
        now = time.monotonic()
        if not force and now - self._last_flush < _FLUSH_EVERY:
            return
        self._last_flush = now
        ops, self.ops = self.ops, []
        self.metadata.write_batch(ops)
        if self.cache is not None:
            self.cache.flush()

    # -- one attempt ended -------------------------------------------------------------------
    def _on_outcome(self, outcome: Outcome) -> None:
        task = self.running.pop((outcome.spec.task_id, outcome.spec.attempt), None)
        if task is None:
            return
        policy = self.policies[task.step]
        self.used["cpu"] -= policy.cpu
        self.used["memory"] -= policy.memory
        self._ingest_metrics(task, outcome.result)
        result = outcome.result
        if result is not None and result.ok:
            problem = self._check_transition(task, result)
            if problem is None:
                self._succeeded(task, outcome, result)
                return
            result = TaskResult.failed("TransitionError", problem)
        error = (result.error if result is not None else None) or self._death(task, outcome)
        self._failed(task, outcome, error)

    def _death(self, task: _Task, outcome: Outcome) -> dict[str, str]:
        policy = self.policies[task.step]
        if task.timed_out:
            return {"type": "StepTimeout", "traceback": "",
                    "message": f"step {task.step!r} ran longer than its @timeout of {policy.timeout:g} seconds "
                               f"and did not stop when told, so it was killed"}
        return {"type": "TaskCrashed", "message": outcome.reason or "the task ended without a result",
                "traceback": ""}

    def _check_transition(self, task: _Task, result: TaskResult) -> str | None:
        node = self.graph[task.step]
        if result.caught:
            if node.kind == "switch":
                return (f"step {task.step!r} failed before it chose a branch, so @catch cannot continue "
                        f"past it; fix the step or remove @catch")
            if node.kind == "foreach":
                return (f"step {task.step!r} failed before it could fan out, so @catch cannot continue "
                        f"past it; fix the step or remove @catch")
            return None
        went = result.transition
        if node.kind == "end":
            return None
        if not went:
            return (f"step {task.step!r} finished without calling self.next(...); every step except "
                    f"'end' must end with self.next")
        if node.kind == "switch":
            if len(went) != 1 or went[0] not in node.out_funcs:
                return (f"step {task.step!r} went to {', '.join(went)}, which is not one of its cases "
                        f"({', '.join(node.out_funcs)})")
            return None
        if list(went) != list(node.out_funcs) or (result.foreach or None) != (node.foreach_param or None):
            return (f"step {task.step!r} called self.next({', '.join('self.' + w for w in went)}) but its "
                    f"graph goes to {', '.join(node.out_funcs)}; a step must always take the same transition")
        if node.kind == "foreach":
            n = result.num_splits or 0
            if n > self.options.max_num_splits:
                return (f"step {task.step!r} fans out into {n} tasks, more than --max-num-splits "
                        f"{self.options.max_num_splits}. Raise it with --max-num-splits {n}, or split less")
            if n == 0:
                return (f"step {task.step!r}: foreach over an empty list self.{node.foreach_param}; "
                        f"a foreach needs at least one item")
        return None

    def _succeeded(self, task: _Task, outcome: Outcome, result: TaskResult) -> None:
        status = "caught" if result.caught else "succeeded"
        namespace = result.artifacts
        own = set(result.own)
        self._record_attempt(task, status, outcome, result.error)
        self._record_task(task, status, node=outcome.node)
        if namespace:
            self.ops.append(ArtifactsWrite(self.flow, self.run_id, task.task_id, namespace, frozenset(own)))
        if result.tags:
            self.ops.append(TagsWrite(self.flow, self.run_id, result.tags))
        self.events.task_finished(task.step, task.task_id, status)
        self.step_finished[task.step] = time.time()
        if task.cache_miss and status == "succeeded" and self.cache is not None:
            self._flush()  # the task is on record before another run can take it from the cache
            self.cache.record_entry(task.step, task.task_id, task.cache_key, namespace,
                                    result.num_splits, list(result.reads))
        self._advance(task, result, namespace)

    def _failed(self, task: _Task, outcome: Outcome, error: dict[str, str]) -> None:
        policy = self.policies[task.step]
        if task.attempt < policy.retries:
            self._record_attempt(task, "failed", outcome, error)
            self.ops.append(EventWrite(self.flow, self.run_id, "task.retried", step=task.step, task_id=task.task_id,
                                       attempt=task.attempt, detail={"error": error.get("type")}))
            self.events.task_finished(task.step, task.task_id, "retrying")
            task.attempt += 1
            task.ready_at = time.time() + policy.retry_delay
            (self.delayed if policy.retry_delay else self.ready).append(task)
            return
        if policy.catch and outcome.result is None:
            # The task died on its last attempt: carry on as @catch promises, with its inputs.
            caught = CaughtException.of(_died_without_exception(task.attempt + 1, error), error.get("traceback", ""))
            namespace = dict(task.inputs[0]) if task.inputs and not self.graph[task.step].is_join else dict(self.params)
            own = []
            if policy.catch_var:
                namespace[policy.catch_var] = self.artifacts.put(caught).to_dict()
                own.append(policy.catch_var)
            result = TaskResult(ok=True, caught=True, error=error, artifacts=namespace, own=tuple(own))
            if self._check_transition(task, result) is None:
                self._succeeded(task, outcome, result)
                return
        self._record_attempt(task, "failed", outcome, error)
        self._record_task(task, "failed", node=outcome.node)
        if self.cache is not None:
            self.cache.release(task.task_id)
        self.events.task_finished(task.step, task.task_id, "failed")
        if self.failure is None:
            self.failure = RunOutcome(status="failed", failed_step=task.step, failed_task=task.task_id, error=error)

    def _ingest_metrics(self, task: _Task, result: TaskResult | None = None) -> None:
        assert task.spec is not None
        path = task.spec.metrics_path
        files = MetricSpool.files(path)  # the task's, its forked workers', its system metrics'
        points = [point for f in files for point in MetricSpool.read(f)]
        if result is not None:
            points += result.metrics   # the last system metrics, kept with the result
        if points:
            self.ops.append(MetricsWrite(self.flow, self.run_id, task.task_id, tuple(points)))
        for f in files:
            try:
                os.unlink(f)
            except FileNotFoundError:
                pass

    # -- what comes next ------------------------------------------------------------------------
    def _advance(self, task: _Task, result: TaskResult, namespace: dict[str, dict[str, Any]]) -> None:
        node = self.graph[task.step]
        if node.kind == "end":
            return
        if node.kind == "foreach" and not result.caught:
            assert result.num_splits is not None and result.foreach_ref is not None, "a foreach result has its splits"
            n = result.num_splits
            var = node.foreach_param
            target = node.out_funcs[0]
            self.events.tasks_created(target, n)
            for i in range(n):
                frame = FrameSpec(step=task.step, var=var, index=i, num_splits=n, ref=result.foreach_ref)
                split = SplitFrame("foreach", task.step, task.task_id, i, n)
                self._next(target, task, namespace, task.frames + [frame], task.splits + [split])
        elif node.kind == "switch":  # one branch, the one the step chose
            self._next(result.transition[0], task, namespace, task.frames, task.splits)
        elif node.kind == "split":
            count = len(node.out_funcs)
            for i, target in enumerate(node.out_funcs):
                split = SplitFrame("static", task.step, task.task_id, i, count)
                self._next(target, task, namespace, task.frames, task.splits + [split])
        else:
            self._next(node.out_funcs[0], task, namespace, task.frames, task.splits)

    def _next(self, target: str, parent: _Task, namespace: dict[str, Any], frames: list[FrameSpec],
              splits: list[SplitFrame]) -> None:
        if not self.graph[target].is_join:
            self._create(target, parents=[parent.task_id], inputs=[namespace], input_steps=[parent.step],
                         frames=frames, splits=splits)
            return
        top = splits[-1]
        bucket = self.joins.setdefault((target, top.task_id), {})
        bucket[top.index] = (parent, namespace)
        if len(bucket) < top.count:
            return
        del self.joins[(target, top.task_id)]
        arrived = [bucket[i] for i in range(top.count)]
        self._create(target, parents=[t.task_id for t, _ in arrived], inputs=[ns for _, ns in arrived],
                     input_steps=[t.step for t, _ in arrived],
                     frames=frames[:-1] if top.kind == "foreach" else frames, splits=splits[:-1])

    def _create(self, step: str, *, parents: list[int], inputs: list[dict[str, Any]], input_steps: list[str],
                frames: list[FrameSpec], splits: list[SplitFrame]) -> _Task:
        task = _Task(task_id=next(self._ids), step=step, parents=parents, inputs=inputs,
                     input_steps=input_steps, frames=frames, splits=splits)
        self.ready.append(task)
        return task

    # -- records ------------------------------------------------------------------------------------
    def _task_row(self, task: _Task, status: str, node: str | None = None) -> TaskWrite:
        return TaskWrite(
            flow=self.flow, run_id=self.run_id, task_id=task.task_id, step=task.step, status=status,
            attempts=task.attempt + 1, created_at=task.started_at or time.time(), started_at=task.started_at,
            finished_at=None if status == "running" else time.time(), parents=tuple(task.parents),
            foreach=tuple((f.step, f.var, f.index, f.num_splits) for f in task.frames), node=node)

    def _record_task(self, task: _Task, status: str, node: str | None = None) -> None:
        self.ops.append(self._task_row(task, status, node))

    def _record_attempt(self, task: _Task, status: str, outcome: Outcome | None,
                        error: dict[str, str] | None) -> None:
        self.ops.append(AttemptWrite(
            flow=self.flow, run_id=self.run_id, task_id=task.task_id, attempt=task.attempt, status=status,
            started_at=task.started_at, finished_at=time.time(), exit_code=outcome.exit_code if outcome else None,
            error_type=(error or {}).get("type"), error_message=(error or {}).get("message"),
            traceback=(error or {}).get("traceback"), node=outcome.node if outcome else None))

    def _record_steps(self) -> None:
        for step in self.graph.sorted_nodes():
            if step in self.step_started:
                self.ops.append(StepWrite(self.flow, self.run_id, step,
                                          status="done" if step in self.step_finished else "incomplete",
                                          started_at=self.step_started[step],
                                          finished_at=self.step_finished.get(step)))

    def finish(self) -> None:
        self._record_steps()
        self._flush()


def _died_without_exception(attempts: int, error: dict[str, str]) -> FailureHandledByCatch:
    """What @catch stores for a task that kept dying without a Python exception (a signal, os._exit)."""
    return FailureHandledByCatch(f"task execution kept failing over {attempts} attempt(s) without a "
                                 f"Python exception: {error['message']}")
