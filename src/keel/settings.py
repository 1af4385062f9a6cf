"""Keel's settings: every ``KEEL_*`` variable a user sets, read in one place.

``Settings.from_env()`` is called when a run (or a command, or a server) starts, never at
import time, and the frozen result is passed down. Like :mod:`keel.errors` this module is a
leaf: it uses only the standard library, so every layer may import it.

Variables that Keel itself sets for a task's process (``KEEL_FLOW_NAME``, ``KEEL_RUN_ID``,
``KEEL_STEP_NAME``, ``KEEL_TASK_ID``, ``KEEL_RETRY_COUNT``, ``KEEL_METRICS_PATH``,
``KEEL_TAGS_PATH``, ``KEEL_INSTANCE``, ``KEEL_INSTANCES``, ``KEEL_PROJECT``, ``KEEL_JOB``,
``KEEL_PROJECT_RUN``, ``KEEL_SPARK_MASTER``/``_UI``/``_CONF``) are the task's identity, not
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

        home = Path(text("home") or ".keel").expanduser().absolute()
        heartbeat = seconds("heartbeat_seconds", DEFAULT_HEARTBEAT_SECONDS)
        switch = (text("system_metrics") or "1").strip().lower()
        if switch not in ("0", "1", "true", "false", "yes", "no", "on", "off"):
            raise SettingsError(f"KEEL_SYSTEM_METRICS={switch!r}: expected 1 (on, the default) or 0 (off)")
        return cls(
            home=home,
            metadata_url=text("metadata_url") or f"sqlite:///{home / 'metadata.db'}",
            artifact_url=text("artifact_url") or str(home / "artifacts"),
            heartbeat_seconds=heartbeat,
            crash_after_seconds=seconds("crash_after_seconds", MISSED_BEATS * heartbeat),
            user=text("user"),
            snapshot_max_mb=seconds("snapshot_max_mb", DEFAULT_SNAPSHOT_MAX_MB),
            system_metrics=switch in ("1", "true", "yes", "on"),
            system_metrics_every=seconds("system_metrics_every", 1.0),
            ray_address=text("ray_address"),
            kubernetes_image=text("kubernetes_image"),
            serve_token=text("serve_token"),
            ui_token=text("ui_token"),
            queue_url=text("queue_url"),
            queue_visibility_timeout=text("queue_visibility_timeout"),
            queue_max_deliveries=text("queue_max_deliveries"),
        )

    @classmethod
    def variables(cls) -> dict[str, str]:
        """Field name -> variable, for every field (a test checks the two agree)."""
        return {f.name: VARIABLES[f.name] for f in fields(cls)}
