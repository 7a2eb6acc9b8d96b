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
from sqlalchemy.schema import CreateColumn, CreateIndex, SchemaItem
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


@compiles(CreateIndex, "sqlite")
def _sqlite_index(element: CreateIndex, compiler: DDLCompiler, **kw: Any) -> str:
    """Leave a trailing `rowid` out of an index in SQLite, which ends every index with the rowid itself and refuses it named."""
    sql: str = compiler.visit_create_index(element, **kw)
    columns = list(element.element.columns)
    if columns and columns[-1].info.get(IMPLICIT_IN_SQLITE):
        if not sql.endswith(", rowid)"):
            raise ValueError(f"unexpected DDL for an index ending with rowid: {sql}")
        sql = sql[: -len(", rowid)")] + ")"
    return sql


@compiles(CreateColumn, "sqlite")
def _sqlite_column(element: CreateColumn, compiler: DDLCompiler, **kw: Any) -> str | None:
    """Leave the `rowid` column out of SQLite's CREATE TABLE (SQLAlchemy skips a column compiled to None)."""
    if element.element.info.get(IMPLICIT_IN_SQLITE):
        return None
    return compiler.visit_create_column(element, **kw)


def row_tables() -> list[Table]:
    """Return the tables whose rows have a `rowid` column of their own outside SQLite."""
    return [t for t in metadata.sorted_tables if "rowid" in t.c and t.c.rowid.info.get(IMPLICIT_IN_SQLITE)]


# The column types a table's spec names.
_TYPES: dict[str, Any] = {"text": Text, "int": Integer, "big": Big, "seconds": Seconds, "money": Money}


def _column(entry: str) -> Column[Any]:
    """Return the column of one spec entry: "name type", then `key` (in the primary key), `required` (NOT NULL), `=default`."""
    name, kind, *flags = entry.split()
    default = next((flag[1:] for flag in flags if flag.startswith("=")), None)
    return Column(
        name,
        _TYPES[kind],
        primary_key="key" in flags,
        nullable=not {"key", "required"} & set(flags),
        # A number is the default as SQL; anything else a string.
        server_default=text(default) if default is not None and default.isdigit() else default,
    )


def _table(name: str, columns: str, *items: SchemaItem, **options: Any) -> Table:
    """Return the table `name` with the comma-separated `columns` (see _column) in order, then `items` and `options`."""
    return Table(name, metadata, *(_column(entry) for entry in columns.split(",")), *items, **options)


tools = _table(
    "tools", "tool text key, total int, commit_qty int, max_overage int, commit_price money, overage_price_per_license money"
)

# One row per checkout session, open or returned; `changed` is the stamp of the write that last changed it.
borrows = _table(
    "borrows",
    "id text key, tool text required, user text required, borrowed_at seconds required, is_overage int required, "
    f"returned_at seconds, source text required ={SOURCE_POOL}, host text, version text, changed big required =0",
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
    # The rows a write stamped, in rowid order: a copy's reads of what changed, and its check of one write's newest rows.
    Index("borrows_changed", "changed", "rowid"),
)

charges = _table("charges", "tool text key, overage_borrows int required")

# The raw events of the last --retention hours, as the buffer holds them (restore on start, export).
events = _table(
    "events",
    "ts seconds required, kind text required, tool text, user text, borrow_id text, is_overage int, reason text, host text, "
    "version text",
    _rowid(),
    Index("events_kind_ts", "kind", "ts"),
    Index("events_ts", "ts"),
)


def _stats(name: str, period: str) -> Table:
    """Return a table of per-tool aggregates, one row per `period` (minute or hour) as an integer."""
    # peak, avg_in_use, level_end: licenses in use during the period (the most, the time-weighted mean, and at its
    # end: store.levels); files from before them get them from revision 7.
    return _table(
        name,
        f"tool text key, {period} int key, count int required, overage_count int required, users text required, "
        "returns int required, failures text required, peak int, avg_in_use seconds, level_end int",
        sqlite_with_rowid=False,
    )


minute_stats = _stats("minute_stats", "minute")
hour_stats = _stats("hour_stats", "hour")

denials = _table(
    "denials",
    "ts seconds, tool text, user text, reason text, changed big required =0",
    _rowid(),
    Index("denials_ts", "ts"),
    Index("denials_changed", "changed", "rowid"),
)

# Rows a prune deleted, under its own stamp, so a reader's copy removes them too (analytics.mirror).
pruned_rows = _table(
    "pruned_rows",
    "stamp big required, tbl text required, row big required, at seconds required",
    Index("pruned_rows_stamp", "stamp"),
)

# The one row every database starts with (schema version 2 seeded it): the newest stamp the prunes' log has lost.
PRUNED_ROWS_COMPLETE_AFTER = "pruned_rows_complete_after"
# A random number naming the database (schema version 9): a saved copy of its history is trusted for it alone.
DATABASE_ID = "database_id"

history_meta = _table("history_meta", "key text key, value seconds required")

# One row per firing of an alert (rule + tool, checkout or source), from fired to resolved.
alerts = _table(
    "alerts",
    "episode text key, key text required, rule text required, subject text, tool text, state text required, "
    "since seconds required, fired_at seconds required, resolved_at seconds, value seconds, threshold seconds, "
    "message text required, notified_at seconds",
    _rowid(),
    Index("alerts_state", "state", "fired_at"),
)

alert_deliveries = _table(
    "alert_deliveries",
    "at seconds required, key text required, event text required, channel text required, ok int required, "
    "tries int required, error text",
    Index("alert_deliveries_at", "at"),
)

# With --redis: the id of the last entry of each shared log whose events are in this database.
log_positions = _table("log_positions", "log text key, entry_id text required")

# How far each followed FlexLM debug log was read, the file found again by its first bytes (store.checkpoints).
flexlm_offsets = _table(
    "flexlm_offsets",
    "file_id text key, path text required, source text required, fp_len int required, fingerprint text required, "
    "offset big required, line big required, day int, last_tod int, updated_at seconds required",
)

# Scheduled reports (reports/): when each was first configured (none is sent for a period due before that), and one
# row per report and period, claimed by the process sending it: the key makes it one send, whatever the processes.
report_schedules = _table("report_schedules", "report text key, since seconds required")
report_runs = _table(
    "report_runs",
    "report text key, period_start seconds key, period_end seconds required, due_at seconds required, owner text, "
    "lease_until seconds, delivered text required, tries int required =0, error text, sent_at seconds, "
    "updated_at seconds required",
)
