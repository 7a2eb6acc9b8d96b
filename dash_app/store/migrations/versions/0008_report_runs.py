"""Schema version 8: the scheduled reports' tables, `report_schedules` and `report_runs` (reports/storage.py).

A database made at revision 5 or later from these tables already has them (revision 5 creates every table of
store.tables); any other gets them now, empty.
"""

from alembic import op

from dash_app.store import tables

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    bind = op.get_bind()
    for table in (tables.report_schedules, tables.report_runs):
        table.create(bind, checkfirst=True)


def downgrade() -> None:
    raise NotImplementedError("a database is never downgraded: restore a backup to go back")
