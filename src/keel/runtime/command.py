"""Command tasks: a task whose body is a program or a flow run, not a step of a FlowSpec.

A project's script job (``entrypoint:``) is a shell command; a flow job (``flow:``) runs the
flow through the one entry point (:func:`keel.runtime.entry.run`) as a child run. Both are a
:class:`CommandTask` on the task's :class:`~keel.runtime.task.TaskSpec`, and every executor
runs them: the local one forks and ``exec``s ``/bin/sh -c`` (or runs the flow in the fork),
Ray runs the command in a worker.

A command reports through its exit status; what it logs with ``current`` reaches the store
through the files named in its environment (metrics spool, tags file), read here.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import sys
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Mapping

from keel.errors import ExecutionError

if TYPE_CHECKING:
    from keel.runtime.task import TaskResult

# Variables a task's process must not inherit from the one that started it: a project run
# started from inside a job is a run of its own.
_TASK_VARS = ("KEEL_RUN_ID", "KEEL_STEP_NAME", "KEEL_TASK_ID", "KEEL_METRICS_PATH", "KEEL_TAGS_PATH",
              "KEEL_RETRY_COUNT", "KEEL_FLOW_NAME")


@dataclass(frozen=True)
class CommandTask:
    """What a command task runs: ``shell`` (a ``/bin/sh -c`` line) or ``flow`` (a flow file)."""

    kind: str                                   # "shell" | "flow"
    cwd: str
    env: dict[str, str] = field(default_factory=dict)   # set on top of the executor's environment
    shell: str = ""
    spark: Mapping[str, Any] | None = None      # a flow job's spark add-on settings
    flow_file: str = ""
    params: dict[str, Any] = field(default_factory=dict)  # the flow's parameters, as written in keel.yaml
    tags: tuple[str, ...] = ()                  # tags of the flow run it makes
    executors: tuple[str, ...] = ()             # a flow job's --with specs: where its flow's steps run
    tags_path: str = ""                         # where current.tag() in a script writes
    reads_path: str = ""                        # a cached script job: where its read hook lists the files read

    def environment(self, base: dict[str, str] | None = None) -> dict[str, str]:
        """The process environment: ``base`` (default os.environ) without task identity, plus ours."""
        env = dict(os.environ if base is None else base)
        for var in _TASK_VARS:
            env.pop(var, None)
        env.update(self.env)
        bindir = os.path.dirname(sys.executable)  # `python` and `keel` in a script: the ones Keel runs with
        env["PATH"] = bindir + os.pathsep + env.get("PATH", "")
        env.setdefault("PYTHONUNBUFFERED", "1")
        return env


def exec_shell(command: CommandTask) -> None:
    """Replace this (forked) process with the command. Never returns."""
    os.chdir(command.cwd)
    try:
        os.execve("/bin/sh", ["/bin/sh", "-c", command.shell], command.environment())
    except (OSError, ValueError) as exc:  # say why in the job's stderr log, not just "status 127"
        os.write(2, f"keel: cannot start the job's command with /bin/sh: {exc}\n".encode())
        raise


def run_flow(command: CommandTask, artifacts: Any) -> TaskResult:
    """Run a flow job in this process through the one entry point; the task's result."""
    from keel.flow.loader import load_flow_file
    from keel.flow.parameters import resolve_parameters
    from keel.runtime.entry import RunRequest, run
    from keel.runtime.task import TaskResult

    os.chdir(command.cwd)
    env = command.environment()
    os.environ.clear()
    os.environ.update(env)
    flow_cls = load_flow_file(command.flow_file)
    params = resolve_parameters(flow_cls, command.params)
    with contextlib.ExitStack() as stack:
        if command.spark is not None:  # the job's spark add-on: a cluster around the whole flow run
            from keel.addons.spark import step_cluster

            stack.enter_context(step_cluster(dict(command.spark)))
        if command.executors:  # its steps go to a cluster: the run needs a process of its own
            pathspec, failure = _run_apart(command, flow_cls.__name__)
        else:
            result = run(RunRequest(flow_cls=flow_cls, params=params, flow_file=command.flow_file,
                                    system_tags=list(command.tags)))
            pathspec, failure = result.pathspec, None
            try:
                result.raise_for_status()
            except ExecutionError as exc:
                failure = str(exc)
    if pathspec is None:
        return TaskResult.failed("JobFailed", failure or "the flow run did not start")
    made = TaskResult(ok=True, artifacts={"flow_run": artifacts.put(pathspec).to_dict()}, own=("flow_run",))
    if failure is not None:
        return dataclasses.replace(made, ok=False, error={"type": "JobFailed", "traceback": "", "message": failure})
    return made


def _run_apart(command: CommandTask, flow_name: str) -> tuple[str | None, str | None]:
    """A flow job whose steps run elsewhere (``keel project run --with ray``): its run goes through
    the internal entry in a new interpreter (``python -m keel.runtime.entry``), because this
    process was forked from a project runner that is connected to the cluster, and a cluster
    client does not survive a fork. (The run's pathspec, and what went wrong or None.)"""
    import subprocess
    import tempfile

    from keel.runtime.entry import write_request

    with tempfile.TemporaryDirectory(prefix="keel-flow-job-") as tmp:
        request, run_id_file = os.path.join(tmp, "request.json"), os.path.join(tmp, "run_id")
        write_request(request, {"kind": "flow", "flow_file": command.flow_file, "flow_name": flow_name,
                                "params": dict(command.params), "system_tags": list(command.tags),
                                "executors": list(command.executors), "quiet": True})
        code = subprocess.call([sys.executable, "-m", "keel.runtime.entry", request, run_id_file])
        try:
            with open(run_id_file, encoding="utf-8") as fh:
                pathspec = f"{flow_name}/{int(fh.read())}"
        except (OSError, ValueError):
            return None, f"the flow run did not start (exit status {code}); see the job's stderr"
    if code != 0:
        return pathspec, f"flow run {pathspec} did not succeed (exit status {code}); see: keel show {pathspec}"
    return pathspec, None


def command_result(command: CommandTask, exit_code: int | None) -> TaskResult | None:
    """A shell command's result from its exit status: None unless it exited 0 (the scheduler then
    explains the death from the exit code or signal). Reads and removes its tags file and the list of
    files it read (a cached job)."""
    tags: list[str] = []
    if command.tags_path:
        try:
            with open(command.tags_path, encoding="utf-8") as fh:
                tags = [t.strip() for t in fh if t.strip()]
            from keel.errors import UsageError
            from keel.flow.tags import check_tag

            checked = []
            for t in tags:  # written by current.tag(), which checked them; the file itself is not trusted
                try:
                    checked.append(check_tag(t))
                except UsageError:
                    continue
            tags = checked
            os.unlink(command.tags_path)
        except FileNotFoundError:
            pass
    reads: list[str] = []
    if command.reads_path:
        from keel.runtime.jobcache import job_reads

        reads = job_reads(command.reads_path, command.env)
    if exit_code != 0:
        return None
    from keel.runtime.task import TaskResult

    return TaskResult(ok=True, tags=tuple(tags), reads=tuple(reads))
