"""Block summaries of every stepped metric series: ``metric_blocks``, filled from the points kept.

The dashboard's overlay chart of 100 runs x 100,000 points read ten million index entries
(``ix_metrics_series``) per draw: 2.6 s of SQLite's time. Each (flow, run, metric, block of 64
steps) now keeps its count, min, max and its last point (id, step, value), written with the points
(``keel.store.runs.update_metric_blocks``), and ``SqlMetrics.bucketed_runs`` buckets a wide
range from them (64x fewer rows).

Revision ID: 0011_metric_blocks
Revises: 0010_metric_series_index
"""

import sqlalchemy as sa
from alembic import op

revision = "0011_metric_blocks"
down_revision = "0010_metric_series_index"
branch_labels = None
depends_on = None

_BLOCK = 64   # keel.store.records.METRIC_BLOCK when this migration was written


def upgrade() -> None:
    op.create_table(
        "metric_blocks",
        sa.Column("flow", sa.String(255), primary_key=True),
        sa.Column("run_id", sa.Integer, primary_key=True, autoincrement=False),
        sa.Column("name", sa.String(255), primary_key=True),
        sa.Column("block", sa.BigInteger, primary_key=True, autoincrement=False),
        sa.Column("n", sa.Integer, nullable=False),
        sa.Column("lo", sa.Float, nullable=True),
        sa.Column("hi", sa.Float, nullable=True),
        sa.Column("last_id", sa.Integer, nullable=False),
        sa.Column("last_step", sa.BigInteger, nullable=False),
        sa.Column("last_value", sa.Float, nullable=True),
        sqlite_with_rowid=False,
    )
    # block = floor(step / 64), also for negative steps (SQL's integer division truncates)
    op.execute(
        "INSERT INTO metric_blocks (flow, run_id, name, block, n, lo, hi, last_id, last_step, last_value) "
        "SELECT g.flow, g.run_id, g.name, g.block, g.n, g.lo, g.hi, g.last_id, p.step, p.value FROM ("
        f"SELECT flow, run_id, name, CASE WHEN step >= 0 THEN step / {_BLOCK} "
        f"ELSE -((-step - 1) / {_BLOCK}) - 1 END AS block, count(*) AS n, min(value) AS lo, max(value) AS hi, "
        "max(id) AS last_id FROM metrics WHERE step IS NOT NULL GROUP BY 1, 2, 3, 4) g "
        "JOIN metrics p ON p.id = g.last_id")


def downgrade() -> None:
    op.drop_table("metric_blocks")
