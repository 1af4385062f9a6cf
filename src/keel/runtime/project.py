"""Run a project's jobs (keel.yaml): in dependency order, independent jobs at the same time.

    project = load_project("keel.yaml", flow_loader=load_flow_file)
    result = run_project(project, ProjectRunOptions(jobs=["train"], with_deps=True))

A project compiles to the same plan as a flow and runs on the same
:class:`~keel.runtime.scheduler.Scheduler` and executors, with the same retries, timeouts,
resources budget, heartbeat, records and interruption. A job is a step; ``parallelism: N``
fans it out into N tasks (``KEEL_INSTANCE``/``KEEL_INSTANCES``); ``after:`` are the edges; a
job starts when every task of the jobs it needs succeeded, and a failed job skips its
dependants while independent jobs go on. Each task is a *command task*
(:mod:`keel.runtime.command`): an ``entrypoint`` is ``/bin/sh -c`` in the project folder, a
``flow`` runs through the one entry point as a flow run of its own, tagged
``project:NAME/RUN``, whose pathspec the job's task keeps as its artifact ``flow_run``.

A job with ``cache: true`` (every job with ``--cache``) is looked up in the step cache before it
runs, with the key :class:`keel.runtime.jobcache.JobCache` makes; a hit is recorded as
``cached`` with its origin and its dependants start at once.

``keel project resume [RUN]`` (:func:`plan_project_resume`) is a new run of the same jobs that
takes every job instance that finished in the origin run, with its upstream jobs all taken too,
as ``reused`` (by reference, as a flow's resume does) and runs the rest: the failed, skipped and
unfinished jobs and what follows them.

A script reaches ``current`` through environment variables (see ``current._activate_from_env``);
its metrics spool and tags file are read into the store when the task ends. ``keel runs``,
``keel show``, ``keel logs`` and the client read a project run as they read a flow run.
"""

from __future__ import annotations

import os
import shlex
import signal
import sys
import time
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any, Callable, cast

from keel.errors import Issue, ProjectError
from keel.flow.project import Project, format_duration
from keel.runtime.command import CommandTask
from keel.runtime.executors.base import Executor
from keel.runtime.launch import _RunIO, drive
from keel.runtime.scheduler import Options, ReusedTask, Scheduler, _StepPolicy, _Task
from keel.runtime.task import TaskResult, TaskSpec
from keel.store import Store
from keel.store.records import StepWrite, TaskWrite

if TYPE_CHECKING:
    from keel.runtime.jobcache import JobCache

_STDERR_TAIL = 4000    # characters of a failed job's stderr kept with its attempt


@dataclass
class ProjectRunOptions:
    """Which jobs to run and how. ``jobs`` None: all of them."""

    jobs: list[str] | None = None
    with_deps: bool = False        # --job J --with-deps: J and what it needs, first
    downstream: bool = False       # --job J --downstream: J and every job that needs it (the scheduler)
    max_workers: int = 16
    tags: list[str] = field(default_factory=list)
    quiet: bool = False
    command: str = "keel project run"
    executors: list[str] = field(default_factory=list)   # --with ray[:...]: script jobs run there
    cache: bool | None = None      # --cache (every job) / --no-cache / neither: jobs with cache: true
    resume: int | None = None      # keel project resume RUN: the run whose finished jobs this one takes (0: the latest)


@dataclass
class ProjectResult:
    project: str
    run_id: int
    status: str                                 # "succeeded" | "failed" | "interrupted"
    failed: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    error: str | None = None
    seconds: float = 0.0

    @property
    def pathspec(self) -> str:
        return f"{self.project}/{self.run_id}"

    @property
    def ok(self) -> bool:
        return self.status == "succeeded"


def select_jobs(project: Project, options: ProjectRunOptions) -> list[str]:
    """The jobs a run takes, in dependency order."""
    if not options.jobs:
        return project.order()
    chosen: set[str] = set()
    for name in options.jobs:
        if name not in project.jobs:
            import difflib

            from keel.errors import UsageError

            guess = difflib.get_close_matches(name, list(project.jobs), n=1)
            hint = f" Did you mean {guess[0]!r}?" if guess else ""
            raise UsageError(f"--job {name}: the project {project.name} has no job {name!r}.{hint} "
                             f"Jobs are: {', '.join(project.jobs)}")
        chosen.add(name)
        if options.with_deps:
            chosen.update(project.upstream(name))
        if options.downstream:
            chosen.update(project.downstream(name))
    return [j for j in project.order() if j in chosen]


def check_job_resources(project: Project, budget: dict[str, float]) -> None:
    """Refuse, before anything runs, a job that asks for more than this machine has."""
    issues = []
    for name, job in project.jobs.items():
        line = project.line(name, "resources")
        if job.resources.cpu > budget["cpu"]:
            issues.append(Issue(project.path, line, f"job {name!r} asks for resources: cpu: {job.resources.cpu:g} "
                                                    f"but this machine has {budget['cpu']:g} cores; lower it"))
        if job.resources.memory > budget["memory"]:
            issues.append(Issue(project.path, line, f"job {name!r} asks for resources: memory: "
                                                    f"{job.resources.memory:,.0f} MB but this machine has "
                                                    f"{budget['memory']:,.0f} MB; lower it"))
    if issues:
        raise ProjectError(issues)


class _ProjectIO(_RunIO):
    """The run's output sink, keeping the tail of each task's stderr for its failure record."""

    def __init__(self, *args: Any):
        super().__init__(*args)
        self.stderr_tail: dict[int, str] = {}

    def output(self, spec: TaskSpec, stream: str, data: bytes) -> None:
        super().output(spec, stream, data)
        if stream == "stderr":
            text = data.decode("utf-8", "replace")
            self.stderr_tail[spec.task_id] = (self.stderr_tail.get(spec.task_id, "") + text)[-_STDERR_TAIL:]


class ProjectScheduler(Scheduler):
    """The scheduler with a project's plan: jobs as steps, instances as tasks, commands as bodies."""

    stop_on_failure = False  # a failed job stops its dependants; independent jobs go on

    def __init__(self, *, project: Project, selected: list[str], io: _ProjectIO,
                 flow_executors: tuple[str, ...] = (), **kwargs: Any):
        self.project, self.selected, self.io = project, selected, io
        self.flow_executors = flow_executors  # --with: a flow job's run sends its steps there
        self.state: dict[str, str] = dict.fromkeys(selected, "pending")
        self.instances: dict[str, list[_Task]] = {}
        self.index: dict[int, tuple[int, int]] = {}          # task id -> (instance, instances)
        self.finished: set[int] = set()                      # task ids done for good (succeeded or failed)
        self.first_failure: tuple[str, int, dict[str, str]] | None = None
        self.made_by: dict[int, str] = {}                  # task id -> "RUN/TASK" whose result it took
        self.resumed: dict[tuple[str, int], ReusedTask] = {}  # resume: (job, instance) -> the origin's task
        super().__init__(graph=None, **kwargs)

    def _reuse(self, task: _Task, now: float) -> bool:
        """Resume: take the origin run's finished instance of this job instead of running it again."""
        origin = self.resumed.get((task.step, self.index[task.task_id][0]))
        return origin is not None and self._take(task, origin, now, "reused")

    def _policies(self) -> dict[str, _StepPolicy]:
        policies = {}
        for name in self.selected:
            job = self.project.jobs[name]
            policies[name] = _StepPolicy(retries=job.retries, timeout=job.timeout or None,
                                         cpu=float(job.resources.cpu), memory=float(job.resources.memory))
        return policies

    def _start(self) -> None:
        self._schedule_jobs()

    def _schedule_jobs(self) -> None:
        """Make the tasks of every job whose dependencies succeeded; skip those whose failed."""
        changed = True
        while changed:
            changed = False
            for job in self.selected:
                if self.state[job] != "pending":
                    continue
                deps = [d for d in self.project.jobs[job].after if d in self.state]
                broken = [d for d in deps if self.state[d] in ("failed", "skipped")]
                if broken:
                    self.state[job] = "skipped"
                    self.events.message(f"job {job!r} skipped: it needs {broken[0]!r}, which "
                                        f"{'failed' if self.state[broken[0]] == 'failed' else 'did not run'}")
                    changed = True
                elif all(self.state[d] == "succeeded" for d in deps):
                    self._fan_out(job, [t.task_id for d in deps for t in self.instances.get(d, [])])
                    changed = True

    def _fan_out(self, job: str, parents: list[int]) -> None:
        count = self.project.jobs[job].parallelism
        self.state[job] = "running"
        made = []
        for i in range(count):
            task = self._create(job, parents=parents, inputs=[], input_steps=[], frames=[], splits=[])
            task.started_at = time.time()  # created_at of the row; set again at launch
            self.index[task.task_id] = (i, count)
            made.append(task)
        self.instances[job] = made
        self.events.tasks_created(job, count)

    def _from_cache(self, task: _Task, now: float) -> bool:
        cache = cast("JobCache | None", self.cache)  # a project's scheduler is given a JobCache
        if cache is not None and task.cache_key is None and cache.enabled(task.step):
            index, count = self.index[task.task_id]
            task.cache_key = cache.job_key(task.step, index, count, self._upstream_keys(task.step))
        return super()._from_cache(task, now)

    def _upstream_keys(self, job: str) -> dict[str, str]:
        """The identity of each instance of the jobs ``job`` runs after, in this run: its cache key,
        and the task that made its result: this run's task when it ran (so ``job`` misses: its input
        was made again), the origin's when it was taken from the cache."""
        keys = {}
        for dep in self.project.jobs[job].after:
            for i, t in enumerate(self.instances.get(dep, [])):
                made_by = self.made_by.get(t.task_id, f"{self.run_id}/{t.task_id}")
                cached = t.cache_key is not None and t.cache_key.cacheable
                keys[f"{dep}/{i}"] = f"{t.cache_key.key if cached else 'uncached'}@{made_by}"
        return keys

    def _take(self, task: _Task, origin: Any, now: float, status: str) -> bool:
        self.made_by[task.task_id] = f"{origin.run_id}/{origin.task_id}"  # before its dependants are made
        if super()._take(task, origin, now, status):
            return True
        del self.made_by[task.task_id]
        return False

    def _taken_result(self, task: _Task, origin: Any) -> TaskResult | None:
        return TaskResult(ok=True, artifacts=origin.artifacts)

    def _make_spec(self, task: _Task, policy: _StepPolicy) -> TaskSpec:
        job = self.project.jobs[task.step]
        index, count = self.index[task.task_id]
        stem = os.path.join(self.scratch, f"{self.flow}-{self.run_id}-{task.task_id}-{task.attempt}")
        env = {str(k): str(v) for k, v in job.env.items()}
        settings = self.io.store.settings
        env.update({
            "KEEL_HOME": str(settings.home), "KEEL_METADATA_URL": settings.metadata_url,
            "KEEL_ARTIFACT_URL": settings.artifact_url,
            "KEEL_PROJECT": self.flow, "KEEL_PROJECT_RUN": f"{self.flow}/{self.run_id}",
            "KEEL_JOB": task.step, "KEEL_INSTANCE": str(index), "KEEL_INSTANCES": str(count)})
        queue = self.project.addons.queue
        if queue is not None and "queue" in job.addons:  # current.queue(...) reads these
            env.update({"KEEL_QUEUE_VISIBILITY_TIMEOUT": str(queue.visibility_timeout),
                        "KEEL_QUEUE_MAX_DELIVERIES": str(queue.max_deliveries)})
            if queue.url:
                env["KEEL_QUEUE_URL"] = queue.url
        spark = self.project.addons.spark if "spark" in job.addons else None
        if job.flow is not None:
            command = CommandTask(kind="flow", cwd=self.project.root, env=env,
                                  flow_file=self.project.flow_path(task.step), params=dict(job.params),
                                  tags=(f"project:{self.flow}/{self.run_id}",), executors=self.flow_executors,
                                  spark=_spark_settings(spark) if spark is not None else None)
        else:
            assert job.entrypoint is not None
            env.update({  # a script: `current` activates itself from these
                "KEEL_FLOW_NAME": self.flow, "KEEL_RUN_ID": str(self.run_id), "KEEL_STEP_NAME": task.step,
                "KEEL_TASK_ID": str(task.task_id), "KEEL_RETRY_COUNT": str(task.attempt),
                "KEEL_METRICS_PATH": stem + ".metrics", "KEEL_TAGS_PATH": stem + ".tags"})
            shell = job.entrypoint
            if spark is not None:  # the job runs under the add-on, which starts and stops its cluster
                from keel.addons.spark import job_command

                shell = shlex.join(job_command(spark, ["/bin/sh", "-c", shell]))
            reads_path = ""
            if task.cache_miss:  # computed for the cache: a read hook in its Python processes lists what they read
                from keel.runtime.jobcache import READHOOK_DIR

                reads_path = stem + ".reads"
                inherited = env.get("PYTHONPATH", os.environ.get("PYTHONPATH", ""))
                env["PYTHONPATH"] = READHOOK_DIR + (os.pathsep + inherited if inherited else "")
                env["KEEL_RECORD_READS"] = reads_path
            command = CommandTask(kind="shell", cwd=self.project.root, env=env, shell=shell,
                                  tags_path=stem + ".tags", reads_path=reads_path)
        self.io.stderr_tail.pop(task.task_id, None)
        return TaskSpec(flow=self.flow, run_id=self.run_id, step=task.step, task_id=task.task_id,
                        attempt=task.attempt, inputs=[], input_steps=[], is_join=False, param_names=[],
                        result_path=stem + ".result", metrics_path=stem + ".metrics", command=command)

    def _check_transition(self, task: _Task, result: TaskResult) -> str | None:
        return None

    def _death(self, task: _Task, outcome: Any) -> dict[str, str]:
        job = self.project.jobs[task.step]
        if task.timed_out:
            error = {"type": "TimeoutError",
                     "message": f"job {task.step!r} ran longer than its timeout of {format_duration(job.timeout or 0)}"}
        elif outcome.signal is not None:
            try:
                name = signal.Signals(outcome.signal).name
            except ValueError:
                name = f"signal {outcome.signal}"
            error = {"type": "JobFailed", "message": f"job {task.step!r} was killed by {name}"}
        elif outcome.exit_code is not None:
            error = {"type": "JobFailed", "message": f"job {task.step!r} exited with status {outcome.exit_code}"}
        else:
            error = {"type": "JobFailed", "message": f"job {task.step!r}: {outcome.reason or 'it ended without a result'}"}
        error["traceback"] = self.io.stderr_tail.get(task.task_id, "")
        return error

    def _advance(self, task: _Task, result: TaskResult, namespace: dict[str, dict[str, Any]]) -> None:
        if "flow_run" in namespace:
            from keel.store.artifacts import ArtifactRef

            flow_run = self.artifacts.get(ArtifactRef.from_dict(namespace["flow_run"]), what="flow_run")
            self.events.message(f"job {task.step!r} ran flow {flow_run}")
        self._job_task_done(task)

    def _failed(self, task: _Task, outcome: Any, error: dict[str, str]) -> None:
        final = task.attempt >= self.policies[task.step].retries
        super()._failed(task, outcome, error)
        if final:
            if self.first_failure is None:
                self.first_failure = (task.step, task.task_id, error)
            self.state[task.step] = "failed"
            self._job_task_done(task)

    def _job_task_done(self, task: _Task) -> None:
        self.finished.add(task.task_id)
        if all(t.task_id in self.finished for t in self.instances[task.step]):
            self.step_finished[task.step] = time.time()
            if self.state[task.step] == "running":
                self.state[task.step] = "succeeded"
            self._schedule_jobs()

    def _task_row(self, task: _Task, status: str, node: str | None = None) -> TaskWrite:
        index, count = self.index[task.task_id]
        return replace(super()._task_row(task, status, node),
                       foreach=((task.step, "instance", index, count),) if count > 1 else ())

    def interrupt(self) -> None:
        running = {t.step for t in self.running.values()}
        super().interrupt()
        for job in running:
            self.state[job] = "interrupted"

    def _record_steps(self) -> None:
        names = {"succeeded": "done", "failed": "failed", "skipped": "skipped", "interrupted": "incomplete",
                 "running": "incomplete", "pending": "pending"}
        for job in self.selected:
            self.ops.append(StepWrite(self.flow, self.run_id, job, names[self.state[job]],
                                      self.step_started.get(job), self.step_finished.get(job)))

    def status(self) -> str:
        if self.first_failure is not None or any(s != "succeeded" for s in self.state.values()):
            return "failed"
        return "succeeded"

    def error_text(self) -> str | None:
        if self.first_failure is None:
            return None
        _, _, error = self.first_failure
        return f"{error['type']}: {error['message']}"


_DONE = ("succeeded", "reused", "cached")


def plan_project_resume(project: Project, store: Store, origin_id: int | None) -> tuple[int, list[str] | None,
                                                                                      dict[tuple[str, int], ReusedTask]]:
    """Which run to resume (None: the project's latest), the jobs it ran (None: all), and the job
    instances to take from it: (job, instance) -> the task that made the result."""
    from keel.errors import NotFoundError, UsageError

    md = store.metadata
    name = project.name
    if origin_id is None:
        origin_id = md.runs.latest_run_id(name)
        if origin_id is None:
            raise NotFoundError(f"project {name} has no run to resume; run it first: keel project run -f {project.path}")
    origin = md.runs.get_run(name, origin_id)
    if origin is None or origin.kind != "project":
        raise NotFoundError(f"no project run {name}/{origin_id} to resume; list its runs with: keel runs {name}")
    if origin.effective_status == "running":
        raise UsageError(f"run {name}/{origin_id} is still running; wait for it, or stop it, before resuming it")
    if origin.effective_status == "succeeded":
        raise UsageError(f"run {name}/{origin_id} succeeded: every job is done, nothing to resume. "
                         f"Run jobs again with: keel project run -f {project.path} [--job NAME]")
    jobs = origin.params.get("jobs") if isinstance(origin.params, dict) else None
    selected = [j for j in jobs if j in project.jobs] if isinstance(jobs, list) else None
    instances: dict[str, dict[int, Any]] = {}
    for t in md.runs.list_tasks(name, origin_id):
        index = t.foreach[0][2] if t.foreach else 0  # (job, "instance", index, count)
        instances.setdefault(t.step, {})[int(index)] = t
    refs: dict[int, dict[str, dict[str, Any]]] = {}  # one query for the run, not one per task
    for a in md.runs.run_artifacts(name, origin_id):
        refs.setdefault(a["task_id"], {})[a["name"]] = {"key": a["key"], "serializer": a["serializer"],
                                                       "size": a["size"]}
    reuse: dict[tuple[str, int], ReusedTask] = {}
    whole: set[str] = set()  # jobs taken with every instance: their dependants may be taken too
    for job in project.order():
        spec = project.jobs[job]
        if any(dep not in whole for dep in spec.after if dep in project.jobs):
            continue  # something it needs runs again: so does it
        done = {i: t for i, t in instances.get(job, {}).items() if t.status in _DONE and i < spec.parallelism}
        for i, t in done.items():
            reuse[(job, i)] = ReusedTask(run_id=t.origin_run_id or origin_id, task_id=t.origin_task_id or t.task_id,
                                         artifacts=refs.get(t.task_id, {}))
        if len(done) == spec.parallelism:
            whole.add(job)
    return origin_id, selected, reuse


def _start_project_run(project: Project, options: ProjectRunOptions, store: Store, selected: list[str]) -> int:
    from keel.runtime.launch import environment_info

    code_key = store.artifacts.put_bytes(open(project.path, "rb").read())
    params: dict[str, Any] = {}
    if options.jobs:
        params["jobs"] = selected
    env = environment_info(project.path)
    env["project_file"] = os.path.abspath(project.path)
    env.setdefault("scheduler", _process_identity())  # lets readers see a crashed runner at once
    run_id: int = store.metadata.runs.new_run(project.name, kind="project", params=params, tags=options.tags,
                                         code_hash=code_key, code_key=code_key, environment=env,
                                         origin_run_id=options.resume)
    from keel.runtime.launch import refuse_reused_run_id

    refuse_reused_run_id(store, project.name, run_id)
    store.metadata.runs.register_steps(project.name, run_id, selected)
    return run_id


def _executor(project: Project, options: ProjectRunOptions, store: Store, output: Callable[..., None]) -> Executor:
    from keel.runtime.executors.local import LocalExecutor

    if not options.executors:
        return LocalExecutor(None, store.artifacts, output)
    from keel.runtime.placement import parse_with

    specs = [parse_with(w) for w in options.executors]
    if [w.name for w in specs] != ["ray"]:
        from keel.errors import UsageError

        raise UsageError("keel project run --with: only ray runs a project's jobs elsewhere "
                         "(--with ray[:address=...])")
    # A script job runs on a Ray worker; a flow job's run stays here and sends its own steps to
    # Ray (the same --with), so its scheduler, logs and retries work as in `flow.py run --with ray`.
    scripts = _script_jobs(project)
    local = None if len(scripts) == len(project.jobs) else LocalExecutor(None, store.artifacts, output)
    if not scripts:
        assert local is not None
        return local
    from keel.runtime.executors.ray import RayExecutor

    opts: dict[str, Any] = {}
    for w in specs:
        opts.update(w.options)
    requests = {name: {"cpu": job.resources.cpu or opts.get("cpu") or 1,
                       "memory": job.resources.memory or opts.get("memory"), "gpu": opts.get("gpu") or 0}
                for name, job in scripts.items()}
    ray = RayExecutor(None, store.artifacts, output, address=opts.get("address"), requests=requests,
                      flow_file=project.path)
    if local is None:
        return ray
    from keel.runtime.executors.routing import RoutingExecutor

    return RoutingExecutor({"ray": ray, "local": local}, dict.fromkeys(scripts, "ray"), default="local")


def _script_jobs(project: Project) -> dict[str, Any]:
    return {name: job for name, job in project.jobs.items() if job.flow is None}


def _report(result: ProjectResult, scheduler: ProjectScheduler, options: ProjectRunOptions, project: Project,
            console: Any) -> None:
    if result.ok:
        console.message(f"Run {result.pathspec} succeeded in {result.seconds:.2f}s.")
        return
    if result.status == "interrupted":
        console.message(f"Run {result.pathspec} was interrupted.")
        return
    lines = [f"Run {result.pathspec} failed: job(s) {', '.join(result.failed)} failed"
             + (f"; skipped: {', '.join(result.skipped)}" if result.skipped else "")]
    if scheduler.first_failure is not None:
        job, task_id, error = scheduler.first_failure
        lines.append(f"job {job!r} (task {task_id}): {error['type']}: {error['message']}")
        lines.append(f"See its output: keel logs {result.pathspec}/{job}/{task_id} --stderr")
        lines.append(f"Fix it, then: keel project resume -f {project.path} {result.run_id}"
                     f"  (or: {options.command} -f {project.path} --job {job} --downstream)")
    sys.stderr.write("\n" + "\n".join(lines) + "\n")
    sys.stderr.flush()


def run_project(project: Project, options: ProjectRunOptions | None = None, *, store: Store | None = None,
                on_started: Callable[[int], None] | None = None) -> ProjectResult:
    """Run the project's jobs (or the ones ``options`` selects) and return how it went."""
    from keel.runtime.console import RunConsole
    from keel.runtime.executors.local import machine_budget

    from keel.flow.tags import check_tags

    options = options or ProjectRunOptions()
    check_tags(options.tags)
    resumed: dict[tuple[str, int], ReusedTask] = {}
    if options.resume is not None:
        store = store or Store.from_env()
        origin, jobs, resumed = plan_project_resume(project, store, options.resume or None)
        options = replace(options, resume=origin, jobs=jobs, with_deps=False, downstream=False)
    budget = machine_budget()
    # --with ray: script jobs use the cluster's budget; flow jobs run their scheduler here
    remote = frozenset(_script_jobs(project)) if options.executors else frozenset()
    if not remote:
        check_job_resources(project, budget)
    selected = select_jobs(project, options)
    from keel.runtime.launch import alert_rules

    rules = alert_rules(list(project.alerts))  # a bad KEEL_ALERTS file stops the run before it exists
    store = store or Store.from_env()
    # connect before the run exists, so that a cluster that is not there is an error up front;
    # `io` is made once the run exists, and is looked up only when output arrives
    executor = _executor(project, options, store, lambda *chunk: io.output(*chunk))
    run_id = _start_project_run(project, options, store, selected)
    if on_started is not None:
        on_started(run_id)
    console = RunConsole(project.name, run_id, selected, quiet=options.quiet)
    io = _ProjectIO(store, console, project.name, run_id)
    console.message(f"Run {project.name}/{run_id} started: project {project.name}, "
                    f"{len(selected)} job(s) (KEEL_HOME={store.settings.home})")
    status = "failed"
    scheduler = ProjectScheduler(
        project=project, selected=selected, io=io, flow_executors=tuple(options.executors),
        flow=project.name, run_id=run_id, executor=executor,
        metadata=store.metadata.runs, artifacts=store.artifacts, scratch=str(store.scratch), params={},
        options=Options(max_workers=options.max_workers, budget=budget, remote_steps=remote,
                        origin_run_id=options.resume), events=io,
        cache=_job_cache(project, options, store, run_id, io))
    scheduler.resumed = resumed
    if options.resume is not None:
        console.message(f"Resuming {project.name}/{options.resume}: {len(resumed)} job instance(s) taken from it")
    started = time.time()
    from keel.runtime.launch import start_alerts

    alerts = start_alerts(rules, store.metadata, project.name, run_id)
    try:
        outcome = drive(scheduler, executor, console, project.name, run_id, what="jobs")
        status = outcome.status if outcome.status == "interrupted" else scheduler.status()
        error = outcome.message if status == "interrupted" else scheduler.error_text()
        store.metadata.runs.set_run_status(project.name, run_id, status, error=error)
    finally:
        if alerts is not None:
            alerts.close()
        io.close()
        console.close(status)
    result = ProjectResult(project=project.name, run_id=run_id, status=status,
                           failed=[j for j, s in scheduler.state.items() if s == "failed"],
                           skipped=[j for j, s in scheduler.state.items() if s == "skipped"],
                           error=error, seconds=time.time() - started)
    _report(result, scheduler, options, project, console)
    return result


def _job_cache(project: Project, options: ProjectRunOptions, store: Store, run_id: int, io: Any) -> Any:
    """The run's job cache, or None when no job is cached (``cache: true``, ``--cache``)."""
    from keel.runtime.cache import CacheSettings
    from keel.runtime.jobcache import JobCache

    settings = CacheSettings.resolve(options.cache)
    if settings.mode == "off" or (settings.mode == "auto" and not any(j.cache for j in project.jobs.values())):
        return None

    def alive(flow: str, other: int) -> bool:
        rec = store.metadata.runs.get_run(flow, other)
        return rec is not None and rec.effective_status == "running"

    return JobCache(project=project, run_id=run_id, artifacts=store.artifacts, store=store.metadata.cache,
                    settings=settings, alive=alive, warn=io.message)


def _process_identity() -> dict[str, Any]:
    from keel.store.liveness import process_identity

    return dict(process_identity())


def _spark_settings(addon: Any) -> dict[str, Any]:
    """The spark add-on's settings as plain values (they travel with the command task)."""
    dump = getattr(addon, "model_dump", None)
    return dict(dump()) if dump is not None else dict(addon or {})
