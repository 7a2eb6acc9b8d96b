"""The schema versions of SQLite files from before the migrations were Alembic's, and how such files catch up.

Files written before version 5 recorded theirs in `PRAGMA user_version` (0: before versions were recorded, the tables
of BASE_SCHEMA). MIGRATIONS[n] upgrades version n to n + 1; the first Alembic revision (store.migrations)
runs those still due on an older file, in its transaction, then the revisions after it apply to every database.
Frozen: never edit BASE_SCHEMA or a migration here; a schema change is a new Alembic revision.

Every SQLite file also keeps its version in user_version (the head revision's number), so a release from before
Alembic refuses a file that a newer one has changed.
"""

from __future__ import annotations

import logging
import sqlite3
import time
from collections.abc import Callable

# A session's source follows from its borrow id (`flexlm|...` for a FlexLM log's): events.source_of. Re-exported here
# for the store and the migrations.
from dash_app.events import FLEXLM_ID_PREFIX, SOURCE_FLEXLM, SOURCE_POOL, source_of  # noqa: F401

log = logging.getLogger(__name__)


# Version 0: the schema as it was before versions were recorded. Frozen: later changes are migrations.
BASE_SCHEMA = """
CREATE TABLE IF NOT EXISTS tools (
    tool TEXT PRIMARY KEY, total INTEGER, commit_qty INTEGER, max_overage INTEGER,
    commit_price REAL, overage_price_per_license REAL
);
CREATE TABLE IF NOT EXISTS borrows (
    id TEXT PRIMARY KEY, tool TEXT NOT NULL, user TEXT NOT NULL, borrowed_at REAL NOT NULL,
    is_overage INTEGER NOT NULL, returned_at REAL
);
CREATE INDEX IF NOT EXISTS borrows_open ON borrows (returned_at) WHERE returned_at IS NULL;
CREATE TABLE IF NOT EXISTS checkout_details (id TEXT PRIMARY KEY, host TEXT, version TEXT);
CREATE TABLE IF NOT EXISTS charges (tool TEXT PRIMARY KEY, overage_borrows INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS events (
    ts REAL NOT NULL, kind TEXT NOT NULL, tool TEXT, user TEXT, borrow_id TEXT, is_overage INTEGER, reason TEXT
);
CREATE INDEX IF NOT EXISTS events_kind_ts ON events (kind, ts);
CREATE INDEX IF NOT EXISTS events_ts ON events (ts);
CREATE TABLE IF NOT EXISTS minute_stats (
    tool TEXT NOT NULL, minute INTEGER NOT NULL, count INTEGER NOT NULL, overage_count INTEGER NOT NULL,
    users TEXT NOT NULL, returns INTEGER NOT NULL, failures TEXT NOT NULL, PRIMARY KEY (tool, minute)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS hour_stats (
    tool TEXT NOT NULL, hour INTEGER NOT NULL, count INTEGER NOT NULL, overage_count INTEGER NOT NULL,
    users TEXT NOT NULL, returns INTEGER NOT NULL, failures TEXT NOT NULL, PRIMARY KEY (tool, hour)
) WITHOUT ROWID;
"""


def _columns(conn: sqlite3.Connection, table: str) -> set[str]:
    return {row[1] for row in conn.execute(f"PRAGMA table_info({table})")}


def _v0_to_v1(conn: sqlite3.Connection) -> None:
    """Sessions and denials kept for --history-days: borrows gain source, host and version; a denials table."""
    # Each borrows row is one session, open or returned; it now holds everything a session has. Host and version
    # move in from checkout_details (which kept them for open borrows only), so reading sessions needs no join.
    present = _columns(conn, "borrows")
    for column, kind in (("source", f"TEXT NOT NULL DEFAULT '{SOURCE_POOL}'"), ("host", "TEXT"), ("version", "TEXT")):
        if column not in present:
            conn.execute(f"ALTER TABLE borrows ADD COLUMN {column} {kind}")
    # substr, not LIKE: LIKE ignores case and treats '_' and '%' as wildcards.
    conn.execute(
        "UPDATE borrows SET source = ? WHERE substr(id, 1, ?) = ? AND source IS NOT ?",
        (SOURCE_FLEXLM, len(FLEXLM_ID_PREFIX), FLEXLM_ID_PREFIX, SOURCE_FLEXLM),
    )
    if conn.execute("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'checkout_details'").fetchone():
        conn.execute("UPDATE borrows SET host = d.host, version = d.version FROM checkout_details d WHERE d.id = borrows.id")
        (orphans,) = conn.execute(
            "SELECT COUNT(*) FROM checkout_details d WHERE NOT EXISTS (SELECT 1 FROM borrows b WHERE b.id = d.id)"
        ).fetchone()
        if orphans:
            # Details whose borrow was never written: no session to keep them with.
            log.warning("dropping the host and version of %d borrows the database does not hold", orphans)
        conn.execute("DROP TABLE checkout_details")
    # Sessions overlapping [start, end): returned ones by `returned_at > start` (the index also answers
    # `borrowed_at < end` without reading the row), open ones by `returned_at IS NULL`; and pruning by returned_at.
    conn.execute("CREATE INDEX IF NOT EXISTS borrows_returned ON borrows (returned_at, borrowed_at)")
    # The same per tool, for readers that want a few tools of many.
    conn.execute("CREATE INDEX IF NOT EXISTS borrows_tool ON borrows (tool, returned_at, borrowed_at)")
    conn.execute("CREATE TABLE IF NOT EXISTS denials (ts REAL, tool TEXT, user TEXT, reason TEXT)")
    conn.execute("CREATE INDEX IF NOT EXISTS denials_ts ON denials (ts)")
    # Backfill from the failure events still kept. Every denial at or after the oldest of them came from one of them
    # (events are pruned by time alone), so replacing that range makes a second run change nothing.
    (oldest,) = conn.execute("SELECT MIN(ts) FROM events WHERE kind = 'failure'").fetchone()
    if oldest is not None:
        conn.execute("DELETE FROM denials WHERE ts >= ?", (oldest,))
        conn.execute(
            "INSERT INTO denials (ts, tool, user, reason) "
            "SELECT ts, tool, user, reason FROM events WHERE kind = 'failure' ORDER BY rowid"
        )


def _v1_to_v2(conn: sqlite3.Connection) -> None:
    """Sessions and denials carry the write that last changed them, and prunes log what they delete, for copies."""
    # `changed` is the writer's transaction stamp (Store: one number per committed write, increasing), so a
    # reader that holds a copy reads only the rows changed since the stamp it has seen (analytics.mirror). Rows from
    # before this version keep 0: a copy's first read takes every row anyway.
    for table in ("borrows", "denials"):
        if "changed" not in _columns(conn, table):
            conn.execute(f"ALTER TABLE {table} ADD COLUMN changed INTEGER NOT NULL DEFAULT 0")
        conn.execute(f"CREATE INDEX IF NOT EXISTS {table}_changed ON {table} (changed)")
    # Deleted rows leave no stamp behind: a prune logs the rowids it deletes here, under its own stamp, and a copy
    # removes them. The log is trimmed after a day (HistoryKeeper.prune); `history_meta.pruned_rows_complete_after`
    # is the newest stamp trimmed, so a copy older than that reads everything again.
    conn.execute(
        "CREATE TABLE IF NOT EXISTS pruned_rows "
        "(stamp INTEGER NOT NULL, tbl TEXT NOT NULL, row INTEGER NOT NULL, at REAL NOT NULL)"
    )
    conn.execute("CREATE INDEX IF NOT EXISTS pruned_rows_stamp ON pruned_rows (stamp)")
    conn.execute("CREATE TABLE IF NOT EXISTS history_meta (key TEXT PRIMARY KEY, value REAL NOT NULL)")
    conn.execute("INSERT OR IGNORE INTO history_meta VALUES ('pruned_rows_complete_after', 0)")


def _v2_to_v3(conn: sqlite3.Connection) -> None:
    """Events keep the host and version of a borrow, as the stream and the export show them."""
    present = _columns(conn, "events")
    for column in ("host", "version"):
        if column not in present:
            conn.execute(f"ALTER TABLE events ADD COLUMN {column} TEXT")


def _v3_to_v4(conn: sqlite3.Connection) -> None:
    """Alerts keep their state and history, and each notification's delivery, across restarts."""
    # One row per firing of an alert (its key: rule + tool, checkout or source), from fired to resolved.
    conn.execute(
        "CREATE TABLE IF NOT EXISTS alerts (episode TEXT PRIMARY KEY, key TEXT NOT NULL, rule TEXT NOT NULL, "
        "subject TEXT, tool TEXT, state TEXT NOT NULL, since REAL NOT NULL, fired_at REAL NOT NULL, resolved_at REAL, "
        "value REAL, threshold REAL, message TEXT NOT NULL, notified_at REAL)"
    )
    conn.execute("CREATE INDEX IF NOT EXISTS alerts_state ON alerts (state, fired_at)")
    # Every delivery outcome: the channel is the URL with its secrets redacted.
    conn.execute(
        "CREATE TABLE IF NOT EXISTS alert_deliveries (at REAL NOT NULL, key TEXT NOT NULL, event TEXT NOT NULL, "
        "channel TEXT NOT NULL, ok INTEGER NOT NULL, tries INTEGER NOT NULL, error TEXT)"
    )
    conn.execute("CREATE INDEX IF NOT EXISTS alert_deliveries_at ON alert_deliveries (at)")


def _v4_to_v5(conn: sqlite3.Connection) -> None:
    """With --redis, the store remembers how far into the shared event log it has written, in the same transaction."""
    # One row per log (the Redis Stream's key): the id of the last entry whose events are in this database.
    conn.execute("CREATE TABLE IF NOT EXISTS log_positions (log TEXT PRIMARY KEY, entry_id TEXT NOT NULL)")


Migration = Callable[[sqlite3.Connection], None]

# MIGRATIONS[n] takes version n to n + 1.
MIGRATIONS: tuple[Migration, ...] = (_v0_to_v1, _v1_to_v2, _v2_to_v3, _v3_to_v4, _v4_to_v5)
LEGACY_VERSION = len(MIGRATIONS)  # the last version from before Alembic: its first revision is this schema
# The schema version of this code: the head revision's number (revisions are named by their version, "0005", ...).
SCHEMA_VERSION = 10


class SchemaTooNew(Exception):
    """The database was written by a newer version of the app; the message is one line."""


def schema_version(conn: sqlite3.Connection) -> int:
    """Return the file's recorded schema version (0 for files from before versions were recorded)."""
    return int(conn.execute("PRAGMA user_version").fetchone()[0])


def check_version(conn: sqlite3.Connection) -> int:
    """Return the file's version, or raise SchemaTooNew when this code does not know it."""
    version = schema_version(conn)
    if version > SCHEMA_VERSION:
        raise SchemaTooNew(
            f"its schema version {version} is newer than this app's ({SCHEMA_VERSION}); "
            "run the newer app, or point --db at another file"
        )
    return version


def upgrade_legacy(conn: sqlite3.Connection, name: str = "database") -> int:
    """Bring a file from before Alembic to LEGACY_VERSION inside the caller's transaction; return its version.

    A new file (no tables yet) is left alone: the first revision creates its tables from store.tables.
    """
    found = schema_version(conn)
    if found >= LEGACY_VERSION:
        return found
    if conn.execute("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name != 'alembic_version'").fetchone() is None:
        return found
    if found == 0:
        # executescript would commit the caller's transaction: one statement at a time instead.
        for statement in BASE_SCHEMA.split(";"):
            if statement.strip():
                conn.execute(statement)
    for version in range(found, LEGACY_VERSION):
        migration = MIGRATIONS[version]
        began = time.perf_counter()
        migration(conn)
        conn.execute(f"PRAGMA user_version = {version + 1}")
        log.info(
            "%s: schema upgraded from version %d to %d (%s) in %.2f s",
            name,
            version,
            version + 1,
            (migration.__doc__ or migration.__name__).strip().splitlines()[0],
            time.perf_counter() - began,
        )
    return found
