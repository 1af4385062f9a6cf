"""A covering index of each run's metric series in step order: ``ix_metrics_series``.

The dashboard's overlay charts bucket every selected run's series of a metric in one pass
(``SqlMetrics.bucketed_runs``): range scans of (flow, run_id, name, step) that read the value
and id from the index, never the table, and a series' first and last step found by two seeks.

Revision ID: 0010_metric_series_index
Revises: 0009_alert_cursors
"""

from alembic import op

revision = "0010_metric_series_index"
down_revision = "0009_alert_cursors"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index("ix_metrics_series", "metrics", ["flow", "run_id", "name", "step", "value", "id"])


def downgrade() -> None:
    op.drop_index("ix_metrics_series", table_name="metrics")
