"""Alembic migrations of the metadata schema, run by :func:`keel.store.versions.ensure_schema`."""
