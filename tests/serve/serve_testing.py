"""Helpers of the serving tests: train a real run, start `keel serve` as a subprocess.

A module of its own (not conftest.py), as tests/keel_testing.py explains."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from pathlib import Path


HERE = Path(__file__).resolve().parent
TRAIN = HERE / "train_flow.py"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def train(home: Path, *args: str) -> None:
    env = {**os.environ, "KEEL_HOME": str(home)}
    done = subprocess.run([sys.executable, str(TRAIN), "run", *args], cwd=home.parent, env=env,
                          capture_output=True, text=True, timeout=180)
    assert done.returncode == 0, done.stdout + done.stderr


class Server:
    """`keel serve ...` on a free loopback port; .url, .log(), .stop().

    The port is free when chosen and bound by the server a moment later; if something took it
    in between (another test's server, a client's outgoing connection), ``wait_ready`` starts
    the server again on another port."""

    def __init__(self, home: Path, *args: str, port: int | None = None, env: dict[str, str] | None = None):
        self._home, self._args, self._fixed_port = home, args, port is not None
        self._env = {k: v for k, v in os.environ.items() if k != "KEEL_SERVE_TOKEN"}
        self._env.update({"KEEL_HOME": str(home), **(env or {})})
        self._start(port or free_port())

    def _start(self, port: int) -> None:
        self.port = port
        self.url = f"http://127.0.0.1:{self.port}"
        self.log_path = self._home.parent / f"serve-{self.port}.log"
        self._log = open(self.log_path, "wb")
        self.proc = subprocess.Popen([sys.executable, "-m", "keel.cli.main", "serve", *self._args,
                                      "--port", str(self.port)],
                                     cwd=self._home.parent, env=self._env, stdout=self._log, stderr=subprocess.STDOUT)

    def wait_ready(self, path: str = "/health", timeout: float = 180) -> None:
        import httpx

        deadline = time.monotonic() + timeout
        restarts = 0
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                if "address already in use" in self.log().lower() and not self._fixed_port and restarts < 3:
                    self._log.close()
                    self._start(free_port())   # the port was taken after it was chosen: another one
                    restarts += 1
                    continue
                raise AssertionError(f"keel serve exited with {self.proc.returncode}:\n{self.log()}")
            try:
                if httpx.get(self.url + path, timeout=2).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            time.sleep(0.05)  # poll interval, not a wait for a condition
        raise AssertionError(f"keel serve did not answer {path} in {timeout} s:\n{self.log()}")

    def log(self) -> str:
        self._log.flush()
        return self.log_path.read_text(errors="replace")

    def stop(self) -> int:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self._log.close()
        return self.proc.returncode
