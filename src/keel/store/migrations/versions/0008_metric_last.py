"""The last value of each metric of each run (``metric_last``), filled from the points kept.

The runs table (``keel runs``, the dashboard) sorts and filters by a metric's last value and
shows the last values of a page of runs; reading them from the points took a max(id) per run
and metric (a sort of 10,000 runs: 10,000 index walks). Every metrics write now also upserts
this table (``keel.store.runs.insert_metrics``).

Revision ID: 0008_metric_last
Revises: 0007_metric_nan
"""

import sqlalchemy as sa
from alembic import op

revision = "0008_metric_last"
down_revision = "0007_metric_nan"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "metric_last",
        sa.Column("flow", sa.String(255), primary_key=True),
        sa.Column("run_id", sa.Integer, primary_key=True, autoincrement=False),
        sa.Column("name", sa.String(255), primary_key=True),
        sa.Column("value", sa.Float, nullable=True),
    )
    op.execute("INSERT INTO metric_last (flow, run_id, name, value) "
               "SELECT m.flow, m.run_id, m.name, m.value FROM metrics m "
               "WHERE m.id IN (SELECT max(id) FROM metrics GROUP BY flow, run_id, name)")


def downgrade() -> None:
    op.drop_table("metric_last")
