"""Schema versions: a fresh store starts at the head; a store written by release 0.1
(tests/store/fixtures/release_0_1, made by make_release_0_1.sh) is migrated on open and
stays readable and resumable; a store from a newer Keel is refused with a clear message."""

from __future__ import annotations

import shutil
import sqlite3
from pathlib import Path

import pytest

from keel_testing import run_cli
from keel.errors import MetadataError
from keel.store.metadata import MetadataStore
from keel.store.schema import SCHEMA_HEAD
from keel.store.versions import schema_revision, script_head

FIXTURES = Path(__file__).resolve().parent / "fixtures"


@pytest.fixture
def old_store(tmp_path, monkeypatch) -> Path:
    """A copy of the release 0.1 fixture (KEEL_HOME and the flow files that made it)."""
    folder = tmp_path / "fixtures"
    shutil.copytree(FIXTURES, folder, ignore=shutil.ignore_patterns("__pycache__"))
    monkeypatch.setenv("KEEL_HOME", str(folder / "release_0_1"))
    monkeypatch.delenv("KEEL_METADATA_URL", raising=False)
    monkeypatch.delenv("KEEL_ARTIFACT_URL", raising=False)
    monkeypatch.chdir(folder)
    return folder


def test_schema_head_is_the_last_migration_script():
    assert script_head() == SCHEMA_HEAD


def test_a_fresh_store_is_created_at_the_head(tmp_path):
    md = MetadataStore(f"sqlite:///{tmp_path / 'meta.db'}")
    assert schema_revision(md.db.writer) == SCHEMA_HEAD
    assert md.events.last_id() == 0


def test_the_release_0_1_fixture_has_no_version(old_store):
    db = sqlite3.connect(old_store / "release_0_1" / "metadata.db")
    tables = {r[0] for r in db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    assert "runs" in tables and "alembic_version" not in tables and "events" not in tables


def test_a_release_0_1_store_is_migrated_and_readable_by_the_client(old_store):
    from keel import Flow, Run

    md = MetadataStore(f"sqlite:///{old_store / 'release_0_1' / 'metadata.db'}")
    assert schema_revision(md.db.writer) == SCHEMA_HEAD
    run = Run("TrackedFlow/1")
    assert (run.successful, run.params, run.tags) == (True, {"alpha": 0.25, "label": "first"},
                                                      ["best", "fixture", "release-0.1"])
    assert run.data.total == 14
    assert [t.data.sq for t in run["square"]] == [1, 4, 9]
    assert [v for _, v, _ in run.metrics["acc"]] == [0.775]
    assert len(run.metrics["loss"]) == 15
    assert [c["text"] for c in run.comments] == ["the first run of the fixture"]
    assert "starting with alpha 0.25" in run["start"].task.stdout
    assert Flow("FailingFlow").latest_run.status == "failed"
    assert Run("fixtureproject/1").successful


def test_the_migration_fills_each_runs_last_metric_values_from_its_points(old_store):
    md = MetadataStore(f"sqlite:///{old_store / 'release_0_1' / 'metadata.db'}")
    points = md.metrics.run_metrics("TrackedFlow", 1)
    last = md.metrics.last_of_runs([("TrackedFlow", 1)], ["acc", "loss"])[("TrackedFlow", 1)]
    assert last == {"acc": points["acc"][-1][1], "loss": points["loss"][-1][1]}
    assert [r.run_id for r in md.query.search_runs(flow="TrackedFlow", where="metrics.acc = 0.775")] == [1]



def test_the_migration_summarises_each_stepped_series_by_blocks_of_steps(old_store):
    from keel.store.records import METRIC_BLOCK

    path = old_store / "release_0_1" / "metadata.db"
    MetadataStore(f"sqlite:///{path}")
    db = sqlite3.connect(path)
    want: dict[tuple[str, int, str, int], tuple[int, float, float, int, int, float]] = {}
    for flow, run_id, name, step, value, id_ in db.execute(
            "SELECT flow, run_id, name, step, value, id FROM metrics WHERE step IS NOT NULL ORDER BY id"):
        n, lo, hi, *_ = want.get((flow, run_id, name, step // METRIC_BLOCK), (0, value, value))
        want[(flow, run_id, name, step // METRIC_BLOCK)] = (n + 1, min(lo, value), max(hi, value), id_, step, value)
    got = {tuple(r[:4]): tuple(r[4:]) for r in db.execute(
        "SELECT flow, run_id, name, block, n, lo, hi, last_id, last_step, last_value FROM metric_blocks")}
    assert want and got == want

def test_a_release_0_1_store_is_readable_by_the_cli(old_store):
    wide = {"COLUMNS": "200"}
    runs = run_cli("runs", env=wide)
    assert runs.returncode == 0, runs.stderr
    for pathspec in ("TrackedFlow/1", "TrackedFlow/2", "FailingFlow/1", "fixtureproject/1"):
        assert pathspec in runs.stdout
    found = run_cli("runs", "TrackedFlow", "--where", 'params.alpha > 0.5 and "fixture" in tags',
                    env=wide)
    assert found.returncode == 0, found.stderr
    assert "TrackedFlow/2" in found.stdout and "TrackedFlow/1" not in found.stdout
    logs = run_cli("logs", "TrackedFlow/2/end")
    assert logs.returncode == 0 and "total 14" in logs.stdout


def test_the_failed_release_0_1_run_resumes_and_new_runs_get_the_next_id(old_store):
    from keel import Run

    resumed = run_cli("failing_flow.py", "resume", "1", cwd=old_store)
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    run = Run("FailingFlow/2")
    assert run.successful and run.data.result == 90
    assert run["start"].task.reused and run["start"].task.origin == "FailingFlow/1/start/1"
    again = run_cli("tracked_flow.py", "run", cwd=old_store)
    assert again.returncode == 0, again.stderr
    assert Run("TrackedFlow/3").successful


def test_a_store_from_a_newer_keel_is_refused(old_store):
    db_path = old_store / "release_0_1" / "metadata.db"
    MetadataStore(f"sqlite:///{db_path}").close()
    db = sqlite3.connect(db_path)
    db.execute("UPDATE alembic_version SET version_num = '0099_from_the_future'")
    db.commit()
    db.close()
    with pytest.raises(MetadataError, match="newer than this Keel"):
        MetadataStore(f"sqlite:///{db_path}")
    listed = run_cli("runs")
    assert listed.returncode == 1
    assert "schema version '0099_from_the_future', newer than this Keel understands" in listed.stderr
    assert "Traceback" not in listed.stderr
