"""The event log: run and task state changes with an increasing id, read with a cursor.

Revision ID: 0002_events
Revises: 0001_release_0_1
"""

import sqlalchemy as sa
from alembic import op

revision = "0002_events"
down_revision = "0001_release_0_1"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "events",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("ts", sa.Float, nullable=False),
        sa.Column("flow", sa.String(255), nullable=False),
        sa.Column("run_id", sa.Integer, nullable=False),
        sa.Column("kind", sa.String(32), nullable=False),
        sa.Column("step", sa.String(255)),
        sa.Column("task_id", sa.Integer),
        sa.Column("attempt", sa.Integer),
        sa.Column("detail", sa.Text),
    )
    op.create_index("ix_events_run", "events", ["flow", "run_id", "id"])


def downgrade() -> None:
    op.drop_index("ix_events_run", table_name="events")
    op.drop_table("events")
