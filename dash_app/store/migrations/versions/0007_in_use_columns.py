"""Schema version 7: every SQLite file's minute_stats and hour_stats have the in-use columns, filled.

Files of releases before those columns (upgraded to revisions 5 and 6 since, or not) get `peak`, `avg_in_use` and
`level_end` now, estimated from each row's counts (aggregation.estimate_missing_levels). The minutes that raw events
still cover whole, from the minute after the oldest event's (pruning may have cut into that one), are then marked
unaggregated: the history keeper's next aggregation rebuilds them from the events exactly, with the series names of
the running inventory, which a migration does not know. Databases made with the columns (every PostgreSQL one, and
every file made at revision 5 or later) only move to revision 7.
"""

import sqlalchemy as sa
from alembic import op

from dash_app.store.aggregation import estimate_missing_levels
from dash_app.store.batch_writes import UNAGGREGATED_SINCE

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None

# The columns, as the release that brought them added them to a file (frozen).
LEVEL_COLUMNS = (("peak", sa.Integer), ("avg_in_use", sa.REAL), ("level_end", sa.Integer))


def upgrade() -> None:
    bind = op.get_bind()
    inspector = sa.inspect(bind)
    added = False
    for table in ("minute_stats", "hour_stats"):
        present = {column["name"] for column in inspector.get_columns(table)}
        for name, kind in LEVEL_COLUMNS:
            if name not in present:
                op.add_column(table, sa.Column(name, kind()))
                added = True
    if not added:
        return
    estimate_missing_levels(bind)
    oldest = bind.execute(sa.text("SELECT MIN(ts) FROM events")).scalar()
    if oldest is not None:
        whole = int(oldest // 60) * 60 + 60
        bind.execute(
            sa.text(
                "INSERT INTO history_meta (key, value) VALUES (:key, :value) "
                "ON CONFLICT (key) DO UPDATE SET value = CASE WHEN excluded.value < value THEN excluded.value ELSE value END"
            ),
            {"key": UNAGGREGATED_SINCE, "value": whole},
        )


def downgrade() -> None:
    raise NotImplementedError("a database is never downgraded: restore a backup to go back")
