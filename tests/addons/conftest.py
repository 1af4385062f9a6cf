"""Fixtures of the queue add-on's tests: a real redis-server on loopback for the session."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _start_redis(binary: str, workdir: Path) -> tuple[subprocess.Popen[bytes], Any, str, str]:
    """redis-server on a free port, once it answers a ping; or stopped, with its log."""
    import redis

    port = _free_port()
    log = workdir / f"redis-{port}.log"
    proc = subprocess.Popen([binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
                             "--dir", str(workdir), "--logfile", str(log)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)
    url = f"redis://127.0.0.1:{port}/0"
    client = redis.Redis.from_url(url)
    deadline = time.monotonic() + 60
    while proc.poll() is None and time.monotonic() < deadline:
        try:
            client.ping()
            return proc, client, url, ""
        except redis.RedisError:   # not up yet (or, the port taken, something else answers)
            time.sleep(0.02)
    client.close()
    if proc.poll() is None:
        proc.kill()
    proc.wait()
    return proc, client, url, log.read_text(errors="replace") if log.exists() else ""


@pytest.fixture(scope="session")
def redis_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """``redis://127.0.0.1:PORT/0`` of a redis-server started for this session (no persistence)."""
    binary = shutil.which("redis-server")
    if binary is None:
        pytest.fail("redis-server is missing: run scripts/ci-setup.sh (it apt-installs redis-server)")
    pytest.importorskip("redis", reason="the redis package is in the dev extra: pip install -e '.[dev]'")
    workdir = tmp_path_factory.mktemp("redis")
    for attempt in range(4):   # the free port may be taken before redis-server binds it: another one
        proc, client, url, log = _start_redis(binary, workdir)
        if proc.poll() is None:
            break
        if "Address already in use" not in log or attempt == 3:
            pytest.fail(f"redis-server at {url} did not start (exit {proc.returncode}): {log[-500:]}")
    try:
        yield url
    finally:
        client.close()
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


@pytest.fixture
def fresh_redis(redis_url: str) -> str:
    """The session's Redis, emptied for this test."""
    import redis

    with redis.Redis.from_url(redis_url) as client:
        client.flushdb()
    os.environ.pop("KEEL_QUEUE_URL", None)
    return redis_url
