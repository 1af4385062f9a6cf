"""Ray executor: each task is one Ray remote call on a cluster that already runs.

    python flow.py run --with ray                      # every step; cluster from KEEL_RAY_ADDRESS or 'auto'
    python flow.py run --with ray:address=10.0.0.5:6379,cpu=2

The scheduler stays here and stays the only writer of metadata. A task runs
:func:`keel.runtime.task.run_task` on a Ray worker with its stdout and stderr captured (at
the file-descriptor level, so C extensions and subprocesses are caught too); it writes its
artifacts straight to the artifact store and returns its result dict, its output and its
metric points, which this executor hands to the scheduler exactly as the local one does.

Output also reaches the log store while the task runs (``keel logs ... --follow``): once a
task has run for ``_FORWARD_AFTER`` seconds, a thread on the worker sends what the captured
files gained every ``_FORWARD_EVERY`` seconds to a small per-run actor (:class:`OutputRelay`),
which this executor drains without blocking. Every chunk carries its byte offset, so what the
result brings back at the end is only the rest, and nothing is written twice. Short tasks
never touch the relay (it is created only once a task has run that long), so they cost what
they did before.

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
import threading
import time
import uuid
from typing import Any

from keel.errors import ExecutorError
from keel.runtime.current import MetricSpool
from keel.runtime.executors.base import Outcome, OutputSink
from keel.runtime.placement import ray_address
from keel.runtime.task import TaskSpec

_MAX_OUTPUT = 64 << 20   # bytes of stdout/stderr a task sends back per stream
_MB = 1024 * 1024
_FORWARD_AFTER = 0.5     # seconds a task runs before its output is forwarded while it runs
_FORWARD_EVERY = 0.2     # seconds between two forwarded chunks of one task
_FORWARD_CHUNK = 4 << 20  # bytes per stream in one forwarded chunk (the rest goes next time)
_SETTLE_SECONDS = 10.0   # how long a finished task's forwarded chunks may take to be drained

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


def _read_capped(path: str, offset: int = 0) -> bytes:
    """The file from ``offset`` on, up to the 64 MiB cap of the whole stream."""
    with open(path, "rb") as fh:
        fh.seek(offset)
        data = fh.read(max(_MAX_OUTPUT - offset, 0) + 1)
    if offset + len(data) > _MAX_OUTPUT:
        data = data[:_MAX_OUTPUT - offset] + b"\n[keel: output cut at 64 MiB on the Ray worker]\n"
    return data


class OutputRelay:
    """The per-run actor between running tasks and the executor: chunks in, drained in order."""

    def __init__(self) -> None:
        self.chunks: list[tuple[tuple[int, int], str, int, bytes]] = []

    def push(self, chunks: list[tuple[tuple[int, int], str, int, bytes]]) -> None:
        self.chunks.extend(chunks)

    def drain(self) -> list[tuple[tuple[int, int], str, int, bytes]]:
        out, self.chunks = self.chunks, []
        return out


_RELAYS: dict[str, Any] = {}   # relay actor handles this worker already looked up, by name


class _Forwarder:
    """On the worker: sends what a running task writes to its capture files on to the relay.

    Idle for ``_FORWARD_AFTER`` seconds (short tasks never forward anything), then every
    ``_FORWARD_EVERY`` seconds. :meth:`finish` returns, per stream, the offset from which the
    task's result must carry the output: everything before it is surely held by the relay.
    """

    def __init__(self, relay: str | None, key: tuple[int, int], paths: dict[str, str]):
        self.relay_name, self.key, self.paths = relay, key, paths
        self.sent = {stream: 0 for stream in paths}
        self.last: Any = None      # the latest push, waited for at the end (the relay then holds it all)
        self.broken = False
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._loop, name="keel-ray-output", daemon=True)
        if relay:
            self.thread.start()

    def _loop(self) -> None:
        if self.stop.wait(_FORWARD_AFTER):
            return
        while not self.broken:
            try:
                self._send()
            except Exception:  # noqa: BLE001 - the relay is gone: the result carries everything
                self.broken = True
            if self.stop.wait(_FORWARD_EVERY):
                return

    def _handle(self) -> Any:
        import ray

        handle = _RELAYS.get(self.relay_name)
        if handle is None:
            try:
                handle = ray.get_actor(self.relay_name, namespace="keel")
            except ValueError:
                return None   # the executor creates it once a task has run that long: next time
            _RELAYS[self.relay_name] = handle
        return handle

    def _send(self) -> None:
        chunks = []
        for stream, path in self.paths.items():
            start = self.sent[stream]
            try:
                size = min(os.path.getsize(path), _MAX_OUTPUT)
            except OSError:
                continue
            if size > start:
                with open(path, "rb") as fh:
                    fh.seek(start)
                    data = fh.read(min(size - start, _FORWARD_CHUNK))
                if data:
                    chunks.append((self.key, stream, start, data))
        if not chunks:
            return
        handle = self._handle()
        if handle is None:
            return
        self.last = handle.push.remote(chunks)
        for _, stream, start, data in chunks:
            self.sent[stream] = start + len(data)

    def finish(self) -> dict[str, int]:
        if self.thread.is_alive():
            self.stop.set()
            self.thread.join()
        if self.last is not None:
            import ray

            try:
                ray.get(self.last, timeout=30)
            except Exception:  # noqa: BLE001 - not surely delivered: send it all again (the executor skips repeats)
                return {stream: 0 for stream in self.paths}
        return dict(self.sent)


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
    node = f"ray:{ray.util.get_node_ip_address()}:{ctx.get_node_id()[:16]}"
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
        forwarder = _Forwarder(context.get("relay"), (spec.task_id, spec.attempt),
                               {"stdout": out_path, "stderr": err_path})
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
            offsets = forwarder.finish()
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
        return {"result": result, "stdout": _read_capped(out_path, offsets["stdout"]),
                "stderr": _read_capped(err_path, offsets["stderr"]), "offsets": offsets,
                "metrics": metrics, "node": node}


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

    def __init__(self, flow_cls: type, artifacts: Any, on_output: OutputSink, *, address: str | None = None,
                 requests: dict[str, dict[str, Any]] | None = None, flow_file: str | None = None,
                 default_request: dict[str, Any] | None = None):
        import cloudpickle

        self.ray, self._owns_connection = connect(address)
        self.address = ray_address(address)
        self.artifacts = artifacts
        self.on_output = on_output
        self.requests = dict(requests or {})
        self.default_request = default_request or {"cpu": 1}
        module = sys.modules.get(flow_cls.__module__)
        if module is not None and flow_cls.__module__ != "__main__":
            cloudpickle.register_pickle_by_value(module)
        try:
            blob = cloudpickle.dumps(flow_cls)
        finally:
            if module is not None and flow_cls.__module__ != "__main__":
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
        self.relay_name = f"keel-output-{uuid.uuid4().hex[:16]}"
        self.context = {"cwd": os.getcwd(), "sys_path": [folder] if folder else [], "relay": self.relay_name}
        self._remote = self.ray.remote(run_on_worker)
        self._options: dict[str, Any] = {}
        self.pending: dict[Any, TaskSpec] = {}        # ObjectRef -> spec
        self.by_task: dict[tuple[int, int], Any] = {}
        self.cancelled: set[tuple[int, int]] = set()
        self.specs: dict[tuple[int, int], TaskSpec] = {}      # running attempts, for their forwarded output
        self.started: dict[tuple[int, int], float] = {}
        self.delivered: dict[tuple[tuple[int, int], str], int] = {}   # bytes handed to on_output so far
        self.relay: Any = None          # the OutputRelay actor, once a task has run _FORWARD_AFTER seconds
        self._relay_failed = False
        self._drain_ref: Any = None
        self._last_drain = 0.0

    def _remote_for(self, step: str) -> Any:
        remote = self._options.get(step)
        if remote is None:
            opts = ray_options(self.requests.get(step, self.default_request))
            remote = self._options[step] = self._remote.options(name=f"keel:{step}", **opts)
        return remote

    def submit(self, spec: TaskSpec) -> None:
        ref = self._remote_for(spec.step).remote(spec, self.digest, self.flow_ref, self.store_ref, self.context)
        key = (spec.task_id, spec.attempt)
        self.pending[ref] = spec
        self.by_task[key] = ref
        self.specs[key] = spec
        self.started[key] = time.monotonic()

    def running(self) -> int:
        return len(self.pending)

    def wait(self, timeout: float) -> list[Outcome]:
        if not self.pending:
            if timeout > 0:
                time.sleep(timeout)
            return []
        refs = list(self.pending)
        deadline = time.monotonic() + max(timeout, 0)
        while True:   # in slices, so that output of running tasks is drained while they run
            self._pump()
            left = deadline - time.monotonic()
            ready, _ = self.ray.wait(refs, num_returns=1, timeout=max(min(left, _FORWARD_EVERY), 0))
            if ready:
                break
            if left <= _FORWARD_EVERY:
                return []
        ready, _ = self.ray.wait(refs, num_returns=len(refs), timeout=0)
        return [self._outcome(ref) for ref in ready]

    # -- output forwarded while tasks run -------------------------------------------------------
    def _pump(self) -> None:
        """Create the relay once a task has run long enough; take what it holds, never blocking."""
        if self._relay_failed:
            return
        now = time.monotonic()
        if self.relay is None:
            if not any(now - t >= _FORWARD_AFTER for t in self.started.values()):
                return
            try:
                actor = self.ray.remote(OutputRelay).options(name=self.relay_name, namespace="keel", num_cpus=0,
                                                             max_restarts=0)
                self.relay = actor.remote()
            except Exception:  # noqa: BLE001 - no relay: output arrives with the results, as before
                self._relay_failed = True
                return
        if self._drain_ref is not None:
            done, _ = self.ray.wait([self._drain_ref], num_returns=1, timeout=0)
            if done:
                self._take_drain()
        if self._drain_ref is None and now - self._last_drain >= _FORWARD_EVERY:
            self._drain_ref = self.relay.drain.remote()
            self._last_drain = now

    def _take_drain(self, timeout: float | None = None) -> None:
        ref, self._drain_ref = self._drain_ref, None
        try:
            chunks = self.ray.get(ref, timeout=timeout)
        except Exception:  # noqa: BLE001 - the relay died: output arrives with the results
            self._relay_failed = True
            return
        for key, stream, offset, data in chunks:
            self._deliver(key, stream, offset, data)

    def _deliver(self, key: tuple[int, int], stream: str, offset: int, data: bytes) -> None:
        """Hand bytes [offset, offset+len) of a stream to on_output, skipping what was handed already."""
        spec = self.specs.get(key)
        if spec is None:
            return   # the attempt is over (cancelled): its output was settled then
        done = self.delivered.get((key, stream), 0)
        if offset < done:
            data = data[done - offset:]
            offset = done
        if data:
            self.on_output(spec, stream, data)
            self.delivered[(key, stream)] = offset + len(data)

    def _settle(self, key: tuple[int, int], offsets: dict[str, int]) -> None:
        """Before a finished task's tail: every chunk the relay holds for it is delivered."""
        deadline = time.monotonic() + _SETTLE_SECONDS
        while (self.relay is not None and not self._relay_failed
               and any(self.delivered.get((key, s), 0) < offsets.get(s, 0) for s in ("stdout", "stderr"))
               and time.monotonic() < deadline):
            if self._drain_ref is None:
                self._drain_ref = self.relay.drain.remote()
                self._last_drain = time.monotonic()
            self._take_drain(timeout=max(deadline - time.monotonic(), 0.1))

    def _forget(self, key: tuple[int, int]) -> None:
        self.specs.pop(key, None)
        self.started.pop(key, None)
        for stream in ("stdout", "stderr"):
            self.delivered.pop((key, stream), None)

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
            self._forget(key)
            return Outcome(spec=spec, result=None, reason=words, node=node)
        self.cancelled.discard(key)
        if spec.metrics_path:
            for suffix, data in payload["metrics"].items():
                with open(spec.metrics_path + suffix, "ab") as fh:
                    fh.write(data)
        offsets = payload.get("offsets") or {}
        self._settle(key, offsets)
        for stream in ("stdout", "stderr"):
            self._deliver(key, stream, offsets.get(stream, 0), payload[stream])
        self._forget(key)
        result = payload["result"]
        return Outcome(spec=spec, result=result, exit_code=0 if result.get("ok") else 1, node=payload["node"])

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
            outcomes.append(Outcome(spec=spec, result=None, reason="the Ray task was cancelled"))
        self.by_task.clear()
        self.close()
        return outcomes

    def close(self) -> None:
        """The run is over: stop the output relay, disconnect from the cluster (if this executor connected)."""
        relay, self.relay = getattr(self, "relay", None), None
        if relay is not None:
            try:
                self.ray.kill(relay)
            except Exception:  # noqa: BLE001 - already gone
                pass
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

