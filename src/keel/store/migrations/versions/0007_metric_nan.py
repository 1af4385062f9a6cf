"""Metrics keep NaN: ``metrics.value`` may be NULL, which is how a NaN point is stored.

SQLite has no NaN (it binds NaN as NULL), so a diverging loss failed the whole batch of points
on a NOT NULL constraint. ``schema.MetricValue`` writes NaN as NULL and reads NULL back as NaN;
±inf are stored as they are.

Revision ID: 0007_metric_nan
Revises: 0006_task_links
"""

import sqlalchemy as sa
from alembic import op

revision = "0007_metric_nan"
down_revision = "0006_task_links"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("metrics") as batch:
        batch.alter_column("value", existing_type=sa.Float, nullable=True)


def downgrade() -> None:
    op.execute("DELETE FROM metrics WHERE value IS NULL")
    with op.batch_alter_table("metrics") as batch:
        batch.alter_column("value", existing_type=sa.Float, nullable=False)
