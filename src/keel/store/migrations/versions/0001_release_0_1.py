"""The schema of Keel 0.1, which had no version table: runs, steps, tasks, attempts,
artifacts, params, tags, metrics, comments and schedule_fires.

A store made by 0.1 is stamped with this revision and migrated from here; a fresh store is
created at the head directly (keel.store.versions), so this script only records the baseline.

Revision ID: 0001_release_0_1
Revises:
"""

revision = "0001_release_0_1"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    pass


def downgrade() -> None:
    pass
