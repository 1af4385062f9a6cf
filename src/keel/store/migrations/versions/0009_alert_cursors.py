"""Alert evaluators keep their place in the event log: ``alert_cursors``.

``keel alerts watch`` and ``keel scheduler`` save the id of the last event they evaluated (in the
transaction of the firing it made, when it made one), so a restart, even after ``kill -9``,
resumes where it stopped: no firing missed, none made twice.

Revision ID: 0009_alert_cursors
Revises: 0008_metric_last
"""

import sqlalchemy as sa
from alembic import op

revision = "0009_alert_cursors"
down_revision = "0008_metric_last"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "alert_cursors",
        sa.Column("name", sa.String(255), primary_key=True),
        sa.Column("event_id", sa.Integer, nullable=False),
        sa.Column("updated_at", sa.Float, nullable=False),
    )


def downgrade() -> None:
    op.drop_table("alert_cursors")
