"""The task body where there is no scheduler next door: a Kubernetes pod.

    python -m keel.runtime.remote_task PAYLOAD_KEY        # KEEL_ARTIFACT_URL names the store

The scheduler put the task's payload (its TaskSpec and the flow class, by value) in the
artifact store under PAYLOAD_KEY. This runs the task, stores its result (its ``TaskResult``
and its metric spools, pickled) the same way, and prints the result's key as the last line of its output,
where the executor, which follows the pod's log, finds it. The scheduler stays the only
writer of metadata.
"""

from __future__ import annotations

import dataclasses
import os
import pickle
import sys
import tempfile
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from keel.runtime.task import TaskResult

RESULT_MARKER = "KEEL-RESULT "


def make_payload(spec: object, flow_cls: type | None) -> bytes:
    """What a pod needs to run one task: the spec and the flow class (by value; None for a command task)."""
    import cloudpickle

    module = sys.modules.get(flow_cls.__module__) if flow_cls is not None else None
    by_value = module is not None and flow_cls is not None and flow_cls.__module__ != "__main__"
    if by_value:
        cloudpickle.register_pickle_by_value(module)
    try:
        data: bytes = cloudpickle.dumps({"spec": spec, "flow": flow_cls}, protocol=pickle.HIGHEST_PROTOCOL)
        return data
    finally:
        if by_value:
            cloudpickle.unregister_pickle_by_value(module)


def main(argv: list[str] | None = None) -> int:
    from keel.runtime.current import MetricSpool
    from keel.runtime.task import run_task
    from keel.store.artifacts import ArtifactStore

    args = sys.argv[1:] if argv is None else argv
    from keel.settings import VARIABLES, Settings

    url = Settings.from_env().artifact_url if os.environ.get(VARIABLES["artifact_url"]) else None  # no default in a pod
    if len(args) != 1 or not url:
        sys.stderr.write("usage: KEEL_ARTIFACT_URL=s3://bucket/prefix python -m keel.runtime.remote_task KEY\n")
        return 2
    store = ArtifactStore.from_url(url)
    payload = pickle.loads(store.get_bytes(args[0], what="the task's payload"))
    with tempfile.TemporaryDirectory(prefix="keel-task-") as tmp:
        spec = dataclasses.replace(payload["spec"], metrics_path=os.path.join(tmp, "metrics"), result_path="")
        if spec.command is not None:
            result = _run_command(spec, tmp)
        else:
            result = run_task(spec, payload["flow"], store)
        metrics = {}
        for path in MetricSpool.files(spec.metrics_path):
            try:
                with open(path, "rb") as fh:
                    data = fh.read().rstrip(b"\0")
            except FileNotFoundError:  # a command task that logged no metric
                continue
            if data:
                metrics[path[len(spec.metrics_path):]] = data
    key = store.put_bytes(pickle.dumps({"result": result, "metrics": metrics}, protocol=pickle.HIGHEST_PROTOCOL))
    sys.stdout.flush()
    sys.stderr.flush()
    sys.stdout.write(f"\n{RESULT_MARKER}{key}\n")
    sys.stdout.flush()
    return 0 if result.ok else 1


def _run_command(spec: object, tmp: str) -> TaskResult:
    """A command task (a project's script job) in the pod: its output is the pod's log; its exit
    status, metrics and tags come back in the result."""
    import subprocess

    from keel.runtime.command import command_result
    from keel.runtime.task import TaskResult

    command = spec.command  # type: ignore[attr-defined]
    if command.kind != "shell":
        return TaskResult.failed("JobFailed", f"a {command.kind!r} command task runs on the local executor only")
    env = command.environment()
    tags_path = os.path.join(tmp, "tags")
    if "KEEL_METRICS_PATH" in env:
        env["KEEL_METRICS_PATH"], env["KEEL_TAGS_PATH"] = spec.metrics_path, tags_path  # type: ignore[attr-defined]
    reads_path = os.path.join(tmp, "reads") if "KEEL_RECORD_READS" in env else ""
    if reads_path:  # a cached job: its read hook lists the files it reads here, in the pod
        env["KEEL_RECORD_READS"] = reads_path
    cwd = command.cwd if os.path.isdir(command.cwd) else tmp
    sys.stdout.flush()
    sys.stderr.flush()
    code = subprocess.run(["/bin/sh", "-c", command.shell], cwd=cwd, env=env, stdin=subprocess.DEVNULL).returncode
    result = command_result(dataclasses.replace(command, tags_path=tags_path, reads_path=reads_path), code)
    if result is None:
        how = f"exited with status {code}" if code >= 0 else f"was killed by signal {-code}"
        return TaskResult.failed("JobFailed", f"job {spec.step!r} {how}")  # type: ignore[attr-defined]
    return result


if __name__ == "__main__":
    raise SystemExit(main())
