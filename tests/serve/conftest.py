"""Serving tests: a store made by real runs of train_flow.py, and `keel serve` as a subprocess."""

from __future__ import annotations

from pathlib import Path
from typing import Iterator

import pytest
from serve_testing import Server, train


@pytest.fixture(scope="module")
def store(tmp_path_factory) -> Path:
    """KEEL_HOME with one successful run of Train (run 1)."""
    home = tmp_path_factory.mktemp("serve") / ".keel"
    train(home)
    return home


@pytest.fixture(scope="module")
def server(store) -> Iterator[Server]:
    """One server on run 1 of Train, shared by the tests that do not change the store."""
    srv = Server(store, "Train/1", "--artifact", "model", "--max-body", "64KB")
    try:
        srv.wait_ready()
        yield srv
    finally:
        srv.stop()
