"""Alembic's entry point: run the revisions on the connection (already in its transaction) that migrate.py passes."""

from alembic import context

from dash_app.store.tables import metadata

connection = context.config.attributes["connection"]
# render_as_batch: SQLite alters most columns only by copying the table, which batch operations do for us.
context.configure(connection=connection, target_metadata=metadata, render_as_batch=True)
with context.begin_transaction():
    context.run_migrations()
