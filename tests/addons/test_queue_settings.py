"""Queue settings: the call, then KEEL_QUEUE_* (set by a project run), then the defaults."""

from __future__ import annotations

import socket

import pytest

from keel.addons.queue import QueueSettings
from keel.errors import StoreError, UsageError


def test_defaults_then_environment_then_the_call(monkeypatch: pytest.MonkeyPatch) -> None:
    for var in ("KEEL_QUEUE_URL", "KEEL_QUEUE_VISIBILITY_TIMEOUT", "KEEL_QUEUE_MAX_DELIVERIES"):
        monkeypatch.delenv(var, raising=False)
    assert QueueSettings.from_env() == QueueSettings(None, 30.0, 5)
    monkeypatch.setenv("KEEL_QUEUE_VISIBILITY_TIMEOUT", "12")
    monkeypatch.setenv("KEEL_QUEUE_MAX_DELIVERIES", "7")
    assert QueueSettings.from_env() == QueueSettings(None, 12.0, 7)
    assert QueueSettings.from_env(max_deliveries=3) == QueueSettings(None, 12.0, 3)


def test_an_unknown_or_bad_setting_says_what_is_expected() -> None:
    with pytest.raises(UsageError, match="queue setting\\(s\\) 'max_size' unknown; the settings are: url, "
                                         "visibility_timeout, max_deliveries"):
        QueueSettings.from_env(max_size=3)
    with pytest.raises(UsageError, match="visibility_timeout must be > 0 and max_deliveries >= 1, got 30.0 and 0"):
        QueueSettings.from_env(max_deliveries=0)


def test_an_unreachable_redis_is_a_store_error_naming_the_url() -> None:
    pytest.importorskip("redis")
    from keel.store.queues_redis import RedisQueueBackend

    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with pytest.raises(StoreError, match=f"queue backend redis://127.0.0.1:{port}/0: cannot reach Redis"):
        RedisQueueBackend(f"redis://127.0.0.1:{port}/0").stats("jobs")


def test_an_unwritable_queue_database_is_a_store_error_naming_the_file(tmp_path) -> None:
    from keel.store.queues import SqliteQueueBackend

    blocker = tmp_path / "not-a-folder"
    blocker.write_text("a file where the folder should be")
    with pytest.raises(StoreError, match=f"cannot open the queue database {blocker}/queues.db"):
        SqliteQueueBackend(blocker / "queues.db")


def test_the_same_name_and_settings_give_the_same_queue(tmp_path, monkeypatch: pytest.MonkeyPatch) -> None:
    from keel import queue

    monkeypatch.setenv("KEEL_HOME", str(tmp_path))
    assert queue("jobs") is queue("jobs")
    assert queue("jobs") is not queue("jobs", max_deliveries=2)
