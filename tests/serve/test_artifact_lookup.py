"""keel.store.lookup: the serving path's SQLite reader gives the client's answer, and an endpoint
starts without importing SQLAlchemy or FastAPI."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import pytest

from keel.errors import NotFoundError, UsageError
from keel.store import Store, StoreSettings
from keel.store.lookup import SqliteLookup
from keel.store.records import ArtifactsWrite, TaskWrite


def _ref(key: str) -> dict:
    return {"key": key, "serializer": "pickle", "size": 10}


def _run(md, flow: str, steps: list[str], tasks: dict[int, tuple[str, dict[str, str]]], status: str) -> int:
    """A run with ``steps`` (in position order) and tasks {id: (step, {artifact: key})}."""
    run_id = md.runs.new_run(flow, params={})
    md.runs.register_steps(flow, run_id, steps)
    now = time.time()
    writes: list = []
    for task_id, (step, arts) in tasks.items():
        writes.append(TaskWrite(flow, run_id, task_id, step, "succeeded", 1, now))
        writes.append(ArtifactsWrite(flow, run_id, task_id, {n: _ref(k) for n, k in arts.items()}, frozenset(arts)))
    md.runs.write_batch(writes)
    md.runs.set_run_status(flow, run_id, status)
    return run_id


@pytest.fixture(scope="module")
def shapes(tmp_path_factory) -> Store:
    """Runs of several shapes in a real SQLite store (metadata only: the lookup reads no blobs)."""
    home = tmp_path_factory.mktemp("lookup") / ".keel"
    home.mkdir()
    store = Store(StoreSettings(home=home, metadata_url=f"sqlite:///{home / 'metadata.db'}",
                                artifact_url=str(home / "artifacts")))
    md = store.metadata
    # 1: a foreach; the model in start and end, m2 in every split, x in start only, a hidden one in end
    _run(md, "Shapes", ["start", "part", "join", "end"],
         {1: ("start", {"model": "s-model", "x": "s-x"}), 4: ("part", {"m2": "p4"}), 2: ("part", {"m2": "p2"}),
          3: ("part", {"m2": "p3"}), 5: ("join", {"model": "j-model"}),
          6: ("end", {"model": "e-model", "_keel_cards": "cards"})}, "succeeded")
    _run(md, "Shapes", ["start", "end"], {1: ("start", {"model": "f-model"})}, "failed")             # 2
    # 3: steps registered out of file order; end holds nothing; y in part and join
    _run(md, "Shapes", ["start", "end", "part", "join"],
         {1: ("start", {"y": "s-y"}), 3: ("part", {"y": "p-y"}), 2: ("join", {"y": "j-y", "model": "j3"}),
          4: ("end", {})}, "succeeded")
    _run(md, "Shapes", ["start", "end"], {1: ("end", {"model": "late"})}, "failed")                  # 4
    _run(md, "NoEnd", ["start", "train"], {1: ("start", {"model": "a"}), 2: ("train", {"model": "b"})}, "succeeded")
    return store


def _client_answer(store: Store, flow: str, run_id: int | None, name: str) -> tuple | None:
    """What the serving path's client reading (keel.serve.model) finds, as (run, step, task, keys)."""
    from keel.client.core import Flow, Run
    from keel.serve.model import _find_task

    try:
        run = Flow(flow, _store=store).latest_successful_run if run_id is None else Run(f"{flow}/{run_id}",
                                                                                         _store=store)
        if run is None or not run.successful:
            return None
        task = _find_task(run, name)
    except (NotFoundError, UsageError):   # no such run or artifact, an id no column holds
        return None
    return run.id, task.step_name, task.id, {n: a.key for n, a in task.artifacts.items()}


CASES = [("Shapes", 1, "model"), ("Shapes", 1, "m2"), ("Shapes", 1, "x"), ("Shapes", 1, "_keel_cards"),
         ("Shapes", 1, "missing"), ("Shapes", 2, "model"), ("Shapes", 3, "y"), ("Shapes", 3, "model"),
         ("Shapes", None, "model"), ("Shapes", None, "y"), ("Shapes", 4, "model"), ("Shapes", 9, "model"),
         ("Shapes", 2**70, "model"), ("NoEnd", None, "model"), ("Nobody", None, "model")]


@pytest.mark.parametrize("flow,run_id,name", CASES)
def test_the_sqlite_lookup_finds_what_the_client_finds(shapes, flow, run_id, name):
    lookup = SqliteLookup.open(shapes.settings.metadata_url)
    assert lookup is not None
    try:
        found = lookup.locate(flow, run_id, name)
    finally:
        lookup.close()
    expected = _client_answer(shapes, flow, run_id, name)
    got = None if found is None else (found.run_id, found.step, found.task_id,
                                      {n: r["key"] for n, r in found.artifacts.items()})
    assert got == expected


@pytest.mark.parametrize("flow", ["Shapes", "NoEnd", "Nobody"])
def test_the_latest_successful_run_is_the_clients(shapes, flow):
    from keel.client.core import Flow

    lookup = SqliteLookup.open(shapes.settings.metadata_url)
    assert lookup is not None
    try:
        found = lookup.latest_successful_run_id(flow)
    finally:
        lookup.close()
    run = Flow(flow, _store=shapes).latest_successful_run
    assert found == (run.id if run is not None else None)


def test_the_lookup_leaves_a_store_at_another_revision_to_the_full_store(tmp_path):
    import sqlite3

    path = tmp_path / "metadata.db"
    with sqlite3.connect(path) as conn:
        conn.execute("CREATE TABLE alembic_version (version_num VARCHAR(32) NOT NULL)")
        conn.execute("INSERT INTO alembic_version VALUES ('0001_release_0_1')")
    assert SqliteLookup.open(f"sqlite:///{path}") is None
    assert SqliteLookup.open(f"sqlite:///{tmp_path / 'absent.db'}") is None
    (tmp_path / "garbage.db").write_bytes(b"not a database" * 100)
    assert SqliteLookup.open(f"sqlite:///{tmp_path / 'garbage.db'}") is None
    assert SqliteLookup.open("postgresql://u@h/db") is None


_COLD = """
import json, sys
from keel.serve.app import build_app
from keel.serve.model import load_model
from keel.serve.options import ServeOptions
from keel.serve.server import make_slot
import asyncio

options = ServeOptions(flow="Train", run_id=1, artifact="model")
app = build_app(options, make_slot(options, load_model("Train", 1, "model")))
sent = []

async def call(path):
    async def receive():
        return {"type": "http.request", "body": b"", "more_body": False}
    async def send(message):
        sent.append(message)
    await app({"type": "http", "method": "GET", "path": path, "headers": []}, receive, send)

asyncio.run(call("/v2/health/ready"))
before = sorted(m for m in ("sqlalchemy", "fastapi", "pydantic") if m in sys.modules)
asyncio.run(call("/openapi.json"))
print(json.dumps({"status": [m["status"] for m in sent if "status" in m], "ready": json.loads(sent[1]["body"]),
                  "imported": before, "openapi": "paths" in json.loads(sent[3]["body"])}))
"""


def test_an_endpoint_is_ready_without_sqlalchemy_or_fastapi_which_come_with_the_docs(store: Path):
    import json
    import os

    done = subprocess.run([sys.executable, "-c", _COLD], capture_output=True, text=True, timeout=180,
                          env={**os.environ, "KEEL_HOME": str(store)}, cwd=store.parent)
    assert done.returncode == 0, done.stderr
    answer = json.loads(done.stdout.strip().splitlines()[-1])
    assert answer == {"status": [200, 200], "ready": {"ready": True}, "imported": [], "openapi": True}
