"""The alerts soak, small: 30 randomized runs around the thresholds, the orchestrator and the
watcher killed with SIGKILL at random points; every alert fires exactly once and is delivered.
The 1,000-run version is ``benchmarks/alerts_bench.py --soak 1000``."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))

from alerts_soak import oracle, soak  # noqa: E402


def test_the_oracle_reads_the_thresholds_strictly():
    assert oracle("succeeded", [0.8, 0.7999, 0.8], [1.0]) == set()
    assert oracle("failed", [0.79, 0.7999], [0.99, 1.0001]) == {"failed", "acc-low", "loss-high"}
    assert oracle("crashed", [], []) == {"crashed"}


@pytest.mark.slow
def test_30_randomized_runs_with_kills_fire_every_alert_exactly_once(tmp_path, monkeypatch):
    monkeypatch.setenv("KEEL_HOME", str(tmp_path))
    report = soak(tmp_path, runs=30, seed=1, crash_rate=0.25, kill_every=(0.02, 0.2), timeout=120)
    assert report["runs"] == 30 and report["statuses"].get("Soak:crashed", 0) >= 2, report
    assert report["kills"]["watcher"] >= 2, report
    assert (report["false"], report["missed"], report["duplicates"]) == ([], [], 0), report
    assert report["undelivered"] == [], report
    assert report["duplicate_deliveries"] <= report["kills"]["watcher"], report
