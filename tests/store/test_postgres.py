"""PostgreSQL for real: concurrent runs on one server, and the message without its driver."""

from __future__ import annotations

import os
import subprocess

from keel_testing import FLOWS, PYTHON, run_cli
from keel.store.metadata import MetadataStore


def test_concurrent_runs_on_one_postgres_store_get_unique_increasing_ids(postgres_url, keel_home):
    env = {**os.environ, "KEEL_METADATA_URL": postgres_url}
    runs = [subprocess.Popen([PYTHON, str(FLOWS / "foreach.py"), "run"], env=env, stdout=subprocess.DEVNULL,
                             stderr=subprocess.PIPE, text=True) for _ in range(4)]
    errors = [p.communicate(timeout=240)[1] for p in runs]
    assert [p.returncode for p in runs] == [0] * 4, errors
    md = MetadataStore(postgres_url)
    records = sorted(md.runs.list_runs("ForeachFlow"), key=lambda r: r.created_at)
    assert [r.run_id for r in records] == [1, 2, 3, 4]
    assert all(r.status == "succeeded" for r in records)
    for r in records:
        events = md.events.read(0, flow="ForeachFlow", run_id=r.run_id)
        assert events[0].kind == "run.started" and events[-1].kind == "run.succeeded"
    every = md.events.read(0, limit=None)
    assert [e.id for e in every] == sorted({e.id for e in every})
    md.close()


def test_a_postgres_url_without_the_driver_names_the_extra(keel_home):
    blocker = keel_home.parent / "no_psycopg"
    blocker.mkdir()
    (blocker / "psycopg.py").write_text("raise ImportError('psycopg is not installed (test)')\n")
    env = {"KEEL_METADATA_URL": "postgresql://keel:secret@127.0.0.1:1/keel", "PYTHONPATH": str(blocker)}
    proc = run_cli("runs", env=env)
    assert proc.returncode == 1
    assert proc.stderr.strip() == (
        "keel: KEEL_METADATA_URL is a PostgreSQL URL (postgresql://keel:***@127.0.0.1:1/keel) but the PostgreSQL "
        "driver is not installed. Install it with: pip install 'keel[postgres]'")
