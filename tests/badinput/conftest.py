"""A store with one finished run, shared by the module's tests (they only read it)."""

from __future__ import annotations

from pathlib import Path

import pytest

from keel_testing import FLOWS, run_in_process


@pytest.fixture(scope="module")
def one_run(tmp_path_factory) -> Path:
    """KEEL_HOME holding LinearFlow/1."""
    home = tmp_path_factory.mktemp("badinput") / ".keel"
    mp = pytest.MonkeyPatch()
    mp.setenv("KEEL_HOME", str(home))
    mp.delenv("KEEL_METADATA_URL", raising=False)
    mp.delenv("KEEL_ARTIFACT_URL", raising=False)
    try:
        assert run_in_process(FLOWS / "linear.py").status == "succeeded"
    finally:
        mp.undo()
    return home
