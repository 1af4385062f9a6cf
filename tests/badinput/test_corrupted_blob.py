"""A corrupted blob is never handed out again: dedup checks it, `keel store verify --repair` removes it."""

from __future__ import annotations

import json

from keel_testing import run_cli, write_flow

from keel.store.artifacts import ArtifactStore

FLOW = """
from keel import FlowSpec, step

class Produce(FlowSpec):
    @step
    def start(self):
        self.payload = "x" * 5000
        print("produced")
        self.next(self.end)

    @step
    def end(self):
        assert len(self.payload) == 5000

if __name__ == "__main__":
    Produce()
"""


def _damage(store_root, key):
    path = next(p for p in store_root.rglob(key) if p.is_file())
    path.chmod(0o644)
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))


def test_a_put_onto_a_damaged_blob_stores_the_bytes_again(tmp_path):
    store = ArtifactStore.from_url(tmp_path / "blobs")
    ref = store.put("y" * 100_000)
    _damage(tmp_path / "blobs", ref.key)
    assert store.verify(ref.key) is not None
    again = store.put("y" * 100_000)
    assert again.key == ref.key and store.verify(ref.key) is None
    assert store.get(again) == "y" * 100_000


def test_put_bytes_onto_a_damaged_blob_stores_the_bytes_again(tmp_path):
    store = ArtifactStore.from_url(tmp_path / "blobs")
    key = store.put_bytes(b"z" * 1000)
    _damage(tmp_path / "blobs", key)
    assert store.put_bytes(b"z" * 1000) == key and store.get_bytes(key) == b"z" * 1000


def test_store_verify_finds_reports_and_repairs(tmp_path, keel_home):
    flow = write_flow(tmp_path, "produce", FLOW)
    assert run_cli(str(flow), "run", cwd=tmp_path).returncode == 0
    from keel.store import Store

    md = Store.from_env().metadata
    task = md.runs.list_tasks("Produce", 1, "start")[0]
    key = md.runs.task_artifacts("Produce", 1, task.task_id)["payload"]["key"]
    _damage(keel_home, key)
    found = run_cli("store", "verify", cwd=tmp_path)
    assert found.returncode == 1 and "Traceback" not in found.stderr
    assert key in found.stdout and "Produce/1" in found.stdout and "payload" in found.stdout
    report = json.loads(run_cli("store", "verify", "--json", cwd=tmp_path).stdout)
    assert [d["key"] for d in report["damaged"]] == [key]
    repaired = run_cli("store", "verify", "--repair", cwd=tmp_path)
    assert repaired.returncode == 0, repaired.stderr
    assert run_cli("store", "verify", cwd=tmp_path).returncode == 0
    again = run_cli(str(flow), "run", cwd=tmp_path)  # writes the bytes again; the next step reads them
    assert again.returncode == 0, again.stderr
    assert run_cli("store", "verify", cwd=tmp_path).returncode == 0


def test_an_emptied_database_is_refused_and_old_logs_are_kept(tmp_path, keel_home):
    flow = write_flow(tmp_path, "produce", FLOW)
    assert run_cli(str(flow), "run", cwd=tmp_path).returncode == 0
    logs = sorted((keel_home / "logs").rglob("*.*"))
    before = {p: p.read_bytes() for p in logs}
    (keel_home / "metadata.db").unlink()
    done = run_cli(str(flow), "run", cwd=tmp_path)
    assert done.returncode == 1 and "Traceback" not in done.stderr
    assert "does not match its metadata database" in done.stderr
    assert {p: p.read_bytes() for p in logs} == before  # nothing appended to the old run's logs
