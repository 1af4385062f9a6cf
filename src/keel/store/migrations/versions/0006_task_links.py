"""Task links: addresses a task published while it ran, such as its Spark UI (keel.store.links).

Revision ID: 0006_task_links
Revises: 0005_alerts
"""

import sqlalchemy as sa
from alembic import op

revision = "0006_task_links"
down_revision = "0005_alerts"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "task_links",
        sa.Column("flow", sa.String(255), primary_key=True),
        sa.Column("run_id", sa.Integer, primary_key=True, autoincrement=False),
        sa.Column("task_id", sa.Integer, primary_key=True, autoincrement=False),
        sa.Column("name", sa.String(64), primary_key=True),
        sa.Column("url", sa.String(2048), nullable=False),
        sa.Column("created_at", sa.Float, nullable=False),
    )


def downgrade() -> None:
    op.drop_table("task_links")
