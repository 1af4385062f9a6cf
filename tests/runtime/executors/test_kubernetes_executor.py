"""The Kubernetes executor, tested as far as this machine allows (no API server can run here).

* Every Job manifest Keel builds is validated against the Kubernetes OpenAPI schema for
  batch/v1 Job (the schemas shipped by the ``kubernetes-validate`` package, offline).
* The executor talks to a fake of the *kubernetes client API* (BatchV1Api/CoreV1Api methods,
  returning the client's own model classes). The fake plays the cluster's part honestly: it
  validates each Job it is given, then runs the pod's container command as a local process
  with the container's environment (and envFrom secrets), and serves its log and status.
  Keel's own code (scheduler, executor, remote task, S3 store) is all real; artifacts go
  through moto's S3 server on 127.0.0.1.
"""

from __future__ import annotations

import re
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

import pytest

kubernetes = pytest.importorskip("kubernetes")
kubernetes_validate = pytest.importorskip("kubernetes_validate")

from kubernetes.client import (  # noqa: E402
    V1ContainerState,
    V1ContainerStateTerminated,
    V1ContainerStatus,
    V1Job,
    V1JobStatus,
    V1ObjectMeta,
    V1Pod,
    V1PodList,
    V1PodSpec,
    V1PodStatus,
)
from kubernetes.client.exceptions import ApiException  # noqa: E402

from keel.errors import ExecutorError  # noqa: E402
from keel.runtime.executors import kubernetes as k8s  # noqa: E402
from keel.runtime.task import TaskSpec  # noqa: E402

SHAPES = Path(__file__).parents[2] / "flows"
SCHEMA_VERSION = kubernetes_validate.latest_version()


def validate(manifest: dict) -> None:
    kubernetes_validate.validate(manifest, SCHEMA_VERSION, strict=True)
    name = manifest["metadata"]["name"]
    assert re.fullmatch(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?", name) and len(name) <= 63, name
    for value in manifest["metadata"]["labels"].values():
        assert re.fullmatch(r"([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]", value) and len(value) <= 63, value


class FakeCluster:
    """BatchV1Api + CoreV1Api as the executor calls them; pods are local processes."""

    def __init__(self, workdir: Path, secrets: dict[str, dict[str, str]]):
        self.workdir, self.secrets = workdir, secrets
        self.calls: list[tuple[str, dict[str, Any]]] = []
        self.jobs: dict[tuple[str, str], dict[str, Any]] = {}
        self.max_alive = 0
        self.lock = threading.Lock()

    # BatchV1Api
    def create_namespaced_job(self, namespace: str, body: dict) -> V1Job:
        self.calls.append(("create_namespaced_job", {"namespace": namespace, "name": body["metadata"]["name"]}))
        validate(body)
        name = body["metadata"]["name"]
        if (namespace, name) in self.jobs:
            raise ApiException(status=409, reason="AlreadyExists")
        container = body["spec"]["template"]["spec"]["containers"][0]
        env = {"PATH": "/usr/bin:/bin", "HOME": str(self.workdir)}
        for source in container.get("envFrom", []):
            env.update(self.secrets[source["secretRef"]["name"]])
        env.update({e["name"]: e["value"] for e in container["env"]})
        command = [sys.executable if c == "python" else c for c in container["command"]]
        log = self.workdir / f"{name}.log"
        with open(log, "wb") as out:
            proc = subprocess.Popen(command, env=env, cwd=self.workdir, stdout=out, stderr=subprocess.STDOUT)
        self.jobs[(namespace, name)] = {"body": body, "proc": proc, "log": log, "deleted": False}
        alive = sum(1 for j in self.jobs.values() if j["proc"].poll() is None and not j["deleted"])
        self.max_alive = max(self.max_alive, alive)
        return V1Job(metadata=V1ObjectMeta(name=name, namespace=namespace))

    def read_namespaced_job_status(self, name: str, namespace: str) -> V1Job:
        job = self.jobs[(namespace, name)]
        code = job["proc"].poll()
        status = V1JobStatus(active=1) if code is None else (
            V1JobStatus(succeeded=1) if code == 0 else V1JobStatus(failed=1))
        return V1Job(metadata=V1ObjectMeta(name=name, namespace=namespace), status=status)

    def delete_namespaced_job(self, name: str, namespace: str, propagation_policy: str | None = None) -> None:
        self.calls.append(("delete_namespaced_job", {"namespace": namespace, "name": name,
                                                     "propagation_policy": propagation_policy}))
        job = self.jobs[(namespace, name)]
        job["deleted"] = True
        if job["proc"].poll() is None:
            job["proc"].kill()
            job["proc"].wait()

    # CoreV1Api
    def list_namespaced_pod(self, namespace: str, label_selector: str) -> V1PodList:
        name = label_selector.removeprefix("job-name=")
        job = self.jobs.get((namespace, name))
        if job is None or job["deleted"]:
            return V1PodList(items=[])
        code = job["proc"].poll()
        if code is not None and code < 0:  # a container runtime reports a process killed by signal N as 128+N
            code = 128 - code
        state = V1ContainerState(terminated=V1ContainerStateTerminated(
            exit_code=code, reason="Completed" if code == 0 else "Error")) if code is not None else V1ContainerState()
        return V1PodList(items=[V1Pod(
            metadata=V1ObjectMeta(name=f"{name}-pod"),
            spec=V1PodSpec(node_name="fake-node-1", containers=[]),
            status=V1PodStatus(container_statuses=[V1ContainerStatus(
                name="keel-task", image="x", image_id="x", ready=code is None, restart_count=0, state=state)]))])

    def read_namespaced_pod_log(self, name: str, namespace: str, container: str) -> str:
        assert container == "keel-task"
        job = self.jobs[(namespace, name.removesuffix("-pod"))]
        return job["log"].read_text(errors="replace")


@pytest.fixture
def s3_store(s3_endpoint: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    import boto3

    env = {"AWS_ENDPOINT_URL": s3_endpoint, "AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
           "AWS_DEFAULT_REGION": "us-east-1", "AWS_EC2_METADATA_DISABLED": "true",
           "KEEL_HOME": str(tmp_path / ".keel"), "KEEL_ARTIFACT_URL": f"s3://keel-k8s-{tmp_path.name[-20:].lower().replace('_', '-')}/a"}
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    boto3.client("s3", endpoint_url=s3_endpoint).create_bucket(Bucket=env["KEEL_ARTIFACT_URL"][5:].split("/")[0])
    return env["KEEL_ARTIFACT_URL"]


@pytest.fixture
def cluster(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> FakeCluster:
    fake = FakeCluster(tmp_path, secrets={"aws": {"AWS_ACCESS_KEY_ID": "testing",
                                                  "AWS_SECRET_ACCESS_KEY": "testing"}})
    # Where the executor would load ~/.kube/config, it gets the fake API instead.
    monkeypatch.setattr(k8s.KubernetesAPI, "from_config", classmethod(lambda cls: cls(batch=fake, core=fake)))
    return fake


def _spec(step: str = "train", flow: str = "BigSum", task_id: int = 7, attempt: int = 0) -> TaskSpec:
    return TaskSpec(flow=flow, run_id=12, step=step, task_id=task_id, attempt=attempt, inputs=[{}], input_steps=[],
                    is_join=False, param_names=[])


@pytest.mark.parametrize("request_", [
    {"cpu": 1, "memory": 4096, "disk": 10240, "gpu": 0, "namespace": "default"},
    {"cpu": 0.5, "memory": 512.4, "disk": 1000, "gpu": 2, "namespace": "ml", "service_account": "trainer",
     "secret": "aws"},
])
def test_job_manifests_are_valid_batch_v1_jobs(request_: dict) -> None:
    manifest = k8s.job_manifest(_spec(), request_, payload_key="ab" * 16, artifact_url="s3://b/p", image="me/keel:1")
    validate(manifest)
    pod = manifest["spec"]["template"]["spec"]
    assert manifest["spec"]["backoffLimit"] == 0 and pod["restartPolicy"] == "Never"
    assert pod["containers"][0]["command"] == ["python", "-m", "keel.runtime.remote_task", "ab" * 16]
    assert manifest["metadata"]["name"] == "keel-bigsum-train-12-7-0"
    assert manifest["metadata"]["namespace"] == request_["namespace"]
    if request_["gpu"]:
        assert pod["containers"][0]["resources"]["limits"]["nvidia.com/gpu"] == "2"
        assert pod["serviceAccountName"] == "trainer"
        assert pod["containers"][0]["envFrom"] == [{"secretRef": {"name": "aws"}}]


def test_long_and_odd_names_still_make_valid_jobs() -> None:
    spec = _spec(step="A_very_long_step_name_" * 4, flow="Flow_With_CAPS_" * 5, task_id=123456, attempt=3)
    manifest = k8s.job_manifest(spec, {"cpu": 2}, payload_key="cd" * 16, artifact_url="s3://b", image="i")
    validate(manifest)
    assert manifest["metadata"]["name"].endswith("-12-123456-3")


def test_flows_run_as_jobs_and_give_the_same_results(cluster: FakeCluster, s3_store: str) -> None:
    from keel import Run
    from keel.flow.loader import load_flow_file
    from keel.runtime.launch import RunRequest, start_run
    from keel.runtime.scheduler import Options

    tasks = 0
    for shape, flow_name in (("foreach", "ForeachFlow"), ("branch", "BranchFlow")):
        flow_cls = load_flow_file(str(SHAPES / f"{shape}.py"))
        result = start_run(RunRequest(flow_cls=flow_cls, params={}, flow_file=str(SHAPES / f"{shape}.py"),
                                      quiet=True, options=Options(max_workers=2),
                                      executors=["kubernetes:image=keel:test,secret=aws,namespace=ml"]))
        assert result.ok
        run = Run(f"{flow_name}/1")
        assert run.data.result == _expected(shape)
        assert {t.node for s in run for t in s} == {f"k8s:fake-node-1/{n}-pod" for n in _job_names(cluster, flow_name)}
        tasks += sum(len(s) for s in run)
    creates = [c for c in cluster.calls if c[0] == "create_namespaced_job"]
    assert all(c[1]["namespace"] == "ml" for c in creates)
    assert len(creates) == tasks == 8 + 5            # one Job per task (foreach: 8 tasks, branch: 5), no retries
    assert not [c for c in cluster.calls if c[0] == "delete_namespaced_job"]
    assert cluster.max_alive <= 2                    # --max-workers 2


def _expected(shape: str) -> Any:
    import importlib.util

    spec = importlib.util.spec_from_file_location(f"_k8s_shape_{shape}", SHAPES / f"{shape}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.EXPECTED["result"]


def _job_names(cluster: FakeCluster, flow: str) -> list[str]:
    return [name for (_, name) in cluster.jobs if name.startswith(f"keel-{flow.lower()}-")]


def test_output_comes_back_and_the_result_line_is_not_shown(cluster: FakeCluster, s3_store: str,
                                                           tmp_path: Path) -> None:
    from keel import Run
    from keel.flow.loader import load_flow_file
    from keel.runtime.launch import RunRequest, start_run

    flow_file = tmp_path / "talk.py"
    flow_file.write_text(
        "import sys\nfrom keel import FlowSpec, step, current\n\n"
        "class TalkFlow(FlowSpec):\n"
        "    @step\n    def start(self):\n        print('hello from the pod')\n"
        "        print('to stderr', file=sys.stderr)\n        current.log_metric('m', 2.5, step=1)\n"
        "        self.x = 1\n        self.next(self.end)\n\n"
        "    @step\n    def end(self):\n        print('bye', end='')\n")
    flow_cls = load_flow_file(str(flow_file))
    result = start_run(RunRequest(flow_cls=flow_cls, params={}, flow_file=str(flow_file), quiet=True,
                                  executors=["kubernetes:image=keel:test,secret=aws"]))
    assert result.ok
    run = Run("TalkFlow/1")
    assert run["start"].task.stdout == "hello from the pod\nto stderr\n"   # a pod's log merges the two
    assert run["end"].task.stdout == "bye\n"
    assert [(s, v) for s, v, _ in run.metrics["m"]] == [(1, 2.5)]


def test_a_pod_killed_by_a_signal_says_so_in_the_tasks_stderr(cluster: FakeCluster, s3_store: str,
                                                             tmp_path: Path) -> None:
    from keel import Run
    from keel.flow.loader import load_flow_file
    from keel.runtime.launch import RunRequest, start_run

    flow_file = tmp_path / "segv.py"
    flow_file.write_text(
        "import os, signal\nfrom keel import FlowSpec, step\n\n"
        "class SegvFlow(FlowSpec):\n"
        "    @step\n    def start(self):\n        os.kill(os.getpid(), signal.SIGSEGV)\n"
        "        self.next(self.end)\n\n"
        "    @step\n    def end(self):\n        pass\n")
    flow_cls = load_flow_file(str(flow_file))
    result = start_run(RunRequest(flow_cls=flow_cls, params={}, flow_file=str(flow_file), quiet=True,
                                  executors=["kubernetes:image=keel:test,secret=aws"]))
    assert not result.ok
    task = Run("SegvFlow/1")["start"].task
    assert "[keel] the task process was killed by SIGSEGV (pod " in task.stderr
    assert "exit code 139" in task.stderr


def test_interrupting_deletes_the_jobs_and_stops_their_pods(cluster: FakeCluster, s3_store: str,
                                                           tmp_path: Path) -> None:
    from keel.store import Store

    flow_file = tmp_path / "slow.py"
    flow_file.write_text("import time\nfrom keel import FlowSpec, step\n\nclass SlowFlow(FlowSpec):\n"
                         "    @step\n    def start(self):\n        time.sleep(60)\n        self.next(self.end)\n\n"
                         "    @step\n    def end(self):\n        pass\n")
    from keel.flow.loader import load_flow_file

    flow_cls = load_flow_file(str(flow_file))
    store = Store.from_env()
    executor = k8s.KubernetesExecutor(flow_cls, store.artifacts, lambda *a: None,
                                      requests={"start": {"image": "keel:test", "namespace": "default"}})
    spec = _spec(step="start", flow="SlowFlow")
    executor.submit(spec)
    (job,) = cluster.jobs.values()
    assert job["proc"].poll() is None
    outcomes = executor.shutdown()
    assert [o.reason for o in outcomes] == [
        "the run was interrupted: Keel deleted Job default/keel-slowflow-start-12-7-0"]
    assert cluster.calls[-1] == ("delete_namespaced_job", {"namespace": "default", "name": "keel-slowflow-start-12-7-0",
                                                           "propagation_policy": "Background"})
    assert job["proc"].poll() is not None            # the pod is gone with its Job
    assert executor.running() == 0


def test_a_local_artifact_store_is_refused(cluster: FakeCluster, tmp_path: Path) -> None:
    from keel.store.artifacts import ArtifactStore

    store = ArtifactStore.from_url(str(tmp_path / "artifacts"))
    with pytest.raises(ExecutorError, match=re.escape(
            f"--with kubernetes / @kubernetes: the artifact store is {tmp_path / 'artifacts'}, which pods cannot "
            f"reach. Set KEEL_ARTIFACT_URL=s3://bucket/prefix (and AWS_* settings) so this machine and the pods "
            f"share it")):
        k8s.KubernetesExecutor(object, store, lambda *a: None, requests={"start": {"image": "x"}})


def test_a_step_without_an_image_is_refused(cluster: FakeCluster, s3_store: str, monkeypatch) -> None:
    from keel.store import Store

    monkeypatch.delenv("KEEL_KUBERNETES_IMAGE", raising=False)
    with pytest.raises(ExecutorError, match=re.escape(
            "step 'train' runs on Kubernetes but names no container image: give one with @kubernetes(image=...), "
            "--with kubernetes:image=... or KEEL_KUBERNETES_IMAGE")):
        k8s.KubernetesExecutor(object, Store.from_env().artifacts, lambda *a: None,
                               requests={"train": {"image": None}})
