"""Keel's settings: every ``KEEL_*`` variable a user sets, read in one place.

``Settings.from_env()`` is called when a run (or a command, or a server) starts, never at
import time, and the frozen result is passed down. Like :mod:`keel.errors` this module is a
leaf: it uses only the standard library, so every layer may import it.

Variables that Keel itself sets for a task's process (``KEEL_FLOW_NAME``, ``KEEL_RUN_ID``,
``KEEL_STEP_NAME``, ``KEEL_TASK_ID``, ``KEEL_RETRY_COUNT``, ``KEEL_METRICS_PATH``,
``KEEL_TAGS_PATH``, ``KEEL_INSTANCE``, ``KEEL_INSTANCES``, ``KEEL_PROJECT``, ``KEEL_JOB``,
``KEEL_PROJECT_RUN``, ``KEEL_SPARK_MASTER``/``_UI``/``_CONF``, ``KEEL_RECORD_READS``,
``KEEL_SERVE_OPTIONS``, ``KEEL_ALERT_*`` of an alert command) are the task's identity, not
settings; ``keel.runtime.current`` reads them. The table of both is in README.md (*Settings*).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, fields
from pathlib import Path

from keel.errors import SettingsError

__all__ = ["Settings", "VARIABLES"]

DEFAULT_HEARTBEAT_SECONDS = 2.0
MISSED_BEATS = 3
DEFAULT_SNAPSHOT_MAX_MB = 5.0
DEFAULT_ALERT_MAX_ATTEMPTS = 8
DEFAULT_PROGRESS_SECONDS = 30.0
DEFAULT_TASKS_PER_PROCESS = 100  # a warm worker (runtime/executors/worker.py) runs this many step tasks
_ON = ("1", "true", "yes", "on")
_OFF = ("0", "false", "no", "off")

VARIABLES: dict[str, str] = {
    "home": "KEEL_HOME",
    "metadata_url": "KEEL_METADATA_URL",
    "artifact_url": "KEEL_ARTIFACT_URL",
    "heartbeat_seconds": "KEEL_HEARTBEAT_SECONDS",
    "crash_after_seconds": "KEEL_CRASH_AFTER_SECONDS",
    "user": "KEEL_USER",
    "snapshot_max_mb": "KEEL_SNAPSHOT_MAX_MB",
    "system_metrics": "KEEL_SYSTEM_METRICS",
    "system_metrics_every": "KEEL_SYSTEM_METRICS_EVERY",
    "ray_address": "KEEL_RAY_ADDRESS",
    "kubernetes_image": "KEEL_KUBERNETES_IMAGE",
    "serve_token": "KEEL_SERVE_TOKEN",
    "ui_token": "KEEL_UI_TOKEN",
    "queue_url": "KEEL_QUEUE_URL",
    "queue_visibility_timeout": "KEEL_QUEUE_VISIBILITY_TIMEOUT",
    "queue_max_deliveries": "KEEL_QUEUE_MAX_DELIVERIES",
    "alerts_file": "KEEL_ALERTS",
    "alert_max_attempts": "KEEL_ALERT_MAX_ATTEMPTS",
    "alert_retry_seconds": "KEEL_ALERT_RETRY_SECONDS",
    "alert_lease_seconds": "KEEL_ALERT_LEASE_SECONDS",
    "smtp_url": "KEEL_SMTP_URL",
    "smtp_from": "KEEL_SMTP_FROM",
    "cache": "KEEL_CACHE",
    "fork_server": "KEEL_FORK_SERVER",
    "tasks_per_process": "KEEL_TASKS_PER_PROCESS",
    "read_only": "KEEL_READ_ONLY",
    "progress_seconds": "KEEL_PROGRESS_SECONDS",
}
"""Each field of :class:`Settings` and the variable it is read from."""


@dataclass(frozen=True)
class Settings:
    """What the ``KEEL_*`` variables say, with defaults filled in.

        settings = Settings.from_env()          # when a run starts
        Store(settings.store)                   # and passed down
    """

    home: Path
    metadata_url: str
    artifact_url: str
    heartbeat_seconds: float = DEFAULT_HEARTBEAT_SECONDS
    crash_after_seconds: float = MISSED_BEATS * DEFAULT_HEARTBEAT_SECONDS
    user: str | None = None
    snapshot_max_mb: float = DEFAULT_SNAPSHOT_MAX_MB
    system_metrics: bool = True
    system_metrics_every: float = 1.0
    ray_address: str | None = None
    kubernetes_image: str | None = None
    serve_token: str | None = None
    ui_token: str | None = None
    queue_url: str | None = None
    queue_visibility_timeout: str | None = None
    queue_max_deliveries: str | None = None
    alerts_file: str | None = None
    alert_max_attempts: int = DEFAULT_ALERT_MAX_ATTEMPTS
    alert_retry_seconds: float = 1.0
    alert_lease_seconds: float = 30.0  # a claimed delivery's sender has this long before another may take it
    smtp_url: str | None = None
    smtp_from: str | None = None
    cache: bool = True
    fork_server: str = "auto"  # "auto": from a run's 8th step task; "on": with the run; "off": never
    tasks_per_process: int = DEFAULT_TASKS_PER_PROCESS  # step tasks a warm worker runs before a fresh one replaces it
    read_only: bool = False
    progress_seconds: float = DEFAULT_PROGRESS_SECONDS

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Settings:
        """Read the settings from ``environ`` (default ``os.environ``). A value that cannot be
        read raises :class:`SettingsError` naming the variable and what it expects."""
        env = os.environ if environ is None else environ

        def text(field: str) -> str | None:
            return env.get(VARIABLES[field]) or None

        def seconds(field: str, default: float) -> float:
            raw = text(field)
            if raw is None:
                return default
            try:
                value = float(raw)
            except ValueError:
                value = -1.0
            if not value > 0:
                raise SettingsError(f"{VARIABLES[field]}={raw!r}: expected a positive number; "
                                    f"unset it to use the default ({default:g})")
            return value

        def switch(field: str, default: bool) -> bool:
            raw = text(field)
            if raw is None:
                return default
            value = raw.strip().lower()
            if value not in _ON + _OFF and value != "":
                on, off = ("1 (on, the default)", "0 (off)") if default else ("1 (on)", "0 (off, the default)")
                raise SettingsError(f"{VARIABLES[field]}={raw!r}: expected {on} or {off}")
            return value in _ON

        def fork_mode() -> str:
            raw = text("fork_server")
            value = (raw or "").strip().lower() or "auto"
            if value == "auto":
                return value
            if value in _ON + _OFF:
                return "on" if value in _ON else "off"
            raise SettingsError(f"KEEL_FORK_SERVER={raw!r}: expected auto (the default: started with a run's "
                                f"8th step task), 1 (started with the run) or 0 (never)")

        def count(field: str, default: int) -> int:
            raw = text(field)
            if raw is None:
                return default
            try:
                value = int(raw)
            except ValueError:
                value = 0
            if value < 1:
                raise SettingsError(f"{VARIABLES[field]}={raw!r}: expected a whole number of at least 1; "
                                    f"unset it to use the default ({default})")
            return value

        home = Path(text("home") or ".keel").expanduser().absolute()
        heartbeat = seconds("heartbeat_seconds", DEFAULT_HEARTBEAT_SECONDS)
        return cls(
            home=home,
            metadata_url=text("metadata_url") or f"sqlite:///{home / 'metadata.db'}",
            artifact_url=text("artifact_url") or str(home / "artifacts"),
            heartbeat_seconds=heartbeat,
            crash_after_seconds=seconds("crash_after_seconds", MISSED_BEATS * heartbeat),
            user=text("user"),
            snapshot_max_mb=seconds("snapshot_max_mb", DEFAULT_SNAPSHOT_MAX_MB),
            system_metrics=switch("system_metrics", True),
            system_metrics_every=seconds("system_metrics_every", 1.0),
            ray_address=text("ray_address"),
            kubernetes_image=text("kubernetes_image"),
            serve_token=text("serve_token"),
            ui_token=text("ui_token"),
            queue_url=text("queue_url"),
            queue_visibility_timeout=text("queue_visibility_timeout"),
            queue_max_deliveries=text("queue_max_deliveries"),
            alerts_file=text("alerts_file"),
            alert_max_attempts=count("alert_max_attempts", DEFAULT_ALERT_MAX_ATTEMPTS),
            alert_retry_seconds=seconds("alert_retry_seconds", 1.0),
            alert_lease_seconds=seconds("alert_lease_seconds", 30.0),
            smtp_url=text("smtp_url"),
            smtp_from=text("smtp_from"),
            cache=switch("cache", True),
            fork_server=fork_mode(),
            tasks_per_process=count("tasks_per_process", DEFAULT_TASKS_PER_PROCESS),
            read_only=switch("read_only", False),
            progress_seconds=seconds("progress_seconds", DEFAULT_PROGRESS_SECONDS),
        )

    @classmethod
    def variables(cls) -> dict[str, str]:
        """Field name -> variable, for every field (a test checks the two agree)."""
        return {f.name: VARIABLES[f.name] for f in fields(cls)}
