"""Connections to a SQLite file (the writer's, readers' of their own), and the errors either database raises."""

from __future__ import annotations

import sqlite3
import urllib.parse
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from sqlalchemy import Connection, Engine, create_engine, event
from sqlalchemy import exc as sa_exc
from sqlalchemy.pool import QueuePool, StaticPool

BUSY_TIMEOUT_MS = 5000
# How a SQLite transaction begins, as an execution option of the connection (BEGIN, or BEGIN IMMEDIATE to write).
SQLITE_BEGIN = "sqlite_begin"

# Errors of the database itself (disk full, locked, connection lost, pool exhausted), as opposed to a bad item: the
# writer keeps the same items for the next try.
DATABASE_DOWN: tuple[type[Exception], ...] = (
    sqlite3.OperationalError,
    sa_exc.OperationalError,
    sa_exc.InterfaceError,
    sa_exc.TimeoutError,
    sa_exc.ResourceClosedError,
)
# Anything a database read or write may raise from either driver.
DATABASE_ERRORS: tuple[type[BaseException], ...] = (sqlite3.Error, sa_exc.SQLAlchemyError)


def one_line(exc: BaseException) -> str:
    """Return `exc` as one line for logs and health: SQLAlchemy's wrapper adds the statement on more lines."""
    if isinstance(exc, sa_exc.DBAPIError) and exc.orig is not None:
        exc = exc.orig
    first = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
    return f"{type(exc).__name__}: {first}"


def file_uri(path: str, mode: str) -> str:
    """Return the SQLite URI of the file at `path` opened in `mode` ("ro", "rw"): never a new empty file."""
    return "file:" + urllib.parse.quote(str(Path(path).expanduser().resolve())) + f"?mode={mode}"


def connect_writer(path: str) -> sqlite3.Connection:
    """Open the writer's connection to the SQLite database at `path` (autocommit mode), made or not."""
    conn = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
    try:
        # Another process's short write must make ours wait, not fail.
        conn.execute(f"PRAGMA busy_timeout={BUSY_TIMEOUT_MS}")
    except BaseException:
        conn.close()
        raise
    return conn


def connect_reader(path: str) -> sqlite3.Connection:
    """Open a read-only connection to the database file at `path` (which must exist: never a new empty file)."""
    # mode=rw: a missing file (deleted, about to be written back) is an error, never a new empty database; and not
    # ro, since a reader of a WAL database may need to create the -shm file. query_only keeps it a reader.
    conn = sqlite3.connect(file_uri(path, "rw"), uri=True, check_same_thread=False, isolation_level=None)
    try:
        conn.execute(f"PRAGMA busy_timeout={BUSY_TIMEOUT_MS}")
        conn.execute("PRAGMA query_only=1")
    except BaseException:
        conn.close()
        raise
    return conn


def sqlite_engine(creator: Callable[[], sqlite3.Connection], pooled: bool = False) -> Engine:
    """Return an engine over SQLite connections made by `creator` (autocommit mode), one only unless `pooled`.

    A transaction begins with the connection's SQLITE_BEGIN execution option (plain BEGIN by default): SQLAlchemy
    leaves BEGIN to the driver, and ours, in autocommit mode, says nothing.
    """
    if pooled:
        # No limit on how many: a long read must never wait for another, nor fall back to the writer's connection.
        engine = create_engine("sqlite://", creator=creator, poolclass=QueuePool, pool_size=4, max_overflow=-1)
    else:
        engine = create_engine("sqlite://", creator=creator, poolclass=StaticPool)

    @event.listens_for(engine, "begin")
    def _begin(connection: Connection) -> None:
        connection.exec_driver_sql(connection.get_execution_options().get(SQLITE_BEGIN, "BEGIN"))

    return engine


@contextmanager
def wrapped(conn: sqlite3.Connection) -> Iterator[Connection]:
    """Yield a SQLAlchemy connection over the sqlite3 connection `conn` (autocommit mode), which stays open after."""
    engine = sqlite_engine(lambda: conn)
    try:
        with engine.connect() as connection:
            yield connection
    finally:
        engine.dispose(close=False)
