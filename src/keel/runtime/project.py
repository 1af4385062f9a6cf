"""Run a project's jobs (keel.yaml): in dependency order, independent jobs at the same time.

    project = load_project("keel.yaml", flow_loader=load_flow_file)
    result = run_project(project, ProjectRunOptions(jobs=["train"], with_deps=True))

A project run is a run in the store like a flow's: the project's name is the flow name, each
job is a step, each instance of a job (``parallelism: N``) is a task with its attempts, logs
and metrics, so ``keel runs``, ``keel show``, ``keel logs`` and the client read it as they
read a flow run.

Every job instance is a subprocess in the project folder, in its own process group:
an ``entrypoint`` through ``/bin/sh -c``, a ``flow`` as ``python -m keel.cli.main run FILE
--PARAM V...`` (a flow run of its own, tagged ``project:NAME/RUN``; the job's task keeps the
flow run's pathspec as its artifact ``flow_run``). The directory of this Python is put first
on the job's PATH, so ``python`` and ``keel`` in an entrypoint are the ones Keel runs with.
A script reaches ``current`` through environment variables (see ``current._activate_from_env``);
its metrics spool and tags file are read into the store when the instance ends.
"""

from __future__ import annotations

import codecs
import json
import os
import selectors
import signal
import subprocess
import sys
import time
from collections import deque
from dataclasses import dataclass, field
from typing import IO, Any, Callable

from keel.errors import Issue, ProjectError
from keel.flow.project import Job, Project, format_duration, param_args
from keel.store import Store

_KILL_GRACE = 3.0      # seconds between SIGTERM and SIGKILL for a job that timed out or is stopped
_PIPE_GRACE = 1.0      # after the process ended, how long its pipes may stay open (a daemon child)
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


@dataclass
class _Instance:
    job: str
    index: int
    count: int
    task_id: int
    parents: list[int]
    attempt: int = 0
    created_at: float = field(default_factory=time.time)
    started_at: float | None = None
    proc: subprocess.Popen[bytes] | None = None
    exited_at: float | None = None
    deadline: float | None = None
    kill_at: float | None = None
    timed_out: bool = False
    pipes: dict[int, str] = field(default_factory=dict)            # fd -> stream
    logs: dict[str, IO[bytes]] = field(default_factory=dict)
    decoders: dict[str, Any] = field(default_factory=dict)
    stderr_tail: str = ""
    scratch: str = ""
    done: bool = False

    @property
    def key(self) -> str:
        return f"{self.job}-{self.task_id}-{self.attempt}"


class ProjectRunner:
    """One project run: the loop that starts job instances, follows them and records them."""

    def __init__(self, project: Project, options: ProjectRunOptions, store: Store, budget: dict[str, float]):
        self.project, self.options, self.store, self.budget = project, options, store, budget
        self.md = store.metadata
        self.selected = select_jobs(project, options)
        self.state: dict[str, str] = dict.fromkeys(self.selected, "pending")
        self.instances: dict[str, list[_Instance]] = {}
        self.ready: deque[_Instance] = deque()
        self.running: list[_Instance] = []
        self.used = {"cpu": 0.0, "memory": 0.0}
        self.ops: list[tuple[str, Any]] = []
        self.selector = selectors.DefaultSelector()
        self.first_failure: tuple[str, _Instance, dict[str, str]] | None = None
        self.job_started: dict[str, float] = {}
        self.job_finished: dict[str, float] = {}
        self._next_task = 1
        self._last_beat = 0.0
        self.run_id = 0
        self.console: Any = None

    # -- the run ---------------------------------------------------------------------------
    def start(self) -> int:
        from keel.runtime.console import RunConsole
        from keel.runtime.launch import environment_info

        code = open(self.project.path, "rb").read()
        code_key = self.store.artifacts.put_bytes(code)
        params: dict[str, Any] = {}
        if self.options.jobs:
            params["jobs"] = self.selected
        env = environment_info(self.project.path)
        env["project_file"] = os.path.abspath(self.project.path)
        env.setdefault("scheduler", _process_identity())  # lets readers see a crashed runner at once
        self.run_id = self.md.new_run(self.project.name, kind="project", params=params, tags=self.options.tags,
                                      code_hash=code_key, code_key=code_key, environment=env)
        self.md.register_steps(self.project.name, self.run_id, self.selected)
        self.console = RunConsole(self.project.name, self.run_id, self.selected, quiet=self.options.quiet)
        self.console.message(f"Run {self.project.name}/{self.run_id} started: project {self.project.name}, "
                             f"{len(self.selected)} job(s) (KEEL_HOME={self.store.settings.home})")
        return self.run_id

    def run(self) -> ProjectResult:
        started = time.time()
        status = "failed"
        previous = signal.signal(signal.SIGTERM, _raise_interrupt)
        try:
            try:
                self._loop()
                status = "failed" if self.first_failure or any(
                    s != "succeeded" for s in self.state.values()) else "succeeded"
            except KeyboardInterrupt:
                self.console.message(f"Run {self.project.name}/{self.run_id} interrupted: stopping its jobs")
                self._interrupt()
                status = "interrupted"
            self._record_steps()
            self._flush()
            error = self._error_text(status)
            self.md.set_run_status(self.project.name, self.run_id, status, error=error)
        finally:
            signal.signal(signal.SIGTERM, previous)
            self.selector.close()
            if self.console is not None:
                self.console.close(status)
        result = ProjectResult(project=self.project.name, run_id=self.run_id, status=status,
                               failed=[j for j, s in self.state.items() if s == "failed"],
                               skipped=[j for j, s in self.state.items() if s == "skipped"],
                               error=self._error_text(status), seconds=time.time() - started)
        self._report(result)
        return result

    def _loop(self) -> None:
        while True:
            self._schedule_jobs()
            self._launch_ready()
            if not self.running and not self.ready:
                break
            self._pump(self._wait_time())
            self._reap()
            self._check_deadlines()
            self._heartbeat()
            self._flush()

    def _schedule_jobs(self) -> None:
        """Make the instances of every job whose dependencies succeeded; skip those whose failed."""
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
                    self.console.message(f"job {job!r} skipped: it needs {broken[0]!r}, which "
                                         f"{'failed' if self.state[broken[0]] == 'failed' else 'did not run'}")
                    changed = True
                elif all(self.state[d] == "succeeded" for d in deps):
                    self._create_instances(job, deps)
                    changed = True

    def _create_instances(self, job: str, deps: list[str]) -> None:
        count = self.project.jobs[job].parallelism
        parents = [i.task_id for d in deps for i in self.instances.get(d, [])]
        self.state[job] = "running"
        made = []
        for index in range(count):
            inst = _Instance(job=job, index=index, count=count, task_id=self._next_task, parents=parents)
            self._next_task += 1
            made.append(inst)
            self.ready.append(inst)
        self.instances[job] = made
        self.console.tasks_created(job, count)

    def _fits(self, job: Job) -> bool:
        if not self.running:
            return True
        return (self.used["cpu"] + job.resources.cpu <= self.budget["cpu"] + 1e-9
                and self.used["memory"] + job.resources.memory <= self.budget["memory"])

    def _launch_ready(self) -> None:
        checked = 0
        while self.ready and len(self.running) < self.options.max_workers and checked < len(self.ready):
            inst = self.ready[0]
            job = self.project.jobs[inst.job]
            if not self._fits(job):
                self.ready.rotate(-1)
                checked += 1
                continue
            self.ready.popleft()
            checked = 0
            self._launch(inst, job)

    def _wait_time(self) -> float:
        now = time.time()
        wake = now + 0.25
        for inst in self.running:
            for t in (inst.deadline, inst.kill_at):
                if t is not None:
                    wake = min(wake, t)
        return max(0.0, wake - now)

    # -- one instance ------------------------------------------------------------------------
    def _launch(self, inst: _Instance, job: Job) -> None:
        from keel.runtime.executors.local import _die_with_parent

        scratch = os.path.join(str(self.store.scratch), f"{self.project.name}-{self.run_id}-{inst.key}")
        inst.scratch = scratch
        env = self._environment(inst, job, scratch)
        if job.flow is not None:
            argv = [sys.executable, "-m", "keel.cli.main", "run", self.project.flow_path(inst.job),
                    *param_args(job.params), "--tag", f"project:{self.project.name}/{self.run_id}",
                    "--run-id-file", scratch + ".flowrun"]
        else:
            assert job.entrypoint is not None
            argv = ["/bin/sh", "-c", job.entrypoint]
        if "spark" in job.addons:  # the job runs under the add-on, which starts and stops its cluster
            from keel.addons.spark import job_command

            argv = job_command(self.project.addons.spark, argv)
        now = time.time()
        inst.started_at = now
        inst.exited_at = None
        inst.timed_out = False
        inst.kill_at = None
        inst.deadline = now + job.timeout if job.timeout else None
        inst.stderr_tail = ""
        self.job_started.setdefault(inst.job, now)
        try:
            inst.proc = subprocess.Popen(argv, cwd=self.project.root, env=env, stdin=subprocess.DEVNULL,
                                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, start_new_session=True,
                                         preexec_fn=_die_with_parent)
        except OSError as exc:
            self.ops.append(("task", self._task_row(inst, "running")))
            self.console.task_started(inst.job, inst.task_id, inst.attempt)
            self._ended(inst, None, {"type": "JobFailed", "message": f"could not start: {exc}"})
            return
        self.used["cpu"] += job.resources.cpu
        self.used["memory"] += job.resources.memory
        self.running.append(inst)
        for stream, pipe in (("stdout", inst.proc.stdout), ("stderr", inst.proc.stderr)):
            assert pipe is not None
            fd = pipe.fileno()
            os.set_blocking(fd, False)
            inst.pipes[fd] = stream
            self.selector.register(fd, selectors.EVENT_READ, (inst, stream))
        self.ops.append(("task", self._task_row(inst, "running")))
        self.console.task_started(inst.job, inst.task_id, inst.attempt)

    def _environment(self, inst: _Instance, job: Job, scratch: str) -> dict[str, str]:
        settings = self.store.settings
        env = dict(os.environ)
        for var in ("KEEL_RUN_ID", "KEEL_STEP_NAME", "KEEL_TASK_ID", "KEEL_METRICS_PATH", "KEEL_TAGS_PATH",
                    "KEEL_RETRY_COUNT", "KEEL_FLOW_NAME"):
            env.pop(var, None)  # a project run started from inside a job is a run of its own
        env.update(job.env)
        bindir = os.path.dirname(sys.executable)
        env["PATH"] = bindir + os.pathsep + env.get("PATH", "")
        env.update({
            "KEEL_HOME": str(settings.home), "KEEL_METADATA_URL": settings.metadata_url,
            "KEEL_ARTIFACT_URL": settings.artifact_url, "PYTHONUNBUFFERED": "1",
            "KEEL_PROJECT": self.project.name, "KEEL_PROJECT_RUN": f"{self.project.name}/{self.run_id}",
            "KEEL_JOB": inst.job, "KEEL_INSTANCE": str(inst.index), "KEEL_INSTANCES": str(inst.count),
        })
        if job.flow is None:  # a script: `current` activates itself from these
            env.update({
                "KEEL_FLOW_NAME": self.project.name, "KEEL_RUN_ID": str(self.run_id), "KEEL_STEP_NAME": inst.job,
                "KEEL_TASK_ID": str(inst.task_id), "KEEL_RETRY_COUNT": str(inst.attempt),
                "KEEL_METRICS_PATH": scratch + ".metrics", "KEEL_TAGS_PATH": scratch + ".tags",
            })
        return env

    def _pump(self, timeout: float) -> None:
        """Copy what the running instances wrote to the log store and the console."""
        if not self.selector.get_map():
            time.sleep(timeout)
            return
        for key, _ in self.selector.select(timeout):
            inst, stream = key.data
            self._read(inst, key.fd, stream)

    def _read(self, inst: _Instance, fd: int, stream: str) -> None:
        try:
            data = os.read(fd, 1 << 16)
        except BlockingIOError:
            return
        except OSError:
            data = b""
        if not data:
            self._close_pipe(inst, fd)
            return
        fh = inst.logs.get(stream)
        if fh is None:
            fh = inst.logs[stream] = self.store.logs.open_for_append(self.project.name, self.run_id, inst.job,
                                                                    inst.task_id, stream)
            inst.decoders[stream] = codecs.getincrementaldecoder("utf-8")("replace")
        fh.write(data)
        text = inst.decoders[stream].decode(data)
        if stream == "stderr":
            inst.stderr_tail = (inst.stderr_tail + text)[-_STDERR_TAIL:]
        if text:
            self.console.output(self._pathspec(inst), text, stderr=stream == "stderr")

    def _close_pipe(self, inst: _Instance, fd: int) -> None:
        if fd in inst.pipes:
            self.selector.unregister(fd)
            stream = inst.pipes.pop(fd)
            pipe = getattr(inst.proc, stream, None)
            if pipe is not None:
                pipe.close()  # through its file object: a bare os.close would let it close a reused fd later
            else:
                os.close(fd)

    def _reap(self) -> None:
        now = time.time()
        for inst in list(self.running):
            assert inst.proc is not None
            if inst.exited_at is None and inst.proc.poll() is not None:
                inst.exited_at = now
                for fd, stream in list(inst.pipes.items()):  # what is left in the pipes
                    while fd in inst.pipes:
                        before = len(inst.pipes)
                        self._read(inst, fd, stream)
                        if len(inst.pipes) == before and not _readable(fd):
                            break
            if inst.exited_at is None:
                continue
            if inst.pipes and now - inst.exited_at < _PIPE_GRACE:
                continue  # a process the job left behind may still hold them; wait a little
            for fd in list(inst.pipes):
                self._close_pipe(inst, fd)
            self.running.remove(inst)
            job = self.project.jobs[inst.job]
            self.used["cpu"] -= job.resources.cpu
            self.used["memory"] -= job.resources.memory
            self._finished(inst)

    def _check_deadlines(self) -> None:
        now = time.time()
        for inst in self.running:
            if inst.proc is None or inst.exited_at is not None:
                continue
            if inst.deadline is not None and now >= inst.deadline and not inst.timed_out:
                inst.timed_out = True
                inst.kill_at = now + _KILL_GRACE
                _signal_group(inst.proc.pid, signal.SIGTERM)
            elif inst.kill_at is not None and now >= inst.kill_at:
                inst.kill_at = None
                _signal_group(inst.proc.pid, signal.SIGKILL)

    def _finished(self, inst: _Instance) -> None:
        assert inst.proc is not None
        code = inst.proc.returncode
        if code == 0 and not inst.timed_out:
            self._ended(inst, 0, None)
            return
        job = self.project.jobs[inst.job]
        if inst.timed_out:
            error = {"type": "TimeoutError",
                     "message": f"job {inst.job!r} ran longer than its timeout of {format_duration(job.timeout or 0)}"}
        elif code is not None and code < 0:
            try:
                name = signal.Signals(-code).name
            except ValueError:
                name = f"signal {-code}"
            error = {"type": "JobFailed", "message": f"job {inst.job!r} was killed by {name}"}
        else:
            error = {"type": "JobFailed", "message": f"job {inst.job!r} exited with status {code}"}
        error["traceback"] = inst.stderr_tail
        self._ended(inst, code, error)

    def _ended(self, inst: _Instance, code: int | None, error: dict[str, str] | None) -> None:
        job = self.project.jobs[inst.job]
        self._ingest(inst)
        for fh in inst.logs.values():
            fh.close()
        inst.logs.clear()
        self.console.flush_output(self._pathspec(inst))
        status = "succeeded" if error is None else "failed"
        self._record_attempt(inst, status, code, error)
        if error is not None and inst.attempt < job.retries:
            self.console.task_finished(inst.job, inst.task_id, "retrying")
            inst.attempt += 1
            self.ready.append(inst)
            return
        self._record_link(inst)
        self.ops.append(("task", self._task_row(inst, status)))
        self.console.task_finished(inst.job, inst.task_id, status)
        if error is not None and self.first_failure is None:
            self.first_failure = (inst.job, inst, error)
        inst.done = True
        if error is not None:
            self.state[inst.job] = "failed"
        if all(i.done for i in self.instances[inst.job]):
            self.job_finished[inst.job] = time.time()
            if self.state[inst.job] == "running":
                self.state[inst.job] = "succeeded"

    def _ingest(self, inst: _Instance) -> None:
        from keel.runtime.current import MetricSpool

        files = MetricSpool.files(inst.scratch + ".metrics")
        points = [p for f in files for p in MetricSpool.read(f)]
        if points:
            self.ops.append(("metrics", [
                {"flow": self.project.name, "run_id": self.run_id, "task_id": inst.task_id, "name": name,
                 "step": step, "value": value, "ts": ts} for name, step, value, ts in points]))
        tags_path = inst.scratch + ".tags"
        try:
            with open(tags_path, encoding="utf-8") as fh:
                tags = [t.strip() for t in fh if t.strip()]
        except FileNotFoundError:
            tags = []
        if tags:
            self.ops.append(("tags", (self.project.name, self.run_id, tags)))
        for path in [*files, tags_path]:
            try:
                os.unlink(path)
            except FileNotFoundError:
                pass

    def _record_link(self, inst: _Instance) -> None:
        """A flow job: keep the flow run it made as the task's artifact ``flow_run``."""
        flow_name = self.project.flow_names.get(inst.job)
        if flow_name is None:
            return
        path = inst.scratch + ".flowrun"
        try:
            with open(path) as fh:
                flow_run = f"{flow_name}/{int(fh.read().strip())}"
        except (FileNotFoundError, ValueError):
            return
        finally:
            try:
                os.unlink(path)
            except FileNotFoundError:
                pass
        ref = self.store.artifacts.put(flow_run)
        self.ops.append(("artifacts", [{"flow": self.project.name, "run_id": self.run_id, "task_id": inst.task_id,
                                        "name": "flow_run", "key": ref.key, "serializer": ref.serializer,
                                        "size": ref.size, "own": True}]))
        self.console.message(f"job {inst.job!r} ran flow {flow_run}")

    def _interrupt(self) -> None:
        for inst in self.running:
            if inst.proc is not None and inst.proc.poll() is None:
                _signal_group(inst.proc.pid, signal.SIGTERM)
        deadline = time.time() + _KILL_GRACE
        for inst in self.running:
            assert inst.proc is not None
            try:
                inst.proc.wait(max(0.0, deadline - time.time()))
            except subprocess.TimeoutExpired:
                _signal_group(inst.proc.pid, signal.SIGKILL)
                inst.proc.wait()
            for fd, stream in list(inst.pipes.items()):
                while fd in inst.pipes and _readable(fd):
                    self._read(inst, fd, stream)
                self._close_pipe(inst, fd)
            for fh in inst.logs.values():
                fh.close()
            self._ingest(inst)
            error = {"type": "Interrupted", "message": "the project run was interrupted", "traceback": ""}
            self._record_attempt(inst, "interrupted", inst.proc.returncode, error)
            self.ops.append(("task", self._task_row(inst, "interrupted")))
            self.state[inst.job] = "interrupted"
        self.running.clear()

    # -- records ------------------------------------------------------------------------------
    def _pathspec(self, inst: _Instance) -> str:
        return f"{self.project.name}/{self.run_id}/{inst.job}/{inst.task_id}"

    def _task_row(self, inst: _Instance, status: str) -> dict[str, Any]:
        row = {"flow": self.project.name, "run_id": self.run_id, "task_id": inst.task_id, "step": inst.job,
               "status": status, "attempts": inst.attempt + 1, "created_at": inst.created_at,
               "started_at": inst.started_at, "parents": json.dumps(inst.parents),
               "foreach": json.dumps([[inst.job, "instance", inst.index, inst.count]] if inst.count > 1 else [])}
        if status != "running":
            row["finished_at"] = time.time()
        return row

    def _record_attempt(self, inst: _Instance, status: str, code: int | None, error: dict[str, str] | None) -> None:
        import socket

        self.ops.append(("attempt", {
            "flow": self.project.name, "run_id": self.run_id, "task_id": inst.task_id, "attempt": inst.attempt,
            "status": status, "started_at": inst.started_at, "finished_at": time.time(), "exit_code": code,
            "error_type": (error or {}).get("type"), "error_message": (error or {}).get("message"),
            "traceback": (error or {}).get("traceback"), "node": socket.gethostname()}))

    def _record_steps(self) -> None:
        names = {"succeeded": "done", "failed": "failed", "skipped": "skipped", "interrupted": "incomplete",
                 "running": "incomplete", "pending": "pending"}
        for job in self.selected:
            self.ops.append(("step", (self.project.name, self.run_id, job, {
                "status": names[self.state[job]], "started_at": self.job_started.get(job),
                "finished_at": self.job_finished.get(job)})))

    def _heartbeat(self) -> None:
        now = time.time()
        if now - self._last_beat >= _heartbeat_every():
            self._last_beat = now
            self.ops.append(("heartbeat", (self.project.name, self.run_id)))

    def _flush(self) -> None:
        if self.ops:
            ops, self.ops = self.ops, []
            self.md.write_batch(ops)

    def _error_text(self, status: str) -> str | None:
        if status == "interrupted":
            return "interrupted by Ctrl-C or SIGTERM"
        if self.first_failure is None:
            return None
        job, inst, error = self.first_failure
        return f"{error['type']}: {error['message']}"

    def _report(self, result: ProjectResult) -> None:
        if result.ok:
            self.console.message(f"Run {result.pathspec} succeeded in {result.seconds:.2f}s.")
            return
        if result.status == "interrupted":
            self.console.message(f"Run {result.pathspec} was interrupted.")
            return
        lines = [f"Run {result.pathspec} failed: job(s) {', '.join(result.failed)} failed"
                 + (f"; skipped: {', '.join(result.skipped)}" if result.skipped else "")]
        if self.first_failure is not None:
            job, inst, error = self.first_failure
            lines.append(f"job {job!r} (task {inst.task_id}): {error['type']}: {error['message']}")
            lines.append(f"See its output: keel logs {self._pathspec(inst)} --stderr")
            lines.append(f"Fix it, then: {self.options.command} -f {self.project.path} --job {job} --downstream")
        sys.stderr.write("\n" + "\n".join(lines) + "\n")
        sys.stderr.flush()


def run_project(project: Project, options: ProjectRunOptions | None = None, *, store: Store | None = None,
                on_started: Callable[[int], None] | None = None) -> ProjectResult:
    """Run the project's jobs (or the ones ``options`` selects) and return how it went."""
    from keel.runtime.executors.local import machine_budget

    options = options or ProjectRunOptions()
    budget = machine_budget()
    check_job_resources(project, budget)
    runner = ProjectRunner(project, options, store or Store.from_env(), budget)
    run_id = runner.start()
    if on_started is not None:
        on_started(run_id)
    return runner.run()


def _heartbeat_every() -> float:
    try:
        from keel.store.liveness import heartbeat_seconds
    except ImportError:  # pragma: no cover - older trees
        return 2.0
    return heartbeat_seconds()


def _process_identity() -> dict[str, Any]:
    try:
        from keel.store.liveness import process_identity
    except ImportError:  # pragma: no cover
        return {"pid": os.getpid()}
    return process_identity()


def _raise_interrupt(signum: int, frame: Any) -> None:
    raise KeyboardInterrupt


def _signal_group(pid: int, sig: int) -> None:
    try:
        os.killpg(pid, sig)
    except (ProcessLookupError, PermissionError):
        pass


def _readable(fd: int) -> bool:
    import select

    try:
        return bool(select.select([fd], [], [], 0)[0])
    except (OSError, ValueError):
        return False
