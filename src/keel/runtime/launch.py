"""Start a run: check the flow, open the store, record the run, drive the scheduler.

This is what ``python flow.py run`` and ``keel run flow.py`` call. Settings (KEEL_HOME and
the store URLs) are read here, when the run starts.
"""

from __future__ import annotations

import codecs
import os
import platform
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from keel.errors import DefinitionError, RunInterrupted, TaskFailed
from keel.flow.graph import FlowGraph
from keel.runtime.executors.base import Executor
from keel.runtime.scheduler import Events, Options, RunOutcome, Scheduler
from keel.runtime.task import TaskSpec
from keel.settings import Settings
from keel.store import Store


@dataclass(frozen=True)
class RunRequest:
    """What to run and how: a flow run, or a resume (``options.reuse`` and ``origin_run_id``)."""

    flow_cls: type
    params: dict[str, Any]
    flow_file: str
    tags: list[str] = field(default_factory=list)
    system_tags: list[str] = field(default_factory=list)  # Keel's own (project:, sweep:, reproduces:)
    options: Options = field(default_factory=Options)
    quiet: bool = False
    kind: str = "flow"
    origin_run_id: int | None = None
    command: str = ""              # e.g. "python flow.py resume": the hint after a failure adds the id
    executors: list[str] = field(default_factory=list)  # --with NAME[:key=value,...] (ray, kubernetes)
    branch: str | None = None      # @project: --branch B (test.B)
    production: bool = False       # @project: --production (prod)


@dataclass
class RunResult:
    flow: str
    run_id: int
    status: str
    outcome: RunOutcome
    seconds: float

    @property
    def pathspec(self) -> str:
        return f"{self.flow}/{self.run_id}"

    @property
    def ok(self) -> bool:
        return self.status == "succeeded"

    def raise_for_status(self) -> None:
        """Raise :class:`TaskFailed` (or :class:`RunInterrupted`) unless the run succeeded."""
        if self.status == "interrupted":
            raise RunInterrupted(f"flow run {self.pathspec} was interrupted")
        if self.status != "succeeded":
            raise TaskFailed(f"flow run {self.pathspec} failed")


def check_resources(graph: FlowGraph, budget: dict[str, float], skip: frozenset[str] = frozenset()) -> None:
    """Refuse, before anything runs, a step that asks for more than this machine has.
    ``skip``: steps that run elsewhere (Ray, Kubernetes)."""
    problems = []
    for name in graph.sorted_nodes():
        node = graph[name]
        if name in skip:
            continue
        for deco in node.decorators:
            if deco.name != "resources":
                continue
            if deco.cpu > budget["cpu"]:
                problems.append(f"{deco.file or node.file}:{deco.line or node.lineno}: step {name!r} asks for "
                                f"@resources(cpu={deco.cpu:g}) but this machine has {budget['cpu']:g} cores. "
                                f"Lower it, or run the step on a cluster with --with ray")
            if deco.memory > budget["memory"]:
                problems.append(f"{deco.file or node.file}:{deco.line or node.lineno}: step {name!r} asks for "
                                f"@resources(memory={deco.memory:g}) MB but this machine has "
                                f"{budget['memory']:,.0f} MB. Lower it, or run the step on a cluster with --with ray")
            if "gpu" in budget and (deco.gpu or 0) > budget["gpu"]:
                has = f"{budget['gpu']:g} GPU(s)" if budget["gpu"] else "no GPU"
                problems.append(f"{deco.file or node.file}:{deco.line or node.lineno}: step {name!r} asks for "
                                f"@resources(gpu={deco.gpu:g}) but this machine has {has}. Run it where there "
                                f"is one: --with ray, or @kubernetes(gpu=...)")
    if problems:
        raise DefinitionError("\n".join(problems))


def environment_info(flow_file: str) -> dict[str, Any]:
    """Python, platform, installed packages and git state, kept with every run."""
    packages = installed_packages()
    info: dict[str, Any] = {
        "python": sys.version.split()[0], "implementation": platform.python_implementation(),
        "platform": platform.platform(), "executable": sys.executable, "argv": sys.argv,
        "cwd": os.getcwd(), "flow_file": os.path.abspath(flow_file),
        "packages": dict(sorted(packages.items(), key=lambda kv: kv[0].lower())),
    }
    info.update(_git_info(os.path.dirname(os.path.abspath(flow_file))))
    return info


def installed_packages() -> dict[str, str]:
    """Name -> version of every installed distribution, read from the *.dist-info folder names
    on sys.path (milliseconds, where parsing each package's metadata takes a quarter second)."""
    packages: dict[str, str] = {}
    for entry in sys.path:
        try:
            names = os.listdir(entry or ".")
        except OSError:
            continue
        for name in names:
            if name.endswith(".dist-info") and "-" in name:
                dist, _, version = name[: -len(".dist-info")].rpartition("-")
                packages.setdefault(dist.replace("_", "-"), version)
    return packages


def _git_info(folder: str) -> dict[str, Any]:
    try:
        commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=folder, capture_output=True, text=True,
                                timeout=5)
        if commit.returncode != 0:
            return {}
        dirty = subprocess.run(["git", "status", "--porcelain"], cwd=folder, capture_output=True, text=True,
                               timeout=5)
        return {"git_commit": commit.stdout.strip(), "git_dirty": bool(dirty.stdout.strip())}
    except (OSError, subprocess.SubprocessError):
        return {}


def prewarm_imports(flow_file: str) -> list[str]:
    """Import, in the warm scheduler, the modules the flow file imports (also inside steps),
    so that forked tasks find them loaded instead of each paying the import again."""
    import ast
    import importlib

    try:
        tree = ast.parse(Path(flow_file).read_text())
    except (OSError, SyntaxError, ValueError):
        return []
    names: list[str] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names += [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            names.append(node.module)
    loaded = []
    for name in dict.fromkeys(names):
        if name in sys.modules:
            continue
        try:
            importlib.import_module(name)
            loaded.append(name)
        except Exception:  # noqa: BLE001 - a task will report its own import errors
            continue
    return loaded


def refuse_reused_run_id(store: Store, flow: str, run_id: int) -> None:
    """A run id the database just gave out must be new to the store too. Logs already kept under it
    mean that the database was emptied or replaced while the logs and artifacts stayed: refuse
    (never mix two runs' logs), and mark the new record failed with the reason."""
    from keel.errors import MetadataError

    folder = store.logs.root / flow / str(run_id) if hasattr(store.logs, "root") else None
    if folder is None or not folder.exists():
        return
    message = (f"the store does not match its metadata database: {folder} holds the logs of a run {flow}/{run_id} "
               f"that the database ({store.settings.metadata_url}) did not know, so the database was emptied or "
               f"replaced while KEEL_HOME kept its logs and artifacts. Nothing was run. Restore the database, or "
               f"use a new KEEL_HOME for a new store")
    store.metadata.runs.set_run_status(flow, run_id, "failed", error=f"StoreMismatch: {message}")
    raise MetadataError(message)


class _RunIO(Events):
    """Tees task output to the log store and the console; forwards scheduler events."""

    def __init__(self, store: Store, console: Any, flow: str, run_id: int):
        self.store, self.console, self.flow, self.run_id = store, console, flow, run_id
        self.files: dict[tuple[int, str], Any] = {}
        self.decoders: dict[tuple[int, str], Any] = {}
        self.log_error: str | None = None  # the logs could not be written (disk full...): said once
        self.lost: set[int] = set()  # tasks whose output was not all kept: each recorded with the task

    def _log_failed(self, exc: OSError) -> None:
        """A log write failed: keep the run and the tasks' results, stop writing logs, say so once."""
        where = getattr(self.store.logs, "root", None)
        self.log_error = f"{exc.strerror or exc}" + (f" ({where}/{self.flow}/{self.run_id})" if where else "")
        for fh in self.files.values():
            try:
                fh.close()
            except OSError:
                pass
        self.files.clear()
        self.console.message(f"warning: the run's logs cannot be written any more: {self.log_error}. "
                             f"The run goes on and keeps its results; its output from now on is not kept.")

    def _close(self, fh: Any) -> bool:
        try:
            fh.close()
            return True
        except OSError as exc:
            if self.log_error is None:
                self._log_failed(exc)
            return False

    def _record_lost(self, step: str, task_id: int, attempt: int | None) -> None:
        """Record with the task that its log misses output (``keel show`` lists it), once per task."""
        from keel.store.records import TASK_LOG_LOST, EventWrite, WriteOp

        self.lost.add(task_id)
        ops: list[WriteOp] = [EventWrite(self.flow, self.run_id, TASK_LOG_LOST, step=step, task_id=task_id,
                                         attempt=attempt, detail={"error": self.log_error})]
        try:
            self.store.metadata.runs.write_batch(ops)
        except Exception:  # noqa: BLE001 - the database may sit on the same full disk; the console said it
            pass

    def output(self, spec: TaskSpec, stream: str, data: bytes) -> None:
        key = (spec.task_id, stream)
        if key not in self.decoders:
            self.decoders[key] = codecs.getincrementaldecoder("utf-8")("replace")
        if self.log_error is None:
            try:
                fh = self.files.get(key)
                if fh is None:
                    fh = self.files[key] = self.store.logs.open_for_append(self.flow, self.run_id, spec.step,
                                                                          spec.task_id, stream)
                fh.write(data)
            except OSError as exc:
                self._log_failed(exc)
        if self.log_error is not None and spec.task_id not in self.lost:
            self._record_lost(spec.step, spec.task_id, spec.attempt)
        text = self.decoders[key].decode(data)
        if text:
            self.console.output(spec.pathspec, text, stderr=stream == "stderr")

    def task_started(self, step: str, task_id: int, attempt: int) -> None:
        self.console.task_started(step, task_id, attempt)

    def task_finished(self, step: str, task_id: int, status: str) -> None:
        for stream in ("stdout", "stderr"):
            fh = self.files.pop((task_id, stream), None)
            if fh is not None and not self._close(fh) and task_id not in self.lost:
                self._record_lost(step, task_id, None)
            self.decoders.pop((task_id, stream), None)
        self.console.flush_output(f"{self.flow}/{self.run_id}/{step}/{task_id}")
        self.console.task_finished(step, task_id, status)

    def tasks_created(self, step: str, n: int) -> None:
        self.console.tasks_created(step, n)

    def message(self, text: str) -> None:
        self.console.message(text)

    def idle(self) -> None:
        self.console.refresh()

    def close(self) -> None:
        for fh in list(self.files.values()):
            self._close(fh)
        self.files.clear()


def _raise_interrupt(signum: int, frame: Any) -> None:
    raise KeyboardInterrupt


def drive(scheduler: Scheduler, executor: Executor, console: Any, flow: str, run_id: int,
          what: str = "tasks") -> RunOutcome:
    """Run ``scheduler`` to the end: SIGTERM and Ctrl-C stop the tasks and return an interrupted
    outcome; a bug of ours stops them, is recorded on the run and raised. The executor is closed."""
    previous = signal.signal(signal.SIGTERM, _raise_interrupt)
    outcome = RunOutcome(status="failed", message="the scheduler stopped unexpectedly")
    try:
        try:
            outcome = scheduler.run()
        except KeyboardInterrupt:
            console.message(f"Run {flow}/{run_id} interrupted: stopping its {what}")
            scheduler.interrupt()
            outcome = RunOutcome(status="interrupted", message="interrupted by Ctrl-C or SIGTERM")
        except BaseException as exc:  # a bug of ours: stop the tasks, record it, and say so
            scheduler.interrupt()
            outcome.message = f"internal error in the scheduler: {type(exc).__name__}: {exc}"
            scheduler.metadata.set_run_status(flow, run_id, "failed", error=outcome.message)
            raise
        scheduler.finish()
    finally:
        signal.signal(signal.SIGTERM, previous)
        executor.close()  # e.g. the local executor's guard process
    return outcome


def alert_rules(extra: list[Any] | None = None) -> list[Any]:
    """The alert rules for a run about to start (registered, ``KEEL_ALERTS``'s, ``extra``), read
    before the run exists so that a bad rules file stops it up front. Empty without rules: a run
    without rules imports nothing."""
    if not Settings.from_env().alerts_file and not extra:
        alerts_mod = sys.modules.get("keel.alerts")
        if alerts_mod is None or not getattr(alerts_mod, "_registered", None):
            return []
    from keel.alerts import active_rules

    return active_rules(extra)


def start_alerts(rules: list[Any], metadata: Any, flow: str, run_id: int) -> Any:
    """The run's alert evaluator (``keel.alerts.watch.RunAlerts``, a thread), or None without rules."""
    if not rules:
        return None
    from keel.alerts.watch import RunAlerts

    return RunAlerts(rules, metadata, flow, run_id).start()


def start_run(req: RunRequest, *, executor_factory: Callable[..., Executor] | None = None,
              store: Store | None = None, on_started: Callable[[int], None] | None = None) -> RunResult:
    """Run a flow to the end and return how it went. Raises only for problems found up front."""
    from keel.runtime.console import RunConsole
    from keel.runtime.context import run_context
    from keel.runtime.executors.local import LocalExecutor, machine_budget

    from keel.flow.tags import check_tags

    check_tags(req.tags)                      # a user's --tag cannot use the reserved prefixes
    check_tags(req.system_tags, system=True)
    graph = FlowGraph.of(req.flow_cls)
    graph.check()
    from keel.flow.parameters import run_configs

    graph.bind_configs(run_configs(req.flow_cls, req.params))  # config_expr in decorators, from the frozen configs
    context = run_context(req.flow_cls, req.branch, req.production)
    rules = alert_rules()
    budget = machine_budget()
    from keel.runtime.placement import plan_placement  # where each step runs (--with, @ray, @kubernetes)

    placement = plan_placement(graph, req.executors)
    check_resources(graph, budget, placement.remote_steps)
    req.options.budget = budget
    req.options.remote_steps = placement.remote_steps
    req.options.origin_run_id = req.origin_run_id
    settings = Settings.from_env()  # read once, when the run starts
    req.options.system_metrics = settings.system_metrics_every if settings.system_metrics else 0.0
    store = store or Store.from_env(settings)
    flow = graph.name
    artifacts = store.artifacts
    remote: dict[str, Any] = {}
    if executor_factory is None and placement.route:  # connect before the run exists: errors come first
        # `io` is made once the run exists; the lambda looks it up only when output arrives.
        remote = placement.connect(req.flow_cls, artifacts, lambda *chunk: io.output(*chunk), req.flow_file)
    param_refs = {name: artifacts.put(value).to_dict() for name, value in req.params.items()}
    code = Path(req.flow_file).read_bytes() if os.path.exists(req.flow_file) else b""
    code_key = artifacts.put_bytes(code) if code else None
    environment = environment_info(req.flow_file)
    snapshot_warning = None
    if code:  # the flow file and the local modules it imports (keel.tracking.snapshot)
        from keel.tracking.snapshot import take_snapshot

        try:
            environment["snapshot"], snapshot_warning = take_snapshot(req.flow_file, artifacts)
        except (OSError, ValueError) as exc:
            snapshot_warning = f"the code snapshot could not be taken ({exc}); the run keeps only the flow file"
    run_id = store.metadata.runs.new_run(
        flow, params=req.params, tags=[*req.tags, *req.system_tags], kind=req.kind, code_hash=code_key,
        code_key=code_key, environment=environment, origin_run_id=req.origin_run_id, user=context.username,
        system_tags=context.system_tags)
    refuse_reused_run_id(store, flow, run_id)
    req.options.task_context = {**context.task_fields(flow, req.tags),
                                "card_dir": str(store.settings.home / "cards")}  # current.card.refresh()
    if on_started is not None:
        on_started(run_id)
    steps = graph.sorted_nodes()
    store.metadata.runs.register_steps(flow, run_id, steps)
    console = RunConsole(flow, run_id, steps, quiet=req.quiet)
    io = _RunIO(store, console, flow, run_id)
    console.message(f"Run {flow}/{run_id} started (KEEL_HOME={store.settings.home})")
    for executor in remote.values():  # say which cluster the run joined, and how it was found
        if getattr(executor, "name", "") == "ray":
            console.message(f"Steps on Ray run on the cluster at {executor.address} ({executor.address_source})")
    if snapshot_warning:
        console.message(f"Warning: {snapshot_warning}")
    prewarm_imports(req.flow_file)
    factory = executor_factory or (lambda: placement.build(
        steps, lambda: LocalExecutor(req.flow_cls, artifacts, io.output), remote))
    executor = factory()
    scheduler = Scheduler(flow=flow, run_id=run_id, graph=graph, executor=executor, metadata=store.metadata.runs,
                          artifacts=artifacts, scratch=str(store.scratch), params=param_refs,
                          options=req.options, events=io,
                          cache=_step_cache(req, store, graph, run_id, param_refs, io))
    started = time.time()
    outcome = RunOutcome(status="failed", message="the scheduler stopped unexpectedly")
    alerts = start_alerts(rules, store.metadata, flow, run_id)
    try:
        outcome = drive(scheduler, executor, console, flow, run_id)
        error = None
        if outcome.error:
            error = f"{outcome.error.get('type')}: {outcome.error.get('message')}"
        store.metadata.runs.set_run_status(flow, run_id, outcome.status, error=error or outcome.message)
    finally:
        if alerts is not None:
            alerts.close()
        io.close()
        console.close(outcome.status)
    result = RunResult(flow=flow, run_id=run_id, status=outcome.status, outcome=outcome,
                       seconds=time.time() - started)
    _report(result, req, console)
    return result


def _step_cache(req: RunRequest, store: Store, graph: FlowGraph, run_id: int, params: dict[str, Any],
                io: Any) -> Any:
    """The run's step cache, or None when no step of the flow is cached."""
    if req.options.cache is None and not any(d.name == "cache" for name in graph.sorted_nodes()
                                             for d in graph[name].decorators):
        return None   # nothing to cache, and no need to import the cache (and its hashing)
    from keel.runtime.cache import CacheSettings, StepCache

    settings = CacheSettings.resolve(req.options.cache)
    if settings.mode == "off" or (settings.mode == "auto" and not any(
            d.name == "cache" for name in graph.sorted_nodes() for d in graph[name].decorators)):
        return None
    def alive(flow: str, other: int) -> bool:
        rec = store.metadata.runs.get_run(flow, other)
        return rec is not None and rec.effective_status == "running"

    return StepCache(flow=req.flow_cls.__name__, run_id=run_id, flow_cls=req.flow_cls, graph=graph,
                     params=params, artifacts=store.artifacts, store=store.metadata.cache,
                     settings=settings, alive=alive, warn=io.message)


def _report(result: RunResult, req: RunRequest, console: Any) -> None:
    out = result.outcome
    if result.ok:
        console.message(f"Run {result.pathspec} succeeded in {result.seconds:.2f}s.")
        return
    resume = f"{req.command} {result.run_id}" if req.command else f"keel resume {result.pathspec}"
    if out.status == "interrupted":
        console.message(f"Run {result.pathspec} was interrupted. To finish it: {resume}")
        return
    error = out.error or {}
    text = f"Run {result.pathspec} failed at step '{out.failed_step}' (task {out.failed_task})"
    detail = f"{error.get('type')}: {error.get('message')}"
    tb = (error.get("traceback") or "").rstrip()
    sys.stderr.write(f"\n{text}: {detail}\n")
    if tb:
        sys.stderr.write(tb + "\n")
    sys.stderr.write(f"Fix it, then: {resume}\n")
    sys.stderr.flush()
