"""`db copy`: move a site's history from a SQLite file to a database server, table for table, in one transaction.

The source is snapshotted into a temporary file (SQLite's online backup: one consistent state, even while a server
writes it) and brought to the head revision there, never in place; the target is brought to the head revision and
must hold no rows. Every row goes over in batches, the counts are
compared before the commit, so a copy is whole or nothing.
"""

from __future__ import annotations

import sqlite3
import tempfile
import time
from contextlib import closing
from pathlib import Path

from sqlalchemy import func, select, text
from sqlalchemy.exc import DBAPIError

from dash_app.store.database import Store, StoreError, file_uri
from dash_app.store.migrate import (
    DatabaseError,
    check_sqlite,
    connect_error,
    redacted,
    server_engine,
    upgrade_server,
)
from dash_app.store.schema import SchemaTooNew
from dash_app.store.tables import DATABASE_ID, PRUNED_ROWS_COMPLETE_AFTER, history_meta, metadata

BATCH_ROWS = 5000


def open_read_only(path: str) -> sqlite3.Connection:
    """Open the SQLite file at `path` to read it only, or raise StoreError naming it."""
    if not Path(path).expanduser().is_file():
        raise StoreError(f"database {path}: no such file")
    try:
        conn = sqlite3.connect(file_uri(path, "ro"), uri=True)
        conn.execute("SELECT 1 FROM sqlite_master").fetchone()
    except sqlite3.Error as exc:
        raise StoreError(f"database {path}: cannot read it ({exc})") from None
    return conn


def copy_history(source: str, target: str) -> dict[str, int]:
    """Copy every table of the SQLite file `source` into the empty database at URL `target`; return rows per table."""
    with tempfile.TemporaryDirectory(prefix="dash-copy-") as scratch:
        # A snapshot first (SQLite's online backup: one consistent state, even while a server writes the file), then
        # upgraded there: the site's file is only read, and stays as the release that wrote it left it.
        snapshot = str(Path(scratch) / "snapshot.db")
        with closing(open_read_only(source)) as conn:
            try:
                check_sqlite(conn)  # a file from a newer release: refused under its own name
                with closing(sqlite3.connect(snapshot)) as copy:
                    conn.backup(copy)
            except SchemaTooNew as exc:
                raise StoreError(f"database {source}: {exc}") from None
            except sqlite3.Error as exc:
                raise StoreError(f"database {source}: cannot copy it ({exc}) to {scratch}") from None
        Store(snapshot).close()  # upgraded: the in-use columns of files from before them included (revision 7)
        with closing(open_read_only(snapshot)) as conn:
            return _copy(conn, target)


def _copy(conn: sqlite3.Connection, target: str) -> dict[str, int]:
    upgrade_server(target)
    engine = server_engine(target)
    copied: dict[str, int] = {}
    try:
        with engine.begin() as connection:
            for table in metadata.sorted_tables:
                held = select(func.count()).select_from(table)
                if table is history_meta:  # a new database's seeded rows are not history
                    held = held.where(history_meta.c.key.not_in((PRUNED_ROWS_COMPLETE_AFTER, DATABASE_ID)))
                if connection.execute(held).scalar_one():
                    raise DatabaseError(
                        f"database {redacted(target)}: table {table.name} has rows already; copy into an empty database"
                    )
            # The source's prunes' log row replaces the target's; the target keeps its own number (revision 9).
            connection.execute(history_meta.delete().where(history_meta.c.key != DATABASE_ID))
            for table in metadata.sorted_tables:
                names = [column.name for column in table.columns]
                quoted = ", ".join(f'"{name}"' for name in names)
                # In the order they were written (rowid), so tables without a key read back as before.
                order = "" if table.name in _WITHOUT_ROWID else " ORDER BY rowid"
                only = f" WHERE key != '{DATABASE_ID}'" if table is history_meta else ""
                cursor = conn.execute(f"SELECT {quoted} FROM {table.name}{only}{order}")
                count = 0
                while rows := cursor.fetchmany(BATCH_ROWS):
                    connection.execute(table.insert(), [dict(zip(names, row)) for row in rows])
                    count += len(rows)
                if "rowid" in table.c and count:
                    # Rows went over with their SQLite rowids (the prunes' log names them): new ones are numbered on.
                    connection.execute(
                        text(f"SELECT setval(pg_get_serial_sequence('{table.name}', 'rowid'), MAX(rowid)) FROM {table.name}")
                    )
                counted = select(func.count()).select_from(table)
                if table is history_meta:
                    counted = counted.where(history_meta.c.key != DATABASE_ID)
                written = connection.execute(counted).scalar_one()
                if written != count:
                    raise DatabaseError(f"database {redacted(target)}: table {table.name} holds {written} rows of {count}")
                copied[table.name] = count
    except DBAPIError as exc:
        raise connect_error(target, exc) from None
    finally:
        engine.dispose()
    return copied


# Tables SQLite keeps by their primary key alone (no rowid to order by).
_WITHOUT_ROWID = frozenset(t.name for t in metadata.sorted_tables if t.dialect_options["sqlite"].get("with_rowid") is False)


def summary(copied: dict[str, int], seconds: float) -> str:
    """Return the line the command prints after a copy."""
    busiest = ", ".join(f"{name} {rows:,}" for name, rows in sorted(copied.items(), key=lambda item: -item[1])[:4] if rows)
    return f"copied {sum(copied.values()):,} rows of {len(copied)} tables in {seconds:.1f} s ({busiest or 'all empty'})"


def timed_copy(source: str, target: str) -> str:
    """Copy `source` to `target` and return the summary line."""
    began = time.perf_counter()
    copied = copy_history(source, target)
    return summary(copied, time.perf_counter() - began)
