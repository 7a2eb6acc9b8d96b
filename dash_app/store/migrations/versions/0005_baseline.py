"""Schema version 5, the first under Alembic: every table of store.tables.

A new database gets them all, and the one row version 2 seeded. A SQLite file from an earlier release first runs the
migrations it still lacks (store.schema, frozen), in this revision's transaction; then any table it never had
(flexlm_offsets, made when a log was first followed) is created.
"""

import sqlalchemy as sa
from alembic import op

from dash_app.store import schema, tables

revision = "0005"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    bind = op.get_bind()
    if bind.dialect.name == "sqlite":
        raw = bind.connection.driver_connection
        assert raw is not None  # an open connection: Alembic runs in its transaction
        schema.upgrade_legacy(raw, bind.info.get("database", "database"))
    tables.metadata.create_all(bind, checkfirst=True)
    # The row version 2 seeded: no prune has trimmed the prunes' log yet (analytics.mirror reads it).
    meta = tables.history_meta
    seeded = bind.execute(sa.select(meta.c.key).where(meta.c.key == tables.PRUNED_ROWS_COMPLETE_AFTER)).first()
    if seeded is None:
        bind.execute(meta.insert().values(key=tables.PRUNED_ROWS_COMPLETE_AFTER, value=0))


def downgrade() -> None:
    raise NotImplementedError("a database is never downgraded: restore a backup to go back")
