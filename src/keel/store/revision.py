"""The schema revisions, apart from the tables so that a reader can check a store's revision
without importing SQLAlchemy (``keel.store.lookup``). ``keel.store.schema`` re-exports them."""

# The Alembic revision this code writes; a store stamped with another one is migrated
# (older) or refused (newer). tests/store/test_migrations.py pins it to the scripts' head.
SCHEMA_HEAD = "0011_metric_blocks"
# The revision of the schema that Keel 0.1 created without any version table.
SCHEMA_RELEASE_0_1 = "0001_release_0_1"
