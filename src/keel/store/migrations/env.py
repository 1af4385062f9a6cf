"""Alembic's entry point. Keel runs it programmatically with an open connection in
``config.attributes["connection"]`` (see keel.store.versions); there is no alembic.ini."""

from alembic import context

from keel.store.schema import meta

connection = context.config.attributes["connection"]
context.configure(connection=connection, target_metadata=meta, render_as_batch=True)
with context.begin_transaction():
    context.run_migrations()
