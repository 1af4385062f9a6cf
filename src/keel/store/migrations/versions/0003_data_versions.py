"""Data Engine: one row per committed version of a table (keel.store.data_tables).

Revision ID: 0003_data_versions
Revises: 0002_events
"""

import sqlalchemy as sa
from alembic import op

revision = "0003_data_versions"
down_revision = "0002_events"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "data_versions",
        sa.Column("name", sa.String(255), primary_key=True),
        sa.Column("version", sa.Integer, primary_key=True, autoincrement=False),
        sa.Column("created_at", sa.Float, nullable=False),
        sa.Column("mode", sa.String(16), nullable=False),
        sa.Column("parent", sa.Integer),
        sa.Column("rows", sa.BigInteger, nullable=False),
        sa.Column("bytes", sa.BigInteger, nullable=False),
        sa.Column("schema", sa.Text, nullable=False),
        sa.Column("files", sa.Text, nullable=False),
        sa.Column("lineage", sa.String(1024)),
        sa.Column("user", sa.String(255)),
    )


def downgrade() -> None:
    op.drop_table("data_versions")
