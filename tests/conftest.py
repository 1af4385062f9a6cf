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
