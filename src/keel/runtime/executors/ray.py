"""Ray executor: each task is one Ray remote call on a cluster that already runs.

    python flow.py run --with ray:address=auto         # every step; the cluster running on this machine
    python flow.py run --with ray:address=10.0.0.5:6379,cpu=2

The scheduler stays here and stays the only writer of metadata. A task runs
:func:`keel.runtime.task.run_task` on a Ray worker with its stdout and stderr captured (at
the file-descriptor level, so C extensions and subprocesses are caught too); it writes its
artifacts straight to the artifact store and returns its ``TaskResult``, its output and its
metric points, which this executor hands to the scheduler exactly as the local one does.

The flow class travels by value (cloudpickle), so the cluster needs Keel and the flow's
libraries installed but not the flow file. Artifacts must be reachable from every node: a
local store path works when every node is on this machine (or shares the folder);
otherwise use ``KEEL_ARTIFACT_URL=s3://bucket/prefix``.

Ray's own task retries are off (``max_retries=0``): a worker or node that dies fails the
attempt, and the step's ``@retry`` decides, as for a local task.
"""

from __future__ import annotations

import dataclasses
import hashlib
import logging
import os
import re
import socket
import sys
import tempfile
import time
from typing import Any

from keel.errors import ExecutorError
from keel.runtime.current import MetricSpool
from keel.runtime.executors.base import Outcome, OutputSink, record_ending, signal_name
from keel.runtime.placement import ray_address, ray_address_source
from keel.runtime.task import TaskSpec

_MAX_OUTPUT = 64 << 20   # bytes of stdout/stderr a task sends back per stream
_MB = 1024 * 1024

NO_CLUSTER = (
    "--with ray: no Ray cluster at {address} ({why}). Start one with `ray start --head` on this "
    "machine (add nodes with `ray start --address=HEAD_IP:6379`), or point Keel at a running one "
    "with --with ray:address=HOST:PORT or KEEL_RAY_ADDRESS=HOST:PORT. Keel does not start a "
    "throwaway cluster on its own."
)
NO_RAY = ("--with ray / @ray: Ray is not installed in this environment. Install it with "
          "`pip install 'keel[ray]'` (or `pip install 'ray[default]'`)")


def _import_ray() -> Any:
    try:
        import ray
    except ImportError:
        raise ExecutorError(NO_RAY) from None
    return ray


def _check_reachable(address: str) -> None:
    """Fail in seconds, not minutes, when HOST:PORT does not answer (Ray retries for long)."""
    if address == "auto" or address.startswith(("ray://", "local")):
        return
    host, _, port = address.rpartition(":")
    if not host or not port.isdigit():
        raise ExecutorError(f"--with ray: address {address!r} is not HOST:PORT (e.g. 10.0.0.5:6379) or 'auto'")
    try:
        socket.create_connection((host.strip("[]"), int(port)), timeout=5).close()
    except OSError as exc:
        raise ExecutorError(NO_CLUSTER.format(address=address, why=exc.strerror or exc)) from None


def connect(address: str | None) -> tuple[Any, bool]:
    """Connect this process to the cluster; returns (ray, whether we connected it)."""
    ray = _import_ray()
    if ray.is_initialized():
        return ray, False
    target = ray_address(address)
    if not target:
        raise ExecutorError(
            "--with ray: which Ray cluster? Keel joins the cluster you name: --with ray:address=HOST:PORT "
            "(or KEEL_RAY_ADDRESS=HOST:PORT), or --with ray:address=auto for the one running on this machine")
    _check_reachable(target)
    try:
        ray.init(address=target, log_to_driver=False, logging_level=logging.WARNING, namespace="keel")
    except ConnectionError as exc:
        why = "none is running" if target == "auto" else str(exc).splitlines()[0]
        raise ExecutorError(NO_CLUSTER.format(address=target, why=why)) from None
    except Exception as exc:  # noqa: BLE001 - Ray raises many kinds; all mean the same here
        raise ExecutorError(NO_CLUSTER.format(address=target, why=f"{type(exc).__name__}: {exc}")) from None
    return ray, True


def ray_options(request: dict[str, Any]) -> dict[str, Any]:
    """Ray's task options for a step's request (cpu cores, memory MB, gpus, custom resources)."""
    opts: dict[str, Any] = {"num_cpus": float(request.get("cpu", 1) or 0), "num_gpus": float(request.get("gpu") or 0),
                            "max_retries": 0, "retry_exceptions": False}
    if request.get("memory"):
        opts["memory"] = int(float(request["memory"]) * _MB)
    if request.get("resources"):
        opts["resources"] = dict(request["resources"])
    return opts


def _describe(need: dict[str, float]) -> str:
    words = {"CPU": "cpu", "GPU": "gpu"}
    parts = []
    for name, value in need.items():
        if name == "memory":
            parts.append(f"memory={value / _MB:,.0f} MB")
        elif not name.startswith("node:") and name != "object_store_memory":
            parts.append(f"{words.get(name, name)}={value:g}")
    return ", ".join(parts) or "nothing"


def check_feasible(requests: dict[str, dict[str, Any]], nodes: list[dict[str, Any]], address: str) -> None:
    """Refuse up front a step no node of the cluster could ever run (Ray would wait forever)."""
    alive = [n.get("Resources", {}) for n in nodes if n.get("Alive")]
    problems = []
    for step, request in sorted(requests.items()):
        opts = ray_options(request)
        need = {"CPU": opts["num_cpus"], "GPU": opts["num_gpus"], "memory": opts.get("memory", 0),
                **opts.get("resources", {})}
        need = {k: float(v) for k, v in need.items() if v}
        if any(all(res.get(k, 0) >= v for k, v in need.items()) for res in alive):
            continue
        largest = {k: max((res.get(k, 0) for res in alive), default=0) for k in need}
        problems.append(f"step {step!r} asks Ray for {_describe(need)}, but no node of the cluster at {address} "
                        f"has that much (the most any node has: {_describe(largest) if alive else 'no node'})")
    if problems:
        raise ExecutorError("\n".join(problems) + ". Lower the request (@ray, @resources or --with ray:...), "
                            "or add a node that big to the cluster first")


# -- on the worker ------------------------------------------------------------------------------

_FLOWS: dict[str, type] = {}   # flow classes already unpickled in this worker, by digest


def _flow_class(digest: str, blob: bytes) -> type:
    cls = _FLOWS.get(digest)
    if cls is None:
        import cloudpickle

        cls = _FLOWS[digest] = cloudpickle.loads(blob)
    return cls


def _read_capped(path: str) -> bytes:
    with open(path, "rb") as fh:
        data = fh.read(_MAX_OUTPUT + 1)
    if len(data) > _MAX_OUTPUT:
        data = data[:_MAX_OUTPUT] + b"\n[keel: output cut at 64 MiB on the Ray worker]\n"
    return data


_SCRATCH = "keel-ray-task-"


def _sweep_dead_scratch() -> None:
    """Remove what tasks killed on this node (cancel, Ctrl-C, a dead worker) could not."""
    import glob
    import shutil

    for path in glob.glob(os.path.join(tempfile.gettempdir(), _SCRATCH + "*-*")):
        pid = os.path.basename(path)[len(_SCRATCH):].split("-", 1)[0]
        if not pid.isdigit():
            continue
        try:
            os.kill(int(pid), 0)
        except ProcessLookupError:
            shutil.rmtree(path, ignore_errors=True)
        except OSError:
            pass


def run_on_worker(spec: TaskSpec, digest: str, blob: bytes, store: Any, context: dict[str, Any]) -> dict[str, Any]:
    """The Ray task: run one attempt with its output captured; never leaves the worker changed."""
    import ray

    from keel.runtime.task import run_task

    ctx = ray.get_runtime_context()
    ip = ray.util.get_node_ip_address()
    node = f"ray:{ip}:{ctx.get_node_id()[:16]}"
    if spec.command is not None:
        return _run_command_on_worker(spec, node)
    flow_cls = _flow_class(digest, blob)
    saved_env, saved_cwd, saved_path = dict(os.environ), os.getcwd(), list(sys.path)
    _sweep_dead_scratch()
    with tempfile.TemporaryDirectory(prefix=f"{_SCRATCH}{os.getpid()}-") as tmp:
        out_path, err_path = os.path.join(tmp, "stdout"), os.path.join(tmp, "stderr")
        local = dataclasses.replace(spec, metrics_path=os.path.join(tmp, "metrics"), result_path="")
        for stream in (sys.stdout, sys.stderr):
            stream.flush()
        saved_fds = os.dup(1), os.dup(2)
        saved_streams = sys.stdout, sys.stderr
        for fd, path in ((1, out_path), (2, err_path)):
            target = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
            os.dup2(target, fd)
            os.close(target)
        sys.stdout = open(1, "w", buffering=1, encoding="utf-8", errors="backslashreplace", closefd=False)
        sys.stderr = open(2, "w", buffering=1, encoding="utf-8", errors="backslashreplace", closefd=False)
        try:
            if context.get("cwd") and os.path.isdir(context["cwd"]):
                os.chdir(context["cwd"])   # same machine (or shared folder): relative paths work
            for folder in context.get("sys_path", ()):
                if os.path.isdir(folder) and folder not in sys.path:
                    sys.path.insert(0, folder)
            result = run_task(local, flow_cls, store)
        finally:
            for stream in (sys.stdout, sys.stderr):
                try:
                    stream.flush()
                    stream.close()
                except Exception:  # noqa: BLE001
                    pass
            sys.stdout, sys.stderr = saved_streams
            os.dup2(saved_fds[0], 1)
            os.dup2(saved_fds[1], 2)
            os.close(saved_fds[0])
            os.close(saved_fds[1])
            os.environ.clear()
            os.environ.update(saved_env)
            sys.path[:] = saved_path
            try:
                os.chdir(saved_cwd)
            except OSError:
                pass
        metrics = {}  # spool files (the task's and those beside it) by suffix, passed on as bytes
        for path in MetricSpool.files(local.metrics_path):
            try:
                with open(path, "rb") as fh:
                    data = fh.read().rstrip(b"\0")  # spools grow in zero-filled chunks
            except FileNotFoundError:
                continue
            if data:
                metrics[path[len(local.metrics_path):]] = data
        return {"result": result, "stdout": _read_capped(out_path), "stderr": _read_capped(err_path),
                "metrics": metrics, "node": node}


def _run_command_on_worker(spec: TaskSpec, node: str) -> dict[str, Any]:
    """A command task on a Ray worker: the shell line in a child process of its own, its output,
    metrics spool and tags captured in a scratch folder and sent back with the exit status."""
    import subprocess

    from keel.runtime.command import command_result
    from keel.runtime.executors.local import _die_with_parent

    command = spec.command
    assert command is not None
    if command.kind != "shell":
        raise ValueError(f"a {command.kind!r} command task runs on the local executor only")
    _sweep_dead_scratch()
    with tempfile.TemporaryDirectory(prefix=f"{_SCRATCH}{os.getpid()}-") as tmp:
        out_path, err_path = os.path.join(tmp, "stdout"), os.path.join(tmp, "stderr")
        metrics_path, tags_path = os.path.join(tmp, "metrics"), os.path.join(tmp, "tags")
        env = command.environment()
        if "KEEL_METRICS_PATH" in env:  # a script's `current` writes here, on this worker
            env["KEEL_METRICS_PATH"], env["KEEL_TAGS_PATH"] = metrics_path, tags_path
        reads_path = os.path.join(tmp, "reads") if "KEEL_RECORD_READS" in env else ""
        if reads_path:  # a cached job: its read hook lists the files it reads here, on this worker
            env["KEEL_RECORD_READS"] = reads_path
        cwd = command.cwd if os.path.isdir(command.cwd) else tmp
        with open(out_path, "wb") as out, open(err_path, "wb") as err:
            proc = subprocess.Popen(["/bin/sh", "-c", command.shell], cwd=cwd, env=env, stdin=subprocess.DEVNULL,
                                    stdout=out, stderr=err, start_new_session=True, preexec_fn=_die_with_parent)
            try:
                code = proc.wait()
            finally:
                if proc.poll() is None:  # cancelled: what the command started goes with it
                    os.killpg(proc.pid, 9)
        result = command_result(dataclasses.replace(command, tags_path=tags_path, reads_path=reads_path), code)
        metrics = {}
        for path in MetricSpool.files(metrics_path):
            try:
                with open(path, "rb") as fh:
                    data = fh.read().rstrip(b"\0")
            except FileNotFoundError:  # the command logged no metric
                continue
            if data:
                metrics[path[len(metrics_path):]] = data
        return {"result": result, "exit_code": code, "stdout": _read_capped(out_path),
                "stderr": _read_capped(err_path), "metrics": metrics, "node": node}


# -- here, next to the scheduler ------------------------------------------------------------------

_NODE_IN_ERROR = re.compile(r"[Nn]ode IP:\s*([0-9a-fA-F.:]+),\s*node ID:\s*([0-9a-f]{16})")


def describe_error(exc: BaseException) -> tuple[str, str | None]:
    """(words for the attempt's error, the node it names) for a Ray error."""
    name = type(exc).__name__
    text = str(exc).strip()
    node = None
    match = _NODE_IN_ERROR.search(text)
    if match:
        node = f"ray:{match.group(1)}:{match.group(2)}"
    first = text.splitlines()[0] if text else ""
    if name == "NodeDiedError":
        return f"the Ray node running the task died ({first})", node
    if name == "WorkerCrashedError":
        return f"the Ray worker process running the task died ({first})", node
    if name in ("TaskCancelledError",):
        return "the Ray task was cancelled", node
    if name == "OutOfMemoryError":
        return f"Ray killed the task: its node ran out of memory ({first})", node
    return f"the Ray task failed: {name}: {first}", node


class RayExecutor:
    """Runs each task as a Ray remote call; the results come back to the scheduler."""

    name = "ray"

    def __init__(self, flow_cls: type | None, artifacts: Any, on_output: OutputSink, *, address: str | None = None,
                 requests: dict[str, dict[str, Any]] | None = None, flow_file: str | None = None,
                 default_request: dict[str, Any] | None = None):
        import cloudpickle

        self.ray, self._owns_connection = connect(address)
        self.address = ray_address(address)
        self.address_source = ray_address_source(address) or "the connection this process already had"
        if self.address in ("auto", ""):  # name the cluster that 'auto' found (or that was joined already)
            try:
                self.address = str(self.ray.get_runtime_context().gcs_address or "auto")
            except Exception:  # noqa: BLE001 - older Ray: keep 'auto'
                pass
        self.artifacts = artifacts
        self.on_output = on_output
        self.requests = dict(requests or {})
        self.default_request = default_request or {"cpu": 1}
        blob = b""  # command tasks only (a project): no flow class to ship
        module = sys.modules.get(flow_cls.__module__) if flow_cls is not None else None
        if module is not None and flow_cls.__module__ != "__main__":
            cloudpickle.register_pickle_by_value(module)
        try:
            if flow_cls is not None:
                blob = cloudpickle.dumps(flow_cls)
        finally:
            if module is not None and flow_cls is not None and flow_cls.__module__ != "__main__":
                cloudpickle.unregister_pickle_by_value(module)
        self.digest = hashlib.sha256(blob).hexdigest()[:32]
        self.flow_ref = self.ray.put(blob)
        nodes = self.ray.nodes()
        try:
            check_feasible({s: self.requests.get(s, self.default_request) for s in self.requests} or
                           {"*": self.default_request}, nodes, self.address)
        except ExecutorError:
            self.close()
            raise
        warning = local_backend_warning(artifacts, nodes)
        if warning:
            sys.stderr.write(f"keel: warning: {warning}\n")
        self.store_ref = self.ray.put(artifacts)
        folder = os.path.dirname(os.path.abspath(flow_file)) if flow_file else None
        self.context = {"cwd": os.getcwd(), "sys_path": [folder] if folder else []}
        self._remote = self.ray.remote(run_on_worker)
        self._options: dict[str, Any] = {}
        self.pending: dict[Any, TaskSpec] = {}        # ObjectRef -> spec
        self.by_task: dict[tuple[int, int], Any] = {}
        self.cancelled: set[tuple[int, int]] = set()

    def _remote_for(self, step: str) -> Any:
        remote = self._options.get(step)
        if remote is None:
            opts = ray_options(self.requests.get(step, self.default_request))
            remote = self._options[step] = self._remote.options(name=f"keel:{step}", **opts)
        return remote

    def submit(self, spec: TaskSpec) -> None:
        ref = self._remote_for(spec.step).remote(spec, self.digest, self.flow_ref, self.store_ref, self.context)
        self.pending[ref] = spec
        self.by_task[(spec.task_id, spec.attempt)] = ref

    def running(self) -> int:
        return len(self.pending)

    def wait(self, timeout: float) -> list[Outcome]:
        if not self.pending:
            if timeout > 0:
                time.sleep(timeout)
            return []
        refs = list(self.pending)
        ready, _ = self.ray.wait(refs, num_returns=1, timeout=max(timeout, 0))
        if not ready:
            return []
        ready, _ = self.ray.wait(refs, num_returns=len(refs), timeout=0)
        return [self._outcome(ref) for ref in ready]

    def _outcome(self, ref: Any) -> Outcome:
        spec = self.pending.pop(ref)
        key = (spec.task_id, spec.attempt)
        self.by_task.pop(key, None)
        try:
            payload = self.ray.get(ref)
        except self.ray.exceptions.RayError as exc:
            words, node = describe_error(exc)
            if key in self.cancelled:
                words = "the Ray task was cancelled"
            self.cancelled.discard(key)
            return record_ending(self.on_output, Outcome(spec=spec, result=None, reason=words, node=node))
        self.cancelled.discard(key)
        if spec.metrics_path:
            for suffix, data in payload["metrics"].items():
                with open(spec.metrics_path + suffix, "ab") as fh:
                    fh.write(data)
        for stream in ("stdout", "stderr"):
            if payload[stream]:
                self.on_output(spec, stream, payload[stream])
        result = payload["result"]
        code = payload.get("exit_code", 0 if result is not None and result.ok else 1)
        if code is not None and code < 0:  # a command killed by a signal
            words = f"the command was killed by {signal_name(-code)}"
            return record_ending(self.on_output, Outcome(spec=spec, result=result, signal=-code,
                                                         node=payload["node"], reason=words), words)
        return record_ending(self.on_output, Outcome(spec=spec, result=result, exit_code=code, node=payload["node"],
                             reason=None if result is not None else f"exited with status {code}"))

    def kill(self, spec: TaskSpec) -> None:
        ref = self.by_task.get((spec.task_id, spec.attempt))
        if ref is not None:
            self.cancelled.add((spec.task_id, spec.attempt))
            self._cancel(ref)

    def _cancel(self, ref: Any) -> None:
        try:
            self.ray.cancel(ref, force=True)
        except Exception:  # noqa: BLE001 - already finished, or its node is gone
            pass

    def shutdown(self, grace: float = 5.0) -> list[Outcome]:
        """Cancel every task of this run (force: their worker processes are killed) and report them."""
        for key, ref in list(self.by_task.items()):
            self.cancelled.add(key)
            self._cancel(ref)
        outcomes: list[Outcome] = []
        deadline = time.monotonic() + grace
        while self.pending and time.monotonic() < deadline:
            outcomes += self.wait(0.1)
        for ref in list(self.pending):
            spec = self.pending.pop(ref)
            outcomes.append(record_ending(self.on_output, Outcome(spec=spec, result=None,
                                                                  reason="the Ray task was cancelled")))
        self.by_task.clear()
        return outcomes  # the caller closes the executor (once, after this)

    def close(self) -> None:
        """The run is over: disconnect from the cluster (if this executor connected)."""
        if self._owns_connection:
            try:
                self.ray.shutdown()
            except Exception:  # noqa: BLE001
                pass
            self._owns_connection = False


def local_backend_warning(artifacts: Any, nodes: list[dict[str, Any]]) -> str | None:
    """A warning when the cluster spans machines but artifacts are in a local folder."""
    local = getattr(getattr(artifacts, "backend", None), "root", None)
    if local is None:
        return None
    here = {"127.0.0.1", "localhost", socket.gethostname()}
    try:
        here.add(socket.gethostbyname(socket.gethostname()))
    except OSError:
        pass
    others = [n for n in nodes if n.get("Alive") and not str(n.get("NodeManagerAddress", "")).startswith("127.")
              and n.get("NodeManagerAddress") not in here]
    if not others:
        return None
    return (f"the artifact store is a local folder ({local}) but the Ray cluster has nodes on other machines; "
            f"unless they share that folder, set KEEL_ARTIFACT_URL=s3://bucket/prefix")

