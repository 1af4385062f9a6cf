"""What the executor tests share, imported by name (a `from conftest import` can get another
folder's conftest when several are collected together): a real two-node Ray cluster on this machine.

Both nodes are real ``ray start --block`` processes, each in its own process group: the head
on 127.0.0.3 with the custom resource ``keel_test_head``, the worker on 127.0.0.2 with
``keel_test_worker`` (every 127.x address is this machine's loopback; Ray refuses 127.0.0.1 as
a node address on a multi-node cluster). Only those process groups are stopped, never
``ray stop``, which would stop every Ray on the machine. The nodes get AWS test credentials
in their environment, as a real cluster's machines would have their own.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path


RAY = Path(sys.executable).with_name("ray")
HEAD_IP, WORKER_IP = "127.0.0.3", "127.0.0.2"
BASE_ENV = {"RAY_AUTH_MODE": "disabled", "RAY_USAGE_STATS_ENABLED": "0", "AWS_EC2_METADATA_DISABLED": "true",
            "AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing", "AWS_DEFAULT_REGION": "us-east-1"}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def clean_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("RAY_", "KEEL_", "AWS_"))}
    env.update(BASE_ENV)
    env.update(extra)
    return env


class RayCluster:
    """Two Ray nodes started by the tests; ``kill_worker``/``start_worker`` for failure tests."""

    def __init__(self, root: Path):
        self.root = root
        # Ray's unix sockets live under its temp dir, and their paths must stay under 108 bytes.
        self.ray_temp = tempfile.mkdtemp(prefix="keel-test-ray-", dir="/tmp")
        self.port = free_port()
        self.address = f"{HEAD_IP}:{self.port}"
        self.procs: dict[str, subprocess.Popen] = {}
        self.node_ids: dict[str, str] = {}   # "head" | "worker" -> Ray node id (hex)

    def _start(self, role: str, args: list[str]) -> None:
        log = open(self.root / f"{role}.log", "ab")
        cmd = [str(RAY), "start", "--block", "--num-cpus=1", "--disable-usage-stats",
               "--object-store-memory=80000000", "--min-worker-port=0", "--max-worker-port=0",
               f"--dashboard-agent-listen-port={free_port()}", f"--dashboard-agent-grpc-port={free_port()}",
               f"--metrics-export-port={free_port()}", *args]
        self.procs[role] = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=clean_env(),
                                            start_new_session=True)
        log.close()

    def start_head(self) -> None:
        self._start("head", ["--head", f"--node-ip-address={HEAD_IP}", f"--port={self.port}",
                             f"--ray-client-server-port={free_port()}", "--include-dashboard=false",
                             f"--dashboard-port={free_port()}", f"--temp-dir={self.ray_temp}",
                             '--resources={"keel_test_head": 1}'])

    def start_worker(self) -> None:
        self._start("worker", [f"--address={self.address}", f"--node-ip-address={WORKER_IP}",
                               '--resources={"keel_test_worker": 1}'])

    def alive_nodes(self) -> list[dict]:
        script = ("import json, ray; ray.init(address=%r, log_to_driver=False, logging_level='ERROR'); "
                  "print(json.dumps([{'id': n['NodeID'], 'ip': n['NodeManagerAddress'], 'resources': n['Resources']}"
                  " for n in ray.nodes() if n['Alive']]))" % self.address)
        out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=clean_env(),
                             timeout=60)
        if out.returncode != 0:
            return []
        return json.loads(out.stdout.strip().splitlines()[-1])

    def _check_running(self) -> None:
        for role, proc in self.procs.items():
            if proc.poll() is not None:
                raise RuntimeError(f"ray {role} exited: {(self.root / f'{role}.log').read_text()[-3000:]}")

    def wait_for_nodes(self, roles: set[str], timeout: float = 90) -> None:
        deadline = time.monotonic() + timeout
        for role in roles:  # `ray start` says so once its node is up; only then ask the cluster
            while "Ray runtime started" not in (self.root / f"{role}.log").read_text(errors="replace"):
                self._check_running()
                if time.monotonic() > deadline:
                    raise RuntimeError(f"ray {role} did not start in {timeout}s")
                time.sleep(0.2)
        while time.monotonic() < deadline:
            self._check_running()
            found = {}
            for node in self.alive_nodes():
                for role in roles:
                    if f"keel_test_{role}" in node["resources"]:
                        found[role] = node["id"]
            if set(found) == roles:
                self.node_ids.update(found)
                return
            time.sleep(0.5)
        raise RuntimeError(f"the Ray nodes {sorted(roles)} did not come up in {timeout}s")

    def node_label(self, role: str) -> str:
        """How Keel records a task that ran on that node."""
        ip = HEAD_IP if role == "head" else WORKER_IP
        return f"ray:{ip}:{self.node_ids[role][:16]}"

    def stop(self, role: str, sig: int = signal.SIGTERM, grace: float = 3.0) -> None:
        proc = self.procs.pop(role, None)
        if proc is None:
            return
        try:
            os.killpg(proc.pid, sig)   # the node's own process group: raylet, workers, agents
        except ProcessLookupError:
            pass
        try:
            proc.wait(timeout=grace)
        except subprocess.TimeoutExpired:
            pass
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        proc.wait(timeout=10)

    def kill_worker(self) -> None:
        self.stop("worker", signal.SIGKILL, grace=0)

    def ensure_worker(self) -> None:
        if "worker" not in self.procs:
            self.start_worker()
            self.wait_for_nodes({"head", "worker"})
