"""Flows on a real two-node Ray cluster (started by conftest.py), through the real CLI.

Every run is a real ``python flow.py run --with ray`` process; results are read back with
Keel's client from the same KEEL_HOME.
"""

from __future__ import annotations

import importlib.util
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from executors_kit import RayCluster, clean_env, free_port

pytest.importorskip("ray")

HERE = Path(__file__).parent
SHAPES = Path(__file__).parents[2] / "flows"
GRAPH_SHAPES = ["linear", "branch", "nested_branch", "foreach", "nested_foreach", "foreach_in_branch",
                "branch_in_foreach"]


def run_flow(path: Path, home: Path, *args: str, env: dict[str, str] | None = None,
             timeout: float = 300) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(path), "run", "--quiet", *args], cwd=home,
                          env=env or clean_env(KEEL_HOME=str(home / ".keel")), capture_output=True, text=True,
                          timeout=timeout)


def cluster_env(cluster: RayCluster, home: Path, **extra: str) -> dict[str, str]:
    return clean_env(KEEL_HOME=str(home / ".keel"), KEEL_RAY_ADDRESS=cluster.address, **extra)


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("KEEL_HOME", str(tmp_path / ".keel"))
    monkeypatch.delenv("KEEL_ARTIFACT_URL", raising=False)
    return tmp_path


def expected(shape: str) -> dict:
    spec = importlib.util.spec_from_file_location(f"_shape_{shape}", SHAPES / f"{shape}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.EXPECTED


@pytest.mark.parametrize("shape", GRAPH_SHAPES)
def test_every_graph_shape_gives_the_same_results_on_ray(shape: str, ray_cluster: RayCluster, home: Path) -> None:
    from keel import Flow

    done = run_flow(SHAPES / f"{shape}.py", home, "--with", "ray", env=cluster_env(ray_cluster, home))
    assert done.returncode == 0, done.stderr
    (run,) = [r for f in _flows() for r in Flow(f).runs()]
    assert run.successful
    for name, value in expected(shape).items():
        assert getattr(run.data, name) == value
    nodes = {t.node for s in run for t in s}
    assert nodes <= {ray_cluster.node_label("head"), ray_cluster.node_label("worker")}, nodes


def _flows() -> list[str]:
    from keel.store import Store

    return Store.from_env().metadata.runs.list_flows()


def test_foreach_tasks_land_on_both_nodes_and_custom_resources_pin_a_step(ray_cluster: RayCluster,
                                                                          home: Path) -> None:
    from keel import Run

    ray_cluster.ensure_worker()
    (home / "meet").mkdir()
    done = run_flow(HERE / "flows" / "ray_spread.py", home, "--with", "ray", "--folder", str(home / "meet"),
                    env=cluster_env(ray_cluster, home))
    assert done.returncode == 0, done.stderr
    run = Run("SpreadFlow/1")
    assert run.data.total == sum(i * i for i in range(4))
    part_nodes = {t.node for t in run["part"]}
    assert part_nodes == {ray_cluster.node_label("head"), ray_cluster.node_label("worker")}
    assert run["pinned"].task.node == ray_cluster.node_label("worker")
    assert sorted(t.stdout for t in run["part"]) == [f"part {i}\n" for i in range(4)]
    assert sorted(v for _, v, _ in run.metrics["square"]) == [float(i * i) for i in range(4)]


def test_ray_on_one_step_sends_only_that_step_to_the_cluster(ray_cluster: RayCluster, home: Path) -> None:
    import socket

    from keel import Run

    done = run_flow(HERE / "flows" / "ray_mixed.py", home, env=cluster_env(ray_cluster, home))
    assert done.returncode == 0, done.stderr
    run = Run("MixedFlow/1")
    assert run.data.total == 600
    here = socket.gethostname()
    nodes = {s.id: {t.node for t in s} for s in run}
    assert nodes.pop("heavy") <= {ray_cluster.node_label("head"), ray_cluster.node_label("worker")}
    assert nodes == {"start": {here}, "join": {here}, "end": {here}}
    by_input = {t.data.value // 100: t for t in run["heavy"]}
    for i, task in by_input.items():   # fd-level capture: the subprocess's output is there too
        assert sorted(task.stdout.splitlines()) == [f"heavy {i} from a subprocess", f"heavy {i} out"]
        assert task.stderr == f"heavy {i} err\n"
    assert sorted(v for _, v, _ in run.metrics["loss"]) == sorted([1.0, 0.5, 1.0 / 3])


def test_artifacts_on_s3_are_shared_by_every_node(ray_cluster: RayCluster, s3_endpoint: str, home: Path,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    import boto3

    from keel import Run

    aws = {"AWS_ENDPOINT_URL": s3_endpoint, "KEEL_ARTIFACT_URL": "s3://keel-ray/artifacts"}
    for name, value in {**aws, "AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
                        "AWS_DEFAULT_REGION": "us-east-1", "AWS_EC2_METADATA_DISABLED": "true"}.items():
        monkeypatch.setenv(name, value)
    ray_cluster.ensure_worker()
    s3 = boto3.client("s3", endpoint_url=s3_endpoint)
    s3.create_bucket(Bucket="keel-ray")
    both = {ray_cluster.node_label("head"), ray_cluster.node_label("worker")}
    # Where Ray puts a free task is its choice (on a loaded machine one node may take them all),
    # so the spread flow forces it: two 'part' tasks that wait for each other run on both nodes
    # and 'pinned' on the worker, and the join and the pinned step read what the other node wrote.
    (home / "meet").mkdir()
    done = run_flow(HERE / "flows" / "ray_spread.py", home, "--with", "ray", "--folder", str(home / "meet"),
                    env=cluster_env(ray_cluster, home, **aws))
    assert done.returncode == 0, done.stderr
    spread = Run("SpreadFlow/1")
    assert spread.data.total == sum(i * i for i in range(4))
    assert {t.node for t in spread["part"]} == both
    assert spread["pinned"].task.node == ray_cluster.node_label("worker")
    done = run_flow(SHAPES / "branch_in_foreach.py", home, "--with", "ray", env=cluster_env(ray_cluster, home, **aws))
    assert done.returncode == 0, done.stderr
    run = Run("BranchInForeachFlow/1")
    assert run.data.result == expected("branch_in_foreach")["result"]
    assert {t.node for s in run for t in s} <= both
    keys = [o["Key"] for o in s3.list_objects_v2(Bucket="keel-ray")["Contents"]]
    assert keys and all(k.startswith("artifacts/") for k in keys)
    assert not (home / ".keel" / "artifacts").exists()      # nothing went to the local folder


def test_without_a_cluster_keel_says_how_to_start_one(home: Path) -> None:
    port = free_port()
    done = run_flow(SHAPES / "linear.py", home, "--with", f"ray:address=127.0.0.1:{port}")
    assert done.returncode == 1
    assert done.stderr.strip().splitlines()[-1] == (
        f"keel: --with ray: no Ray cluster at 127.0.0.1:{port} (Connection refused). Start one with "
        "`ray start --head` on this machine (add nodes with `ray start --address=HEAD_IP:6379`), or point Keel "
        "at a running one with --with ray:address=HOST:PORT or KEEL_RAY_ADDRESS=HOST:PORT. Keel does not start "
        "a throwaway cluster on its own.")
    assert not (home / ".keel" / "metadata.db").exists() or _no_runs(home)


def test_a_request_no_node_can_meet_is_refused_before_the_run(ray_cluster: RayCluster, home: Path) -> None:
    done = run_flow(SHAPES / "linear.py", home, "--with", "ray:cpu=64", env=cluster_env(ray_cluster, home))
    assert done.returncode == 1
    assert done.stderr.splitlines()[0] == (
        f"keel: step 'end' asks Ray for cpu=64, but no node of the cluster at {ray_cluster.address} has that much "
        f"(the most any node has: cpu=1)")
    assert done.stderr.strip().endswith("Lower the request (@ray, @resources or --with ray:...), or add a node "
                                        "that big to the cluster first")
    assert _no_runs(home)


def _no_runs(home: Path) -> bool:
    from keel import Flow

    try:
        return not list(Flow("LinearFlow").runs())
    except Exception:  # noqa: BLE001 - no such flow at all
        return True


def _wait_for(paths: list[Path], proc: subprocess.Popen, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while not all(p.exists() for p in paths):
        if proc.poll() is not None:
            raise AssertionError(f"the run ended early: {proc.stderr.read()}")
        if time.monotonic() > deadline:
            raise AssertionError(f"no {', '.join(p.name for p in paths)} after {timeout}s")
        time.sleep(0.05)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def test_ctrl_c_cancels_the_runs_ray_tasks(ray_cluster: RayCluster, home: Path) -> None:
    from keel import Run

    ray_cluster.ensure_worker()
    folder = home / "markers"
    folder.mkdir()
    proc = subprocess.Popen([sys.executable, str(HERE / "flows" / "ray_hold.py"), "run", "--quiet", "--with", "ray",
                             "--folder", str(folder)], cwd=home, env=cluster_env(ray_cluster, home),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    markers = [folder / "running-0", folder / "running-1"]
    _wait_for(markers, proc)
    pids = [int(m.read_text()) for m in markers]
    proc.send_signal(signal.SIGINT)
    assert proc.wait(timeout=60) == 130
    deadline = time.monotonic() + 60  # Ray stops its workers late on a loaded machine
    while any(_alive(p) for p in pids) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not any(_alive(p) for p in pids), "the Ray workers running the tasks were not stopped"
    run = Run("HoldFlow/1")
    assert run.status == "interrupted"
    assert {t.status for t in run["hold"]} == {"interrupted"}


def test_timeout_cancels_the_ray_task(ray_cluster: RayCluster, home: Path) -> None:
    from keel import Run
    from keel.store import Store

    flow = home / "slow.py"
    flow.write_text("import os, time\nfrom keel import FlowSpec, Parameter, step, timeout\n\n"
                    "class SlowFlow(FlowSpec):\n    folder = Parameter('folder', default='')\n\n"
                    "    @timeout(seconds=3)\n    @step\n    def start(self):\n"
                    "        open(os.path.join(self.folder, 'pid'), 'w').write(str(os.getpid()))\n"
                    "        time.sleep(120)\n        self.next(self.end)\n\n"
                    "    @step\n    def end(self):\n        pass\n\n"
                    "if __name__ == '__main__':\n    SlowFlow()\n")
    done = run_flow(flow, home, "--with", "ray", "--folder", str(home), env=cluster_env(ray_cluster, home))
    assert done.returncode == 1
    assert "ran longer than its @timeout of 3 seconds" in done.stderr
    pid = int((home / "pid").read_text())
    deadline = time.monotonic() + 60  # Ray stops its worker late on a loaded machine
    while _alive(pid) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not _alive(pid)
    (attempt,) = Store.from_env().metadata.runs.list_attempts("SlowFlow", 1)
    assert attempt["error_type"] == "StepTimeout" and Run("SlowFlow/1").status == "failed"


def test_a_dead_node_fails_the_attempt_and_retry_runs_it_again(ray_cluster: RayCluster, home: Path) -> None:
    from keel import Run
    from keel.store import Store

    ray_cluster.ensure_worker()
    folder = home / "markers"
    folder.mkdir()
    proc = subprocess.Popen([sys.executable, str(HERE / "flows" / "ray_hold.py"), "run", "--quiet", "--with", "ray",
                             "--folder", str(folder)], cwd=home, env=cluster_env(ray_cluster, home),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    victim = ray_cluster.node_label("worker")
    try:
        _wait_for([folder / "running-0", folder / "running-1"], proc)
        ray_cluster.kill_worker()                       # SIGKILL to the whole worker node
        (folder / "release").write_text("go")
        out, err = proc.communicate(timeout=120)
        assert proc.returncode == 0, err
    finally:
        if proc.poll() is None:
            proc.kill()                                 # later tests that need two nodes restart the worker
    run = Run("HoldFlow/1")
    assert run.successful and run.data.total == 3
    retried = [t for t in run["hold"] if t.attempts == 2]
    assert len(retried) == 1
    attempts = Store.from_env().metadata.runs.list_attempts("HoldFlow", 1, retried[0].id)
    first, second = sorted(attempts, key=lambda a: a["attempt"])
    assert first["status"] == "failed"
    assert first["error_message"].startswith("the Ray node running the task died")
    assert first["node"] == victim
    assert second["status"] == "succeeded" and second["node"] == ray_cluster.node_label("head")
    assert "[keel] the Ray node running the task died" in retried[0].stderr   # the log says why, too


def test_a_project_runs_its_script_jobs_as_command_tasks_on_ray(ray_cluster: RayCluster, home: Path) -> None:
    """`keel project run --with ray`: each job instance is a command task on a Ray worker; its
    output, metrics, tags and exit status come back to the one scheduler."""
    project = home / "proj"
    project.mkdir()
    (project / "count.py").write_text(
        "from keel import current\n"
        "import os\n"
        "i = int(os.environ['KEEL_INSTANCE'])\n"
        "print(f'count {i} of {os.environ[\"KEEL_INSTANCES\"]}')\n"
        "current.log_metric('n', i + 1)\n"
        "current.tag('counted')\n")
    (project / "keel.yaml").write_text(
        "name: onray\njobs:\n"
        "  - name: count\n    entrypoint: python count.py\n    parallelism: 2\n"
        "  - name: broken\n    entrypoint: echo nope >&2; exit 4\n    after: [count]\n")
    keel = str(Path(sys.executable).with_name("keel"))
    done = subprocess.run([keel, "project", "run", "--with", "ray"], cwd=project, capture_output=True, text=True,
                          env=cluster_env(ray_cluster, home), timeout=180)
    assert done.returncode == 1, done.stdout + done.stderr
    from keel.client.core import Run

    run = Run("onray/1")
    counts = list(run["count"])
    assert sorted(t.stdout for t in counts) == ["count 0 of 2\n", "count 1 of 2\n"]
    assert all(t.node in {ray_cluster.node_label("head"), ray_cluster.node_label("worker")} for t in counts)
    assert sorted(v for t in counts for _, v, _ in t.metrics["n"]) == [1.0, 2.0]
    assert "counted" in run.tags
    broken = run["broken"].task
    assert broken.exception["message"] == "job 'broken' exited with status 4"
    assert broken.stderr == "nope\n"


def test_a_projects_flow_job_sends_its_steps_to_ray_and_its_script_jobs_run_there(ray_cluster: RayCluster,
                                                                                   home: Path) -> None:
    """`keel project run --with ray` with a flow job: the flow's run is scheduled here and its
    steps go to Ray (as `flow.py run --with ray`); the script job runs on a Ray worker."""
    project = home / "mixed"
    project.mkdir()
    (project / "double.py").write_text(
        "from keel import FlowSpec, Parameter, step\n\n\n"
        "class Double(FlowSpec):\n"
        "    n = Parameter('n', default=2)\n\n"
        "    @step\n    def start(self):\n        self.out = self.n * 2\n        self.next(self.end)\n\n"
        "    @step\n    def end(self):\n        pass\n")
    (project / "keel.yaml").write_text(
        "name: mixed\njobs:\n"
        "  - name: double\n    flow: double.py\n    params: {n: 21}\n"
        "  - name: report\n    entrypoint: echo reported\n    after: [double]\n")
    keel = str(Path(sys.executable).with_name("keel"))
    done = subprocess.run([keel, "project", "run", "--with", "ray"], cwd=project, capture_output=True, text=True,
                          env=cluster_env(ray_cluster, home), timeout=180)
    assert done.returncode == 0, done.stdout + done.stderr
    from keel.client.core import Run

    on_ray = {ray_cluster.node_label("head"), ray_cluster.node_label("worker")}
    run = Run("mixed/1")
    inner = Run(run["double"].task["flow_run"].data)
    assert inner.data.out == 42
    assert {t.node for step in ("start", "end") for t in inner[step]} <= on_ray  # the flow's steps ran on Ray
    report = run["report"].task
    assert report.stdout == "reported\n" and report.node in on_ray


CACHED_FLOW = '''
from keel import FlowSpec, cache, step


class CachedOnRay(FlowSpec):
    @cache
    @step
    def start(self):
        self.items = [1, 2, 3]
        self.next(self.part, foreach="items")

    @cache
    @step
    def part(self):
        self.out = self.input * 10
        self.next(self.join)

    @cache
    @step
    def join(self, inputs):
        self.total = sum(i.out for i in inputs)
        self.next(self.end)

    @step
    def end(self):
        pass


if __name__ == "__main__":
    CachedOnRay()
'''


def test_cached_steps_run_with_ray_are_taken_from_the_cache_on_the_second_run(ray_cluster: RayCluster,
                                                                              home: Path) -> None:
    from keel import Flow

    flow = home / "cached_on_ray.py"
    flow.write_text(CACHED_FLOW)
    for _ in range(2):
        done = run_flow(flow, home, "--with", "ray", env=cluster_env(ray_cluster, home))
        assert done.returncode == 0, done.stderr
    first, second = sorted(Flow("CachedOnRay").runs(), key=lambda r: r.id)
    assert [t.cached for s in first for t in s] == [False] * 6
    assert {s.id: [t.cached for t in s] for s in second} == {
        "start": [True], "part": [True] * 3, "join": [True], "end": [False]}
    assert second.data.total == first.data.total == 60


def test_a_cached_script_job_on_ray_records_its_reads_and_hits(ray_cluster: RayCluster, home: Path) -> None:
    project = home / "proj"
    project.mkdir()
    (project / "data.txt").write_text("3")
    (project / "double.py").write_text("print(int(open('data.txt').read()) * 2)\n")
    (project / "keel.yaml").write_text("name: cachedray\njobs:\n"
                                       "  - name: double\n    entrypoint: python double.py\n    cache: true\n")
    keel = str(Path(sys.executable).with_name("keel"))

    def cached() -> bool:
        done = subprocess.run([keel, "project", "run", "--with", "ray"], cwd=project, capture_output=True,
                              text=True, env=cluster_env(ray_cluster, home), timeout=180)
        assert done.returncode == 0, done.stdout + done.stderr
        from keel import Flow

        return Flow("cachedray").latest_run["double"].task.cached

    assert [cached(), cached()] == [False, True]
    (project / "data.txt").write_text("4")
    assert cached() is False
