"""Kubernetes executor: each task attempt is a batch/v1 Job, through the official Python client.

    KEEL_ARTIFACT_URL=s3://bucket/keel python flow.py run --with kubernetes:image=me/keel:1.0
    @kubernetes(cpu=4, memory=16000, image="me/keel:1.0") @step def train(self): ...

The pod runs ``python -m keel.runtime.remote_task KEY``: the task's payload (spec and flow
class, by value) and its result travel through the artifact store, which must therefore be
shared (``s3://``); its output comes back by following the pod's log, and the result's key is
the log's last line. Keel's own ``@retry`` decides about retries (``backoffLimit: 0``), a
``@timeout`` or Ctrl-C deletes the Job (and so its pod), and ``--max-workers`` bounds how many
Jobs exist at once (the scheduler does that, as for every executor).

This executor has been tested against the Kubernetes OpenAPI schema (the manifests) and a
fake of the client API that runs each pod's command as a local process; it has not run
against a live cluster.
"""

from __future__ import annotations

import os
import pickle
import re
import time
from dataclasses import dataclass, field
from typing import Any

from keel.errors import ExecutorError
from keel.runtime.executors.base import Outcome, OutputSink, record_ending, signal_name
from keel.runtime.remote_task import RESULT_MARKER, make_payload
from keel.runtime.task import TaskSpec
from keel.settings import Settings

CONTAINER = "keel-task"
_POLL = 0.5          # seconds between looks at the cluster
_TTL = 3600          # finished Jobs are removed by the cluster after an hour
_STUCK = ("ErrImagePull", "ImagePullBackOff", "InvalidImageName", "CreateContainerConfigError",
          "CreateContainerError")
_FORWARDED_ENV = ("AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_S3", "AWS_REGION", "AWS_DEFAULT_REGION")

NO_IMAGE = ("step {step!r} runs on Kubernetes but names no container image: give one with "
            "@kubernetes(image=...), --with kubernetes:image=... or KEEL_KUBERNETES_IMAGE "
            "(an image with Python, Keel and the flow's libraries installed)")
NOT_SHARED = ("--with kubernetes / @kubernetes: the artifact store is {url}, which pods cannot reach. "
              "Set KEEL_ARTIFACT_URL=s3://bucket/prefix (and AWS_* settings) so this machine and the pods "
              "share it")


def _label(value: str) -> str:
    """A valid label value: 63 characters of [A-Za-z0-9_.-], starting and ending alphanumeric."""
    text = re.sub(r"[^A-Za-z0-9_.-]", "-", value)[:63]
    return text.strip("-_.") or "x"


def job_name(spec: TaskSpec) -> str:
    """A DNS-1123 name, unique per attempt: keel-<flow>-<run>-<step>-<task>-<attempt>."""
    tail = f"-{spec.run_id}-{spec.task_id}-{spec.attempt}"
    head = re.sub(r"[^a-z0-9-]", "-", f"keel-{spec.flow.lower()}-{spec.step.lower()}")
    head = re.sub(r"-+", "-", head)[: 63 - len(tail)].strip("-")
    return head + tail


def _quantity_mb(mb: float) -> str:
    return f"{int(round(mb))}Mi"


def job_manifest(spec: TaskSpec, request: dict[str, Any], *, payload_key: str, artifact_url: str,
                 image: str) -> dict[str, Any]:
    """The batch/v1 Job that runs one attempt of ``spec`` (a plain dict, as the API takes it)."""
    cpu = float(request.get("cpu") or 1)
    resources: dict[str, dict[str, str]] = {
        "requests": {"cpu": f"{cpu:g}", "memory": _quantity_mb(request.get("memory") or 4096),
                     "ephemeral-storage": _quantity_mb(request.get("disk") or 10240)},
        "limits": {"memory": _quantity_mb(request.get("memory") or 4096),
                   "ephemeral-storage": _quantity_mb(request.get("disk") or 10240)},
    }
    if request.get("gpu"):
        resources["requests"]["nvidia.com/gpu"] = resources["limits"]["nvidia.com/gpu"] = str(int(request["gpu"]))
    env = [{"name": "KEEL_ARTIFACT_URL", "value": artifact_url}, {"name": "PYTHONUNBUFFERED", "value": "1"}]
    env += [{"name": k, "value": os.environ[k]} for k in _FORWARDED_ENV if os.environ.get(k)]
    labels = {"app.kubernetes.io/managed-by": "keel", "keel/flow": _label(spec.flow),
              "keel/run-id": str(spec.run_id), "keel/step": _label(spec.step), "keel/task-id": str(spec.task_id),
              "keel/attempt": str(spec.attempt)}
    container: dict[str, Any] = {
        "name": CONTAINER, "image": image, "imagePullPolicy": "IfNotPresent",
        "command": ["python", "-m", "keel.runtime.remote_task", payload_key],
        "env": env, "resources": resources,
    }
    if request.get("secret"):
        container["envFrom"] = [{"secretRef": {"name": str(request["secret"])}}]
    pod_spec: dict[str, Any] = {"restartPolicy": "Never", "containers": [container]}
    if request.get("service_account"):
        pod_spec["serviceAccountName"] = str(request["service_account"])
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {"name": job_name(spec), "namespace": request.get("namespace") or "default", "labels": labels,
                     "annotations": {"keel/pathspec": spec.pathspec}},
        "spec": {
            "backoffLimit": 0,                 # Keel's @retry decides, with a new Job per attempt
            "ttlSecondsAfterFinished": _TTL,
            "template": {"metadata": {"labels": labels}, "spec": pod_spec},
        },
    }


class _LogFilter:
    """Passes a pod's log through, line by line, holding back Keel's result line."""

    def __init__(self) -> None:
        self.pending = b""
        self.blank_held = False
        self.result_key: str | None = None

    def feed(self, data: bytes) -> bytes:
        self.pending += data
        *lines, self.pending = self.pending.split(b"\n")
        out = []
        for line in lines:
            if line.startswith(RESULT_MARKER.encode()):
                self.result_key = line[len(RESULT_MARKER):].decode().strip()
                self.blank_held = False       # the blank line remote_task put before it
                continue
            if self.blank_held:
                out.append(b"")
                self.blank_held = False
            if line == b"":
                self.blank_held = True
                continue
            out.append(line)
        return b"".join(line + b"\n" for line in out)

    def close(self) -> bytes:
        rest = (b"\n" if self.blank_held else b"") + self.pending
        self.pending, self.blank_held = b"", False
        return rest


@dataclass
class _Job:
    spec: TaskSpec
    name: str
    namespace: str
    log_seen: int = 0
    log: _LogFilter = field(default_factory=_LogFilter)
    pod: str | None = None
    node: str | None = None
    deleted: str | None = None           # why Keel deleted it (timeout, interrupted)


@dataclass
class KubernetesAPI:
    """The two client APIs the executor calls (the official client's, or a test's fake)."""

    batch: Any
    core: Any

    @classmethod
    def from_config(cls) -> KubernetesAPI:
        try:
            from kubernetes import client, config
        except ImportError:
            raise ExecutorError("--with kubernetes / @kubernetes: the kubernetes client is not installed: "
                                "pip install 'keel[k8s]'") from None
        try:
            config.load_incluster_config()
        except config.ConfigException:
            try:
                config.load_kube_config()
            except Exception as exc:  # noqa: BLE001 - no kubeconfig, bad context...
                raise ExecutorError(f"--with kubernetes: no Kubernetes cluster is configured ({exc}). Point "
                                    f"KUBECONFIG at one (check with: kubectl config current-context)") from None
        return cls(batch=client.BatchV1Api(), core=client.CoreV1Api())


class KubernetesExecutor:
    """Runs each task attempt as a Kubernetes Job and follows it to the end."""

    name = "kubernetes"

    def __init__(self, flow_cls: type, artifacts: Any, on_output: OutputSink, *,
                 requests: dict[str, dict[str, Any]] | None = None, flow_file: str | None = None,
                 api: KubernetesAPI | None = None):
        self.flow_cls = flow_cls
        self.artifacts = artifacts
        self.on_output = on_output
        self.requests = dict(requests or {})
        self.settings = Settings.from_env()
        url = getattr(artifacts.backend, "url", None)
        if not isinstance(url, str) or not url.startswith("s3://"):
            where = getattr(artifacts.backend, "root", None) or repr(artifacts.backend)
            raise ExecutorError(NOT_SHARED.format(url=where))
        self.artifact_url = url
        for step, request in self.requests.items():
            request["image"] = request.get("image") or self.settings.kubernetes_image
            if not request["image"]:
                raise ExecutorError(NO_IMAGE.format(step=step))
        self.api = api or KubernetesAPI.from_config()
        self.jobs: dict[tuple[int, int], _Job] = {}
        self._next_poll = 0.0

    # -- submit -------------------------------------------------------------------------------
    def submit(self, spec: TaskSpec) -> None:
        request = self.requests.get(spec.step) or {"image": self.settings.kubernetes_image}
        key = self.artifacts.put_bytes(make_payload(spec, self.flow_cls))
        body = job_manifest(spec, request, payload_key=key, artifact_url=self.artifact_url, image=request["image"])
        namespace = body["metadata"]["namespace"]
        try:
            self.api.batch.create_namespaced_job(namespace=namespace, body=body)
        except Exception as exc:  # noqa: BLE001 - the API said no: this attempt fails, @retry decides
            job = _Job(spec, body["metadata"]["name"], namespace, deleted=f"Kubernetes refused the Job: {_api_error(exc)}")
            self.jobs[(spec.task_id, spec.attempt)] = job
            return
        self.jobs[(spec.task_id, spec.attempt)] = _Job(spec, body["metadata"]["name"], namespace)

    def running(self) -> int:
        return len(self.jobs)

    # -- follow ---------------------------------------------------------------------------------
    def wait(self, timeout: float) -> list[Outcome]:
        deadline = time.monotonic() + max(timeout, 0)
        while True:
            done = [self._outcome(job) for job in list(self.jobs.values()) if self._finished(job)]
            if done or time.monotonic() >= deadline:
                return done
            time.sleep(min(_POLL, max(0.0, deadline - time.monotonic())))

    def _finished(self, job: _Job) -> bool:
        if job.deleted is not None:
            return True
        self._follow_log(job)
        status = self.api.batch.read_namespaced_job_status(name=job.name, namespace=job.namespace).status
        if status is not None and ((status.succeeded or 0) > 0 or (status.failed or 0) > 0):
            self._follow_log(job)
            return True
        stuck = self._stuck(job)
        if stuck:
            self._delete(job, stuck)
            return True
        return False

    def _pod(self, job: _Job) -> Any:
        pods = self.api.core.list_namespaced_pod(namespace=job.namespace, label_selector=f"job-name={job.name}")
        items = getattr(pods, "items", None) or []
        if not items:
            return None
        pod = items[-1]
        job.pod = pod.metadata.name
        job.node = getattr(pod.spec, "node_name", None) or job.node
        return pod

    def _stuck(self, job: _Job) -> str | None:
        pod = self._pod(job)
        for cs in (getattr(getattr(pod, "status", None), "container_statuses", None) or []):
            waiting = getattr(cs.state, "waiting", None) if cs.state else None
            if waiting is not None and waiting.reason in _STUCK:
                return f"the pod cannot start: {waiting.reason}: {waiting.message or ''}".strip()
        return None

    def _follow_log(self, job: _Job) -> None:
        if job.pod is None and self._pod(job) is None:
            return
        try:
            text = self.api.core.read_namespaced_pod_log(name=job.pod, namespace=job.namespace, container=CONTAINER)
        except Exception:  # noqa: BLE001 - not started yet (ContainerCreating): no log so far
            return
        data = text.encode() if isinstance(text, str) else bytes(text or b"")
        if len(data) > job.log_seen:
            shown = job.log.feed(data[job.log_seen:])
            job.log_seen = len(data)
            if shown:
                self.on_output(job.spec, "stdout", shown)

    def _outcome(self, job: _Job) -> Outcome:
        del self.jobs[(job.spec.task_id, job.spec.attempt)]
        rest = job.log.close()
        if rest:
            self.on_output(job.spec, "stdout", rest)
        node = f"k8s:{job.node}/{job.pod}" if job.pod else None
        if job.deleted is not None:
            return record_ending(self.on_output, Outcome(spec=job.spec, result=None, reason=job.deleted, node=node))
        if job.log.result_key is None:
            code, sig, why = self._terminated(job)
            words = (f"the task process was killed by {signal_name(sig)} (pod {job.pod}{why})" if sig is not None
                     else f"the pod of Job {job.namespace}/{job.name} ended without a result{why}")
            return record_ending(self.on_output, Outcome(spec=job.spec, result=None, node=node, exit_code=code,
                                                         signal=sig, reason=words))
        report = pickle.loads(self.artifacts.get_bytes(job.log.result_key, what=f"the result of {job.spec.pathspec}"))
        if job.spec.metrics_path:
            for suffix, data in report["metrics"].items():
                with open(job.spec.metrics_path + suffix, "ab") as fh:
                    fh.write(data)
        result = report["result"]
        return Outcome(spec=job.spec, result=result, exit_code=0 if result.ok else 1, node=node)

    def _terminated(self, job: _Job) -> tuple[int | None, int | None, str]:
        """(exit code, signal, words) of the pod's ended container: a signal from the container's
        ``signal`` field or an exit code of 128+N (how container runtimes report a process killed by N)."""
        pod = self._pod(job)
        for cs in (getattr(getattr(pod, "status", None), "container_statuses", None) or []):
            term = getattr(cs.state, "terminated", None) if cs.state else None
            if term is None:
                continue
            code = term.exit_code
            sig = getattr(term, "signal", None) or (code - 128 if isinstance(code, int) and 128 < code < 160 else None)
            if sig is not None:
                return None, sig, f", container {term.reason or 'terminated'}, exit code {code}"
            return code, None, f" (container {term.reason or 'terminated'}, exit code {code})"
        return None, None, ""

    # -- stop -------------------------------------------------------------------------------------
    def _delete(self, job: _Job, why: str) -> None:
        job.deleted = why
        try:
            self.api.batch.delete_namespaced_job(name=job.name, namespace=job.namespace,
                                                 propagation_policy="Background")
        except Exception:  # noqa: BLE001 - already gone
            pass

    def kill(self, spec: TaskSpec) -> None:
        job = self.jobs.get((spec.task_id, spec.attempt))
        if job is not None and job.deleted is None:
            self._delete(job, f"Keel deleted Job {job.namespace}/{job.name}")

    def shutdown(self) -> list[Outcome]:
        """Delete every Job of this run (their pods go with them) and report the attempts."""
        for job in list(self.jobs.values()):
            if job.deleted is None:
                self._delete(job, f"the run was interrupted: Keel deleted Job {job.namespace}/{job.name}")
        return [self._outcome(job) for job in list(self.jobs.values())]

    def close(self) -> None:
        """Nothing is held between calls: every Job is deleted when it ends or by shutdown()."""


def _api_error(exc: Exception) -> str:
    reason = getattr(exc, "reason", None)
    body = getattr(exc, "body", None)
    return f"{getattr(exc, 'status', '')} {reason or type(exc).__name__}: {body or exc}".strip()
