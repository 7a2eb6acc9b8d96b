"""The database's tables as SQLAlchemy Core metadata: the one definition of the schema, for every database kind.

New databases get these tables from the migrations' first revision (store.migrations); a change to them is a new
revision there, never an edit of a released one. Columns keep the order the SQLite files of earlier releases have,
since writers insert whole rows (an Event is a row of `events`, field for field).
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import REAL, BigInteger, Column, Identity, Index, Integer, MetaData, Table, Text, text
from sqlalchemy.dialects.postgresql import DOUBLE_PRECISION
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.schema import CreateColumn
from sqlalchemy.sql.compiler import DDLCompiler
from sqlalchemy.types import TypeEngine

from dash_app.events import SOURCE_POOL

# Times are seconds since the epoch with a fraction: REAL is 8 bytes in SQLite, but 4 in PostgreSQL, where that
# would round them to minutes.
Seconds: TypeEngine[float] = REAL().with_variant(DOUBLE_PRECISION(), "postgresql")
Money = Seconds  # prices: plain doubles everywhere
# Numbers that outgrow 32 bits (byte offsets into logs, write stamps, SQLite rowids): 8 bytes in PostgreSQL too.
Big: TypeEngine[int] = BigInteger().with_variant(Integer(), "sqlite")

metadata = MetaData()

# Readers refer to a row by its `rowid`: the order rows were written in (a session's `seq`), and what the log of
# pruned rows names. SQLite gives every ordinary table one implicitly; other databases get a column of that name,
# numbered by the database, which SQLite's CREATE TABLE leaves out (its own stands in for it).
IMPLICIT_IN_SQLITE = "implicit_in_sqlite"


def _rowid() -> Column[int]:
    return Column("rowid", Big, Identity(), nullable=False, info={IMPLICIT_IN_SQLITE: True})


@compiles(CreateColumn, "sqlite")
def _sqlite_column(element: CreateColumn, compiler: DDLCompiler, **kw: Any) -> str | None:
    """Leave the `rowid` column out of SQLite's CREATE TABLE (SQLAlchemy skips a column compiled to None)."""
    if element.element.info.get(IMPLICIT_IN_SQLITE):
        return None
    return compiler.visit_create_column(element, **kw)


def row_tables() -> list[Table]:
    """Return the tables whose rows have a `rowid` column of their own outside SQLite."""
    return [t for t in metadata.sorted_tables if "rowid" in t.c and t.c.rowid.info.get(IMPLICIT_IN_SQLITE)]


tools = Table(
    "tools",
    metadata,
    Column("tool", Text, primary_key=True),
    Column("total", Integer),
    Column("commit_qty", Integer),
    Column("max_overage", Integer),
    Column("commit_price", Money),
    Column("overage_price_per_license", Money),
)

# One row per checkout session, open or returned; `changed` is the stamp of the write that last changed it.
borrows = Table(
    "borrows",
    metadata,
    Column("id", Text, primary_key=True),
    Column("tool", Text, nullable=False),
    Column("user", Text, nullable=False),
    Column("borrowed_at", Seconds, nullable=False),
    Column("is_overage", Integer, nullable=False),
    Column("returned_at", Seconds),
    Column("source", Text, nullable=False, server_default=SOURCE_POOL),
    Column("host", Text),
    Column("version", Text),
    Column("changed", Big, nullable=False, server_default=text("0")),
    _rowid(),
    Index(
        "borrows_open",
        "returned_at",
        sqlite_where=text("returned_at IS NULL"),
        postgresql_where=text("returned_at IS NULL"),
    ),
    # Sessions overlapping a time range, of all tools or of a few; and pruning by return time.
    Index("borrows_returned", "returned_at", "borrowed_at"),
    Index("borrows_tool", "tool", "returned_at", "borrowed_at"),
    Index("borrows_changed", "changed"),
)

charges = Table(
    "charges",
    metadata,
    Column("tool", Text, primary_key=True),
    Column("overage_borrows", Integer, nullable=False),
)

# The raw events of the last --retention hours, as the buffer holds them (restore on start, export).
events = Table(
    "events",
    metadata,
    Column("ts", Seconds, nullable=False),
    Column("kind", Text, nullable=False),
    Column("tool", Text),
    Column("user", Text),
    Column("borrow_id", Text),
    Column("is_overage", Integer),
    Column("reason", Text),
    Column("host", Text),
    Column("version", Text),
    _rowid(),
    Index("events_kind_ts", "kind", "ts"),
    Index("events_ts", "ts"),
)


def _stats(name: str, period: str) -> Table:
    """Return a table of per-tool aggregates, one row per `period` (minute or hour) as an integer."""
    return Table(
        name,
        metadata,
        Column("tool", Text, primary_key=True),
        Column(period, Integer, primary_key=True),
        Column("count", Integer, nullable=False),
        Column("overage_count", Integer, nullable=False),
        Column("users", Text, nullable=False),
        Column("returns", Integer, nullable=False),
        Column("failures", Text, nullable=False),
        # Licenses in use during the period: the most, the time-weighted mean, and at its end (history.LEVEL_COLUMNS;
        # files from before them get them filled in by history.migrate_in_use_columns, which needs the inventory).
        Column("peak", Integer),
        Column("avg_in_use", Seconds),
        Column("level_end", Integer),
        sqlite_with_rowid=False,
    )


minute_stats = _stats("minute_stats", "minute")
hour_stats = _stats("hour_stats", "hour")

denials = Table(
    "denials",
    metadata,
    Column("ts", Seconds),
    Column("tool", Text),
    Column("user", Text),
    Column("reason", Text),
    Column("changed", Big, nullable=False, server_default=text("0")),
    _rowid(),
    Index("denials_ts", "ts"),
    Index("denials_changed", "changed"),
)

# Rows a prune deleted, under its own stamp, so a reader's copy removes them too (analytics.mirror).
pruned_rows = Table(
    "pruned_rows",
    metadata,
    Column("stamp", Big, nullable=False),
    Column("tbl", Text, nullable=False),
    Column("row", Big, nullable=False),
    Column("at", Seconds, nullable=False),
    Index("pruned_rows_stamp", "stamp"),
)

# The one row every database starts with (schema version 2 seeded it): the newest stamp the prunes' log has lost.
PRUNED_ROWS_COMPLETE_AFTER = "pruned_rows_complete_after"

history_meta = Table(
    "history_meta",
    metadata,
    Column("key", Text, primary_key=True),
    Column("value", Seconds, nullable=False),
)

# One row per firing of an alert (rule + tool, checkout or source), from fired to resolved.
alerts = Table(
    "alerts",
    metadata,
    Column("episode", Text, primary_key=True),
    Column("key", Text, nullable=False),
    Column("rule", Text, nullable=False),
    Column("subject", Text),
    Column("tool", Text),
    Column("state", Text, nullable=False),
    Column("since", Seconds, nullable=False),
    Column("fired_at", Seconds, nullable=False),
    Column("resolved_at", Seconds),
    Column("value", Seconds),
    Column("threshold", Seconds),
    Column("message", Text, nullable=False),
    Column("notified_at", Seconds),
    _rowid(),
    Index("alerts_state", "state", "fired_at"),
)

alert_deliveries = Table(
    "alert_deliveries",
    metadata,
    Column("at", Seconds, nullable=False),
    Column("key", Text, nullable=False),
    Column("event", Text, nullable=False),
    Column("channel", Text, nullable=False),
    Column("ok", Integer, nullable=False),
    Column("tries", Integer, nullable=False),
    Column("error", Text),
    Index("alert_deliveries_at", "at"),
)

# With --redis: the id of the last entry of each shared log whose events are in this database.
log_positions = Table(
    "log_positions",
    metadata,
    Column("log", Text, primary_key=True),
    Column("entry_id", Text, nullable=False),
)

# How far each followed FlexLM debug log was read, the file found again by its first bytes (store.checkpoints).
flexlm_offsets = Table(
    "flexlm_offsets",
    metadata,
    Column("file_id", Text, primary_key=True),
    Column("path", Text, nullable=False),
    Column("source", Text, nullable=False),
    Column("fp_len", Integer, nullable=False),
    Column("fingerprint", Text, nullable=False),
    Column("offset", Big, nullable=False),
    Column("line", Big, nullable=False),
    Column("day", Integer),
    Column("last_tod", Integer),
    Column("updated_at", Seconds, nullable=False),
)
