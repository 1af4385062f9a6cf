"""keel.cli.startup: the collector paused while a run command starts, frozen when the run starts."""

from __future__ import annotations

import gc
from collections.abc import Iterator

import pytest

from keel.cli import startup


@pytest.fixture
def owned(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.setattr(startup, "_owned", True)
    yield
    gc.unfreeze()
    gc.enable()


def test_a_caller_in_its_own_process_keeps_its_collector() -> None:
    pause = startup.StartupGC()
    assert gc.isenabled()
    pause.started(None)(1)
    assert gc.isenabled() and gc.get_freeze_count() == 0


def test_the_collector_is_paused_until_the_run_starts_then_frozen_and_back_on(owned: None) -> None:
    seen: list[int] = []
    pause = startup.StartupGC()
    assert not gc.isenabled()
    pause.started(seen.append)(7)
    assert gc.isenabled() and gc.get_freeze_count() > 0 and seen == [7]
    pause.close()  # the command ended: what was frozen can be collected at exit (SQLite's WAL folded in)
    assert gc.isenabled() and gc.get_freeze_count() == 0


def test_a_command_that_ends_before_its_run_starts_turns_the_collector_back_on(owned: None) -> None:
    pause = startup.StartupGC()
    pause.close()
    assert gc.isenabled() and gc.get_freeze_count() == 0
