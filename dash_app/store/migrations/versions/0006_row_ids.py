"""Schema version 6: outside SQLite, the tables readers address rows of get a `rowid` column the database numbers.

SQLite has one on every ordinary table already, so its files only move to revision 6. A PostgreSQL database from
revision 5 (made by `db copy` or `db upgrade`) gets the column, numbered in the order the rows were written.
"""

import sqlalchemy as sa
from alembic import op

from dash_app.store import tables

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    bind = op.get_bind()
    if bind.dialect.name == "sqlite":
        return
    inspector = sa.inspect(bind)
    for table in tables.row_tables():
        if "rowid" in {column["name"] for column in inspector.get_columns(table.name)}:
            continue  # made by revision 5 from the tables as they are now
        # Existing rows are numbered as the column is added, in their physical order (the order written, for these
        # append-mostly tables); new ones follow.
        op.add_column(table.name, sa.Column("rowid", tables.Big, sa.Identity(), nullable=False))


def downgrade() -> None:
    raise NotImplementedError("a database is never downgraded: restore a backup to go back")
