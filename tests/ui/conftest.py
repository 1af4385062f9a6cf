"""A store made by real runs, shared by the dashboard's tests (made once per session)."""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

FLOWS = Path(__file__).resolve().parent / "flows"


@pytest.fixture(scope="session")
def ui_home(tmp_path_factory):
    """KEEL_HOME with five Train runs (alpha 0.1..0.4, and a failed one) and a tag and a comment."""
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    from keel_testing import run_in_process

    folder = tmp_path_factory.mktemp("ui")
    home = folder / ".keel"
    mp = pytest.MonkeyPatch()
    mp.setenv("KEEL_HOME", str(home))
    mp.delenv("KEEL_METADATA_URL", raising=False)
    mp.delenv("KEEL_ARTIFACT_URL", raising=False)
    for alpha in (0.1, 0.2, 0.3, 0.4):
        result = run_in_process(FLOWS / "train.py", {"alpha": alpha, "optimizer": "sgd" if alpha > 0.25 else "adam"})
        assert result.status == "succeeded", result
    assert run_in_process(FLOWS / "train.py", {"alpha": 0.9, "fail": True}).status == "failed"
    from keel.store import Store

    store = Store.from_env()
    store.metadata.annotations.add_tags("Train", 2, ["baseline"])
    store.metadata.annotations.add_comment("Train", 2, "<i>looks good</i>", author="tester")
    # A project with a schedule that fired once, for the schedules page (keel ui reads ./keel.yaml).
    (folder / "keel.yaml").write_text("name: weather\njobs:\n  - name: ingest\n    entrypoint: python ingest.py\n"
                                      "    schedule: \"0 * * * *\"\n"
                                      "endpoints:\n  - {name: scorer, flow: Train, artifact: weights, port: 8123}\n")
    store.metadata.schedules.claim_fire("weather", "ingest", 1_700_000_000.0)
    # The operations pages: a Data Engine table with two versions, a queue, a task's Spark UI address.
    import pyarrow as pa

    from keel.addons.queue import Queue
    from keel.data.engine import DataEngine

    engine = DataEngine.from_store(store)
    engine.save("cities", pa.table({"city": ["Oslo", "Lima"], "temp": [3.5, 19.0]}))
    engine.save("cities", pa.table({"city": ["Pune"], "temp": [31.0]}), mode="append")
    Queue("jobs").put_many([{"n": 1}, {"n": 2}])
    store.metadata.links.add("Train", 2, 1, "spark_ui", "http://127.0.0.1:4040")
    store.metadata.close()
    yield home
    mp.undo()


@pytest.fixture()
def client(ui_home):
    from starlette.testclient import TestClient   # an httpx client that calls the ASGI app in-process

    from keel.store import Store, StoreSettings
    from keel.ui.app import create_app
    from keel.ui.data import DashboardData

    store = Store(StoreSettings(home=ui_home, metadata_url=f"sqlite:///{ui_home / 'metadata.db'}",
                                artifact_url=str(ui_home / "artifacts")))
    with TestClient(create_app(DashboardData(store, project_file=str(ui_home.parent / "keel.yaml")))) as c:
        yield c
    store.metadata.close()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for_http(url: str, proc: subprocess.Popen, seconds: float = 120) -> None:
    import httpx

    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise AssertionError(f"keel ui exited with {proc.returncode}: {proc.stderr.read() if proc.stderr else ''}")
        try:
            httpx.get(url, timeout=1)
            return
        except httpx.HTTPError:
            time.sleep(0.05)
    raise AssertionError(f"keel ui did not answer at {url} within {seconds} s")


@contextlib.contextmanager
def keel_ui(home: Path):
    """`keel ui` as a subprocess on a free loopback port over ``home``; yields its base URL.

    The port is free when chosen and bound by `keel ui` a moment later: if something took it in
    between, the server is started again on another port."""
    env = {**os.environ, "KEEL_HOME": str(home)}
    for attempt in range(4):
        port = free_port()
        proc = subprocess.Popen([sys.executable, "-m", "keel.cli.main", "ui", "--port", str(port)],
                                cwd=home.parent, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        url = f"http://127.0.0.1:{port}"
        try:
            wait_for_http(url + "/api/runs?limit=1", proc)
            break
        except AssertionError as exc:
            if proc.poll() is None:   # it never answered: not left behind
                proc.kill()
                proc.wait()
            if "address already in use" not in str(exc).lower() or attempt == 3:
                raise
    try:
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


@pytest.fixture(scope="session")
def start_ui():
    """``start_ui(home)``: a context manager that runs `keel ui` over another KEEL_HOME."""
    return keel_ui


@pytest.fixture(scope="session")
def ui_server(ui_home):
    with keel_ui(ui_home) as url:
        yield url
