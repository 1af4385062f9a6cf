"""Shared fixtures: a fresh KEEL_HOME per test. Helpers are in keel_testing.py."""

from __future__ import annotations

from pathlib import Path

import pytest


@pytest.fixture
def keel_home(tmp_path, monkeypatch) -> Path:
    """An empty KEEL_HOME, the current directory set to the test's temp folder."""
    home = tmp_path / ".keel"
    monkeypatch.setenv("KEEL_HOME", str(home))
    monkeypatch.delenv("KEEL_METADATA_URL", raising=False)
    monkeypatch.delenv("KEEL_ARTIFACT_URL", raising=False)
    monkeypatch.chdir(tmp_path)
    return home


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Under ``pytest -n N --dist loadgroup`` (make test), a test module runs on one worker, so its
    module- and session-scoped servers (Ray, Spark, PostgreSQL, a browser) start once; a module
    can share a group with others by its own ``xdist_group`` mark."""
    for item in items:
        if item.get_closest_marker("xdist_group") is None:
            item.add_marker(pytest.mark.xdist_group(item.nodeid.split("::", 1)[0]))
