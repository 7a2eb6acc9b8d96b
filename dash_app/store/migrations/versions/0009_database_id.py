"""Schema version 9: a random number naming this database (`database_id` in history_meta).

The analysis process saves its copy of the history beside a database file (analytics/mirror_file.py) and trusts it
at the next start only for the database it was read from: a file put in its place, or a new one at the same path,
has another number. `db copy` gives a server's database its own number, never the source's.
"""

import secrets

import sqlalchemy as sa
from alembic import op

from dash_app.store import tables

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None


def upgrade() -> None:
    bind = op.get_bind()
    meta = tables.history_meta
    # 52 bits: the table's floating-point value holds the number exactly, on SQLite and PostgreSQL alike.
    held = bind.execute(sa.select(meta.c.key).where(meta.c.key == tables.DATABASE_ID)).first()
    if held is None:
        bind.execute(meta.insert().values(key=tables.DATABASE_ID, value=float(secrets.randbits(52) + 1)))


def downgrade() -> None:
    raise NotImplementedError("a database is never downgraded: restore a backup to go back")
