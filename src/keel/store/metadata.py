"""The metadata store: the domain interfaces of one database behind one object.

``MetadataStore(url)`` opens the database (SQLite WAL or PostgreSQL, schema brought to the
head) and exposes one interface per domain (``keel.store.interfaces``):

    md = Store.from_env().metadata
    md.runs.get_run("Train", 3)             # RunStore: runs, steps, tasks, attempts, artifact refs
    md.metrics.run_metrics("Train", 3)      # MetricStore
    md.annotations.add_tags(...)            # AnnotationStore: tags, comments
    md.events.read(after=cursor)            # EventLog
    md.schedules.list_fires("proj")         # ScheduleStore
    md.query.search_runs(where="...")       # RunQuery: --where / --sort, crashed decided once
    md.data.list_versions("weather")        # DataTables: Data Engine versions
    md.cache.entries(key)                   # CacheStore: the step cache
    md.alerts.firings()                     # AlertStore: alert firings and their outbox
    md.links.list("Train", 3)               # TaskLinkStore: a task's Spark UI, ...

There are no flat methods on ``MetadataStore`` (``md.get_run(...)`` is an AttributeError):
a caller names the domain, so strict mypy checks the call against its interface.
"""

from __future__ import annotations

from functools import cached_property
from typing import TYPE_CHECKING, Any

from keel.store.alerts import SqlAlerts
from keel.store.annotations import SqlAnnotations
from keel.store.data_tables import SqlDataTables
from keel.store.events import SqlEvents
from keel.store.links import SqlTaskLinks
from keel.store.metrics import SqlMetrics
from keel.store.records import RunRecord, TaskRecord  # noqa: F401  (their old home)
from keel.store.runs import SqlRuns
from keel.store.schedules import SqlSchedules
from keel.store.schema import (  # noqa: F401  (the tables' old home)
    SCHEMA_HEAD, artifacts, attempts, comments, events, metrics, params, runs, schedule_fires, steps, tags, tasks,
)
from keel.store.sql import Database

if TYPE_CHECKING:
    from keel.store.cache import SqlCacheStore
    from keel.store.search import SqlRunQuery

# Defaults only: the settings are read when needed from KEEL_HEARTBEAT_SECONDS and
# KEEL_CRASH_AFTER_SECONDS (keel.store.liveness).
HEARTBEAT_SECONDS = 2.0
CRASH_AFTER_SECONDS = 6.0


class MetadataStore:
    """Reads and writes the metadata database at ``url`` (``sqlite:///path`` or ``postgresql://``)."""

    def __init__(self, url: str):
        self.url = url
        self.db = Database(url)
        self.runs = SqlRuns(self.db)
        self.metrics = SqlMetrics(self.db)
        self.annotations = SqlAnnotations(self.db)
        self.events = SqlEvents(self.db)
        self.schedules = SqlSchedules(self.db)
        self.data = SqlDataTables(self.db.engine, self.db.writer)
        self.alerts = SqlAlerts(self.db)
        self.links = SqlTaskLinks(self.db)

    @cached_property
    def query(self) -> SqlRunQuery:
        """Made on first use: a run or a resume never searches, and the query language is ~4 ms to import."""
        from keel.store.search import SqlRunQuery

        return SqlRunQuery(self.db)

    @cached_property
    def cache(self) -> SqlCacheStore:
        """Made on first use: only a run with cached steps asks it."""
        from keel.store.cache import SqlCacheStore

        return SqlCacheStore(self.db.engine, self.db.writer)

    @property
    def engine(self) -> Any:
        """The read engine (kept for callers of 0.1; new code asks an interface)."""
        return self.db.engine

    def close(self) -> None:
        self.db.close()

