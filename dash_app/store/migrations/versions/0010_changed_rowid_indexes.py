"""Schema version 10: the `changed` indexes of `borrows` and `denials` hold the rowid after the stamp.

The analysis process checks a saved copy of the history against the newest rows of its last write (`changed` equal to
the copy's stamp, by rowid, descending: analytics/mirror.py). SQLite's index on `changed` already ends with the rowid,
so that read is a step to the index's end; a PostgreSQL index on `changed` alone made it read and sort every row of
that write, 0.4 s for a history copied in by `db copy` (one write of a million rows). SQLite files are left as they
are; a PostgreSQL database gets both indexes again with the rowid (a new one already has them: revision 5 makes the
tables as they are now).
"""

import sqlalchemy as sa
from alembic import op

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None


def upgrade() -> None:
    bind = op.get_bind()
    if bind.dialect.name == "sqlite":
        return
    found = sa.inspect(bind)
    for table in ("borrows", "denials"):
        name = f"{table}_changed"
        held = {i["name"]: i["column_names"] for i in found.get_indexes(table)}
        if held.get(name) == ["changed", "rowid"]:
            continue
        if name in held:
            op.drop_index(name, table_name=table)
        op.create_index(name, table, ["changed", "rowid"])


def downgrade() -> None:
    raise NotImplementedError("a database is never downgraded: restore a backup to go back")
