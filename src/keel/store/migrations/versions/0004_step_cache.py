"""The step cache: reusable entries, every cached task's key parts, claims on keys being computed.

Revision ID: 0004_step_cache
Revises: 0003_data_versions
"""

import sqlalchemy as sa
from alembic import op

revision = "0004_step_cache"
down_revision = "0003_data_versions"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "cache_entries",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("key", sa.String(64), nullable=False),
        sa.Column("flow", sa.String(255), nullable=False),
        sa.Column("step", sa.String(255), nullable=False),
        sa.Column("run_id", sa.Integer, nullable=False),
        sa.Column("task_id", sa.Integer, nullable=False),
        sa.Column("created_at", sa.Float, nullable=False),
        sa.Column("artifacts", sa.Text, nullable=False),
        sa.Column("num_splits", sa.Integer),
        sa.Column("reads", sa.Text, nullable=False),
    )
    op.create_index("ix_cache_entries_key", "cache_entries", ["key"])
    op.create_table(
        "cache_task_keys",
        sa.Column("flow", sa.String(255), primary_key=True),
        sa.Column("run_id", sa.Integer, primary_key=True, autoincrement=False),
        sa.Column("task_id", sa.Integer, primary_key=True, autoincrement=False),
        sa.Column("step", sa.String(255), nullable=False),
        sa.Column("key", sa.String(64), nullable=False),
        sa.Column("parts", sa.Text, nullable=False),
        sa.Column("hit", sa.Boolean, nullable=False),
        sa.Column("note", sa.Text),
        sa.Column("created_at", sa.Float, nullable=False),
    )
    op.create_index("ix_cache_task_keys_step", "cache_task_keys", ["flow", "step"])
    op.create_table(
        "cache_claims",
        sa.Column("key", sa.String(64), primary_key=True),
        sa.Column("flow", sa.String(255), nullable=False),
        sa.Column("run_id", sa.Integer, nullable=False),
        sa.Column("claimed_at", sa.Float, nullable=False),
    )


def downgrade() -> None:
    op.drop_table("cache_claims")
    op.drop_index("ix_cache_task_keys_step", table_name="cache_task_keys")
    op.drop_table("cache_task_keys")
    op.drop_index("ix_cache_entries_key", table_name="cache_entries")
    op.drop_table("cache_entries")
