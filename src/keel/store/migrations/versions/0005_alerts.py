"""Alerts: firings (one per rule, flow, run and key) and their outbox of deliveries (keel.store.alerts).

Revision ID: 0005_alerts
Revises: 0004_step_cache
"""

import sqlalchemy as sa
from alembic import op

revision = "0005_alerts"
down_revision = "0004_step_cache"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "alert_firings",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("rule", sa.String(255), nullable=False),
        sa.Column("flow", sa.String(255), nullable=False),
        sa.Column("run_id", sa.Integer, nullable=False),
        sa.Column("key", sa.String(255), nullable=False),
        sa.Column("fired_at", sa.Float, nullable=False),
        sa.Column("summary", sa.Text, nullable=False),
        sa.Column("fields", sa.Text, nullable=False),
        sa.UniqueConstraint("rule", "flow", "run_id", "key", name="uq_alert_firings_key"),
    )
    op.create_index("ix_alert_firings_rule", "alert_firings", ["rule", "fired_at"])
    op.create_table(
        "alert_deliveries",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("firing_id", sa.Integer, nullable=False),
        sa.Column("action", sa.Integer, nullable=False),
        sa.Column("target", sa.Text, nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("attempts", sa.Integer, nullable=False),
        sa.Column("next_at", sa.Float, nullable=False),
        sa.Column("delivered_at", sa.Float),
        sa.Column("last_error", sa.Text),
        sa.UniqueConstraint("firing_id", "action", name="uq_alert_deliveries_action"),
    )
    op.create_index("ix_alert_deliveries_due", "alert_deliveries", ["status", "next_at"])


def downgrade() -> None:
    op.drop_table("alert_deliveries")
    op.drop_table("alert_firings")
