"""SQL for both databases: running a statement, upserts, compiled-once statements for many rows, and small reads.

Statements are SQLAlchemy Core over store.tables, or portable SQL text with :named parameters: one text serves a
SQLite file and a PostgreSQL server alike.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, TypeAlias

from sqlalchemy import Connection, Table, func, select, text
from sqlalchemy.dialects import postgresql
from sqlalchemy.dialects import sqlite as sqlite_dialect
from sqlalchemy.sql import ClauseElement, Executable
from sqlalchemy.sql.compiler import SQLCompiler

from dash_app.store import tables as t
from dash_app.store.tables import PRUNED_ROWS_COMPLETE_AFTER

Params: TypeAlias = Mapping[str, Any]


def insert_for(dialect: str, table: Table) -> Any:
    """Return an INSERT into `table` that can take ON CONFLICT: SQLite's or PostgreSQL's, which share that API."""
    return (postgresql if dialect == "postgresql" else sqlite_dialect).insert(table)


def upsert(dialect: str, table: Table, keys: Sequence[str], replace: Sequence[str] | None = None) -> Any:
    """Return an INSERT into `table` that, for a row whose `keys` exist, sets the `replace` columns (default: all)."""
    stmt = insert_for(dialect, table)
    columns = [c.name for c in table.columns if c.name not in keys and c.name != "rowid"] if replace is None else replace
    return stmt.on_conflict_do_update(index_elements=list(keys), set_={name: stmt.excluded[name] for name in columns})


class Prepared:
    """A statement compiled once for one database, executed with many rows of plain tuples.

    A batch holds thousands of rows: SQLAlchemy's processing of each row's parameters would cost more than the
    database's own work, so the statement is compiled here once (positional parameters, `columns` in order) and the
    rows go to the driver's executemany as they are.
    """

    def __init__(self, statement: ClauseElement, dialect: Any, columns: Sequence[str]) -> None:
        compiled = statement.compile(dialect=dialect, column_keys=list(columns))
        assert isinstance(compiled, SQLCompiler)  # a DML statement's
        order = list(compiled.positiontup or ()) if compiled.positional else None
        if order != list(columns):
            raise ValueError(f"{statement}: compiled with parameters {order}, not {list(columns)}")
        self.sql = str(compiled)

    def run(self, conn: Connection, rows: Sequence[Sequence[Any]]) -> None:
        """Execute the statement once per row, in order (nothing for no rows)."""
        if rows:
            conn.exec_driver_sql(self.sql, list(rows))


# The newest stamp in a database (Store.new_stamp): of the rows, of the prunes' log, and of what the log forgot.
_LAST_STAMPS = select(
    func.coalesce(select(func.max(t.borrows.c.changed)).scalar_subquery(), 0),
    func.coalesce(select(func.max(t.denials.c.changed)).scalar_subquery(), 0),
    func.coalesce(select(func.max(t.pruned_rows.c.stamp)).scalar_subquery(), 0),
    func.coalesce(select(t.history_meta.c.value).where(t.history_meta.c.key == PRUNED_ROWS_COMPLETE_AFTER).scalar_subquery(), 0),
)


def last_stamp(conn: Connection) -> int:
    """Return the newest write stamp of the database on `conn`."""
    return int(max(conn.execute(_LAST_STAMPS).one()))


def run(conn: Connection, statement: Executable | str, params: Params | Sequence[Any] | None = None) -> Any:
    """Execute `statement` on `conn` and return its result.

    A string is SQL text with :named parameters; with a sequence of parameters it is the driver's own SQL (SQLite's
    ? placeholders), which only a test or a check by hand should need.
    """
    if isinstance(statement, str):
        if params is not None and not isinstance(params, Mapping):
            return conn.exec_driver_sql(statement, tuple(params))
        return conn.execute(text(statement), params or {})
    return conn.execute(statement, params or {})


def tuples(conn: Connection, statement: Executable | str, params: Params | None = None) -> list[tuple[Any, ...]]:
    """Return all rows of `statement` on `conn` as plain tuples, straight from the driver's cursor.

    For long reads: the columns read this way (numbers, text) need none of SQLAlchemy's per-row processing, which
    would double the time of a month of sessions.
    """
    rows: list[tuple[Any, ...]] = run(conn, statement, params).cursor.fetchall()
    return rows


def read_position(conn: Connection, log_name: str) -> str | None:
    """Return the id of the last entry of the shared log `log_name` stored in the database on `conn`, or None."""
    return conn.execute(select(t.log_positions.c.entry_id).where(t.log_positions.c.log == log_name)).scalar()
