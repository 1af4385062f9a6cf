"""Where things are kept: artifacts (content-addressed), logs, and the metadata database.

``Store.from_env()`` reads the settings when a run starts (never at import time):
``KEEL_HOME`` (default ``./.keel``), ``KEEL_METADATA_URL`` (``sqlite:///path`` or
``postgresql://...``) and ``KEEL_ARTIFACT_URL`` (a path or ``s3://bucket/prefix``).
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from keel.settings import Settings
    from keel.store.artifacts import ArtifactStore
    from keel.store.logs import LogStore
    from keel.store.metadata import MetadataStore


@dataclass(frozen=True)
class StoreSettings:
    home: Path
    metadata_url: str
    artifact_url: str

    @classmethod
    def from_env(cls) -> "StoreSettings":
        from keel.settings import Settings

        return cls.of(Settings.from_env())

    @classmethod
    def of(cls, settings: "Settings") -> "StoreSettings":
        """The store's part of the run's :class:`keel.settings.Settings`; KEEL_HOME must be a folder."""
        _check_home(settings.home)
        return cls(home=settings.home, metadata_url=settings.metadata_url, artifact_url=settings.artifact_url)


def _check_home(home: Path) -> None:
    """KEEL_HOME is a folder, or can become one: not a file, a device or a path through one."""
    from keel.errors import UsageError

    where = home
    while not where.exists() and where != where.parent:
        where = where.parent
    if not where.is_dir():
        shown = f"the store folder {home} (KEEL_HOME, default ./.keel)"
        what = "is" if where == home else f"would be inside {where}, which is"
        raise UsageError(f"{shown} {what} not a folder; set KEEL_HOME to a folder (it is created if missing), "
                         f"or unset it to use ./.keel")


class Store:
    """The three stores of one KEEL_HOME, opened on first use."""

    def __init__(self, settings: StoreSettings):
        self.settings = settings

    @classmethod
    def from_env(cls, settings: "Settings | None" = None) -> "Store":
        """The store the settings name (read from the environment when not given)."""
        if settings is None:
            return cls(StoreSettings.from_env())
        return cls(StoreSettings.of(settings))

    @cached_property
    def metadata(self) -> "MetadataStore":
        from keel.store.metadata import MetadataStore

        return MetadataStore(self.settings.metadata_url)

    @cached_property
    def artifacts(self) -> "ArtifactStore":
        from keel.store.artifacts import ArtifactStore

        return ArtifactStore.from_url(self.settings.artifact_url)

    @cached_property
    def logs(self) -> "LogStore":
        from keel.store.logs import LogStore

        return LogStore(self.settings.home / "logs")

    @property
    def scratch(self) -> Path:
        """A local folder for files that pass between the scheduler and its tasks."""
        path = self.settings.home / "tmp"
        path.mkdir(parents=True, exist_ok=True)
        return path
