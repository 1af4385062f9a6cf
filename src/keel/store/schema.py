"""The metadata schema: every table of the store, in one SQLAlchemy ``MetaData``.

Only ``keel.store`` names these tables. A change to them ships with a migration in
``keel/store/migrations/versions/`` and a new ``SCHEMA_HEAD`` in ``revision.py`` (see docs/ARCHITECTURE.md).
"""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa

from keel.store.revision import SCHEMA_HEAD as SCHEMA_HEAD, SCHEMA_RELEASE_0_1 as SCHEMA_RELEASE_0_1  # set there


meta = sa.MetaData()


class MetricValue(sa.types.TypeDecorator):  # type: ignore[type-arg]
    """A metric's value: a float where NaN is kept as NULL (SQLite has no NaN) and read back as NaN."""

    impl = sa.Float
    cache_ok = True

    def process_bind_param(self, value: Any, dialect: Any) -> Any:
        return None if value is None or value != value else value

    def process_result_value(self, value: Any, dialect: Any) -> Any:
        return float("nan") if value is None else value

runs = sa.Table(
    "runs", meta,
    sa.Column("flow", sa.String(255), primary_key=True),
    sa.Column("run_id", sa.Integer, primary_key=True, autoincrement=False),
    sa.Column("kind", sa.String(16), nullable=False, default="flow"),
    sa.Column("status", sa.String(16), nullable=False),
    sa.Column("created_at", sa.Float, nullable=False),
    sa.Column("finished_at", sa.Float),
    sa.Column("heartbeat_at", sa.Float),
    sa.Column("user", sa.String(255)),
    sa.Column("hostname", sa.String(255)),
    sa.Column("pid", sa.Integer),
    sa.Column("code_hash", sa.String(64)),
    sa.Column("code_key", sa.String(64)),
    sa.Column("environment", sa.Text),
    sa.Column("origin_run_id", sa.Integer),
    sa.Column("error", sa.Text),
)
sa.Index("ix_runs_created", runs.c.created_at)

steps = sa.Table(
    "steps", meta,
    sa.Column("flow", sa.String(255), primary_key=True),
    sa.Column("run_id", sa.Integer, primary_key=True, autoincrement=False),
    sa.Column("step", sa.String(255), primary_key=True),
    sa.Column("position", sa.Integer, nullable=False),
    sa.Column("status", sa.String(16), nullable=False),
    sa.Column("started_at", sa.Float),
    sa.Column("finished_at", sa.Float),
)

tasks = sa.Table(
    "tasks", meta,
    sa.Column("flow", sa.String(255), primary_key=True),
    sa.Column("run_id", sa.Integer, primary_key=True, autoincrement=False),
    sa.Column("task_id", sa.Integer, primary_key=True, autoincrement=False),
    sa.Column("step", sa.String(255), nullable=False),
    sa.Column("status", sa.String(16), nullable=False),
    sa.Column("attempts", sa.Integer, nullable=False, default=0),
    sa.Column("created_at", sa.Float, nullable=False),
    sa.Column("started_at", sa.Float),
    sa.Column("finished_at", sa.Float),
    sa.Column("parents", sa.Text),          # JSON list of task ids
    sa.Column("foreach", sa.Text),          # JSON list of [step, var, index, num_splits]
    sa.Column("origin_run_id", sa.Integer),  # resume: the task was reused from this run...
    sa.Column("origin_task_id", sa.Integer),  # ...and this task
    sa.Column("node", sa.String(255)),
)
sa.Index("ix_tasks_step", tasks.c.flow, tasks.c.run_id, tasks.c.step)

attempts = sa.Table(
    "attempts", meta,
    sa.Column("flow", sa.String(255), primary_key=True),
    sa.Column("run_id", sa.Integer, primary_key=True, autoincrement=False),
    sa.Column("task_id", sa.Integer, primary_key=True, autoincrement=False),
    sa.Column("attempt", sa.Integer, primary_key=True, autoincrement=False),
    sa.Column("status", sa.String(16), nullable=False),
    sa.Column("started_at", sa.Float),
    sa.Column("finished_at", sa.Float),
    sa.Column("exit_code", sa.Integer),
    sa.Column("error_type", sa.String(255)),
    sa.Column("error_message", sa.Text),
    sa.Column("traceback", sa.Text),
    sa.Column("node", sa.String(255)),
)

artifacts = sa.Table(
    "artifacts", meta,
    sa.Column("flow", sa.String(255), primary_key=True),
    sa.Column("run_id", sa.Integer, primary_key=True, autoincrement=False),
    sa.Column("task_id", sa.Integer, primary_key=True, autoincrement=False),
    sa.Column("name", sa.String(255), primary_key=True),
    sa.Column("key", sa.String(64), nullable=False),
    sa.Column("serializer", sa.String(32), nullable=False),
    sa.Column("size", sa.BigInteger, nullable=False),
    sa.Column("own", sa.Boolean, nullable=False, default=True),  # set by this task, not inherited
)

params = sa.Table(
    "params", meta,
    sa.Column("flow", sa.String(255), primary_key=True),
    sa.Column("run_id", sa.Integer, primary_key=True, autoincrement=False),
    sa.Column("name", sa.String(255), primary_key=True),
    sa.Column("value", sa.Text),             # JSON
    sa.Column("num", sa.Float),              # the value when it is a number, for search
)

tags = sa.Table(
    "tags", meta,
    sa.Column("flow", sa.String(255), primary_key=True),
    sa.Column("run_id", sa.Integer, primary_key=True, autoincrement=False),
    sa.Column("tag", sa.String(255), primary_key=True),
    sa.Column("system", sa.Boolean, nullable=False, default=False),
)
sa.Index("ix_tags_tag", tags.c.tag)

metrics = sa.Table(
    "metrics", meta,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("flow", sa.String(255), nullable=False),
    sa.Column("run_id", sa.Integer, nullable=False),
    sa.Column("task_id", sa.Integer, nullable=False),
    sa.Column("name", sa.String(255), nullable=False),
    sa.Column("step", sa.BigInteger),
    sa.Column("value", MetricValue, nullable=True),   # NULL is NaN (schema.MetricValue)
    sa.Column("ts", sa.Float, nullable=False),
)
sa.Index("ix_metrics_run", metrics.c.flow, metrics.c.run_id, metrics.c.name)
# A run's series of one metric in step order, covering: the overlay charts bucket 100 runs x
# 100,000 points by range scans of this index alone (``SqlMetrics.bucketed_runs``), and a
# series' first and last step are two seeks.
sa.Index("ix_metrics_series", metrics.c.flow, metrics.c.run_id, metrics.c.name, metrics.c.step, metrics.c.value,
         metrics.c.id)

# The last value of each metric of each run, kept up to date by every metrics write
# (``runs.insert_metrics``): the runs table sorts, filters and shows last metrics by key
# lookups here instead of a max(id) over the run's points (10,000 runs: 4x faster sorts).
metric_last = sa.Table(
    "metric_last", meta,
    sa.Column("flow", sa.String(255), primary_key=True),
    sa.Column("run_id", sa.Integer, primary_key=True, autoincrement=False),
    sa.Column("name", sa.String(255), primary_key=True),
    sa.Column("value", MetricValue, nullable=True),   # NULL is NaN, as in metrics
)


# Each stepped series summarised by blocks of ``records.METRIC_BLOCK`` steps (block = step //
# METRIC_BLOCK): the number of points, their min and max, and the last one logged (id, step, value).
# Kept by every metrics write in its transaction (``runs.update_metric_blocks``): an overlay
# chart over a wide range reads 64x fewer rows (``SqlMetrics.bucketed_runs``). SQLite keeps the
# rows in key order (WITHOUT ROWID), so a run's blocks are one range of the table itself.
metric_blocks = sa.Table(
    "metric_blocks", meta,
    sa.Column("flow", sa.String(255), primary_key=True),
    sa.Column("run_id", sa.Integer, primary_key=True, autoincrement=False),
    sa.Column("name", sa.String(255), primary_key=True),
    sa.Column("block", sa.BigInteger, primary_key=True, autoincrement=False),
    sa.Column("n", sa.Integer, nullable=False),
    sa.Column("lo", MetricValue, nullable=True),      # NULL: every point of the block is NaN
    sa.Column("hi", MetricValue, nullable=True),
    sa.Column("last_id", sa.Integer, nullable=False),  # metrics.id of the block's last point logged
    sa.Column("last_step", sa.BigInteger, nullable=False),
    sa.Column("last_value", MetricValue, nullable=True),
    sqlite_with_rowid=False,
)

comments = sa.Table(
    "comments", meta,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("flow", sa.String(255), nullable=False),
    sa.Column("run_id", sa.Integer, nullable=False),
    sa.Column("author", sa.String(255), nullable=False),
    sa.Column("created_at", sa.Float, nullable=False),
    sa.Column("text", sa.Text, nullable=False),
)
sa.Index("ix_comments_run", comments.c.flow, comments.c.run_id)

# What `keel scheduler` fired: one row per (project, job, cron time), claimed before the run
# starts, so a restarted scheduler never fires the same time twice.
schedule_fires = sa.Table(
    "schedule_fires", meta,
    sa.Column("project", sa.String(255), primary_key=True),
    sa.Column("job", sa.String(255), primary_key=True),
    sa.Column("fire_time", sa.Float, primary_key=True, autoincrement=False),
    sa.Column("fired_at", sa.Float, nullable=False),
    sa.Column("status", sa.String(16), nullable=False),   # "started" | "skipped"
    sa.Column("run_id", sa.Integer),
    sa.Column("note", sa.Text),
)


# The event log: every run and task state change, in order. ``id`` only grows; a reader keeps
# the last id it saw as its cursor. Written in the transaction of the change it records.
events = sa.Table(
    "events", meta,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("ts", sa.Float, nullable=False),
    sa.Column("flow", sa.String(255), nullable=False),
    sa.Column("run_id", sa.Integer, nullable=False),
    sa.Column("kind", sa.String(32), nullable=False),       # "run.started", "task.failed", ...
    sa.Column("step", sa.String(255)),
    sa.Column("task_id", sa.Integer),
    sa.Column("attempt", sa.Integer),
    sa.Column("detail", sa.Text),                           # JSON, small
)
sa.Index("ix_events_run", events.c.flow, events.c.run_id, events.c.id)

# Data Engine versions (keel.store.data_tables): one row per committed version of a table.
data_versions = sa.Table(
    "data_versions", meta,
    sa.Column("name", sa.String(255), primary_key=True),
    sa.Column("version", sa.Integer, primary_key=True, autoincrement=False),
    sa.Column("created_at", sa.Float, nullable=False),
    sa.Column("mode", sa.String(16), nullable=False),        # "overwrite" | "append"
    sa.Column("parent", sa.Integer),                         # the version an append extends
    sa.Column("rows", sa.BigInteger, nullable=False),
    sa.Column("bytes", sa.BigInteger, nullable=False),
    sa.Column("schema", sa.Text, nullable=False),            # JSON (see keel.data.engine)
    sa.Column("files", sa.Text, nullable=False),             # JSON list of [key, rows, bytes]
    sa.Column("lineage", sa.String(1024)),                   # Flow/run/step/task of the writer
    sa.Column("user", sa.String(255)),
)

# The step cache (keel.store.cache): entries a later task can reuse, every cached task's key
# parts (for `keel cache explain`), and claims on keys being computed.
cache_entries = sa.Table(
    "cache_entries", meta,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("key", sa.String(64), nullable=False),
    sa.Column("flow", sa.String(255), nullable=False),
    sa.Column("step", sa.String(255), nullable=False),
    sa.Column("run_id", sa.Integer, nullable=False),
    sa.Column("task_id", sa.Integer, nullable=False),
    sa.Column("created_at", sa.Float, nullable=False),
    sa.Column("artifacts", sa.Text, nullable=False),   # JSON {name: ref dict}
    sa.Column("num_splits", sa.Integer),
    sa.Column("reads", sa.Text, nullable=False),       # JSON {path: digest}
)
sa.Index("ix_cache_entries_key", cache_entries.c.key)

cache_task_keys = sa.Table(
    "cache_task_keys", meta,
    sa.Column("flow", sa.String(255), primary_key=True),
    sa.Column("run_id", sa.Integer, primary_key=True, autoincrement=False),
    sa.Column("task_id", sa.Integer, primary_key=True, autoincrement=False),
    sa.Column("step", sa.String(255), nullable=False),
    sa.Column("key", sa.String(64), nullable=False),
    sa.Column("parts", sa.Text, nullable=False),       # JSON {part: digest}
    sa.Column("hit", sa.Boolean, nullable=False),
    sa.Column("note", sa.Text),                        # why it missed, or why it was not cached
    sa.Column("created_at", sa.Float, nullable=False),
)
sa.Index("ix_cache_task_keys_step", cache_task_keys.c.flow, cache_task_keys.c.step)

cache_claims = sa.Table(
    "cache_claims", meta,
    sa.Column("key", sa.String(64), primary_key=True),
    sa.Column("flow", sa.String(255), nullable=False),
    sa.Column("run_id", sa.Integer, nullable=False),
    sa.Column("claimed_at", sa.Float, nullable=False),
)

# Alerts (keel.store.alerts): a firing per (rule, flow, run, key), unique, so that a restarted
# evaluator never fires twice; its deliveries are the outbox, one row per action.
alert_firings = sa.Table(
    "alert_firings", meta,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("rule", sa.String(255), nullable=False),
    sa.Column("flow", sa.String(255), nullable=False),
    sa.Column("run_id", sa.Integer, nullable=False),
    sa.Column("key", sa.String(255), nullable=False),
    sa.Column("fired_at", sa.Float, nullable=False),
    sa.Column("summary", sa.Text, nullable=False),
    sa.Column("fields", sa.Text, nullable=False),           # JSON
    sa.UniqueConstraint("rule", "flow", "run_id", "key", name="uq_alert_firings_key"),
)
sa.Index("ix_alert_firings_rule", alert_firings.c.rule, alert_firings.c.fired_at)

alert_deliveries = sa.Table(
    "alert_deliveries", meta,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("firing_id", sa.Integer, nullable=False),
    sa.Column("action", sa.Integer, nullable=False),
    sa.Column("target", sa.Text, nullable=False),           # JSON: the action as written
    sa.Column("status", sa.String(16), nullable=False),     # pending | sending | delivered | failed
    sa.Column("attempts", sa.Integer, nullable=False),
    sa.Column("next_at", sa.Float, nullable=False),         # pending: not before; sending: lease end
    sa.Column("delivered_at", sa.Float),
    sa.Column("last_error", sa.Text),
    sa.UniqueConstraint("firing_id", "action", name="uq_alert_deliveries_action"),
)
sa.Index("ix_alert_deliveries_due", alert_deliveries.c.status, alert_deliveries.c.next_at)

# Where an evaluator of the whole store (``keel alerts watch``, ``keel scheduler``) is in the event
# log: the last event it evaluated, saved with the firings it made, so a restart resumes there.
alert_cursors = sa.Table(
    "alert_cursors", meta,
    sa.Column("name", sa.String(255), primary_key=True),
    sa.Column("event_id", sa.Integer, nullable=False),
    sa.Column("updated_at", sa.Float, nullable=False),
)

# Addresses a task published while it ran (the Spark UI of its cluster, ...): keel.store.links.
task_links = sa.Table(
    "task_links", meta,
    sa.Column("flow", sa.String(255), primary_key=True),
    sa.Column("run_id", sa.Integer, primary_key=True, autoincrement=False),
    sa.Column("task_id", sa.Integer, primary_key=True, autoincrement=False),
    sa.Column("name", sa.String(64), primary_key=True),      # "spark_ui", "spark_app_ui"
    sa.Column("url", sa.String(2048), nullable=False),
    sa.Column("created_at", sa.Float, nullable=False),
)
