"""The store: one database, a SQLite file or a PostgreSQL server, behind one writer thread; and reads for everything else.

Statements are SQLAlchemy Core over store.tables, one text for both databases. What differs between them is kept here
and in the modules this one builds on: how a write transaction takes the database's write lock (SQLite's BEGIN
IMMEDIATE, a transaction-level advisory lock on a server: commit_settling), where long reads run (connections of their
own), and, for a file, noticing it deleted or replaced under us (file_recovery).
"""

from __future__ import annotations

import itertools
import logging
import os
import sqlite3
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from sqlalchemy import Connection, Engine, select
from sqlalchemy.sql import Executable

from dash_app.events import Event
from dash_app.store import tables as t

# Names other modules import from here, wherever they live now.
from dash_app.store.batch_writes import (  # noqa: F401
    EVENT_FIELDS,
    UNAGGREGATED_SINCE,
    LogEntries,
    QueueItem,
    Statement,
    entry_key,
    prepared_writes,
    take_new_entries,
    write_rows,
)
from dash_app.store.commit_settling import READ_COUNT, WRITE_LOCK, ServerCommits  # noqa: F401
from dash_app.store.connections import (  # noqa: F401
    DATABASE_DOWN,
    DATABASE_ERRORS,
    SQLITE_BEGIN,
    connect_reader,
    connect_writer,
    file_uri,
    one_line,
    sqlite_engine,
    wrapped,
)
from dash_app.store.file_recovery import FileWatch, write_back
from dash_app.store.migrate import DatabaseError, check_sqlite, is_url, redacted, server_engine, upgrade_server, upgrade_sqlite
from dash_app.store.schema import SchemaTooNew
from dash_app.store.statements import Params, insert_for, last_stamp, read_position, run, tuples, upsert  # noqa: F401
from dash_app.store.writer_thread import QueuedWriter

log = logging.getLogger(__name__)

# Connections to a database server: the writer's, the periodic tasks', and the readers' (page, stream, analytics).
SERVER_POOL_SIZE = 5
SERVER_POOL_OVERFLOW = 10

# Numbers for Store.sessions_version, shared by every store in the process: a value is never given twice, so a
# cache keyed on it cannot mistake one store's data for another's.
_data_versions = itertools.count(1)


def resolved_database(database: str) -> str:
    """Return `database` as every process names it: a file by its absolute path, a server's URL or memory as given."""
    return database if is_url(database) or database in ("", ":memory:") else str(Path(database).expanduser().resolve())


class StoreError(Exception):
    """The database cannot be opened or set up; the message is one line for the user."""


class Store(QueuedWriter):
    """Owns one database (a SQLite file in WAL mode, or a PostgreSQL server); writes go through a queue to one thread."""

    def __init__(self, db: str | os.PathLike[str]) -> None:
        self.path = str(db)  # a SQLite path, or a server's URL
        self.server = is_url(self.path)
        self.dialect = "postgresql" if self.server else "sqlite"
        self.name = redacted(self.path) if self.server else self.path  # for messages: never a password
        if not self.server and self.path != ":memory:":
            parent = Path(self.path).expanduser().resolve().parent
            if not parent.is_dir():
                raise StoreError(f"database {self.path}: folder {parent} does not exist")
        # SQLite: one connection serves the writer thread and readers, and this lock keeps their use apart. A server:
        # the lock only orders this process's writes; readers take connections of their own from the pool.
        super().__init__(threading.RLock())
        self._conn: sqlite3.Connection | None = None  # SQLite's; None until opened, and while a recreation is under way
        self.engine: Engine  # the writer's (and, for SQLite, every short read's)
        self._watch: FileWatch | None = None  # a file's, to notice it being deleted or replaced
        # Connections of their own for long reads of a file (scan, snapshot), pooled; disposed of when the file is
        # recreated or the store closes, so connections to the old file are closed rather than reused.
        self._readers: Engine | None = None
        # Resolved now: read connections opened later must reach the same file whatever the working directory.
        self.reader_path = "" if self.server or self.path == ":memory:" else resolved_database(self.path)
        # Changes (to a number never used before) whenever a committed write touched sessions or denials.
        self.sessions_version = next(_data_versions)
        self.commits = ServerCommits()  # a server's write transactions (unused for a file)
        try:
            self._open()
        except (sqlite3.Error, SchemaTooNew) as exc:
            raise StoreError(f"database {self.path}: {exc}") from None
        except DatabaseError as exc:
            raise StoreError(str(exc)) from None
        self.recreations = 0  # times the file was found deleted or replaced and written again
        self.log_positions: dict[str, str] = {}  # log -> id of its last entry committed here (LogEntries)

    def _open(self) -> None:
        if self.server:
            self._open_server()
        else:
            self._open_file()
        try:
            with self.engine.connect() as conn:
                # The stamp of the last committed write: rows of sessions and denials carry the stamp of the write
                # that last changed them, so readers that keep a copy can ask for what changed since.
                self._stamp = last_stamp(conn)  # stamps only go up, across restarts too
        except BaseException:
            self.engine.dispose()
            raise

    def _open_server(self) -> None:
        upgrade_server(self.path)  # a newer, foreign or unreachable database ends here, in one line
        self.engine = server_engine(self.path, pool_size=SERVER_POOL_SIZE, max_overflow=SERVER_POOL_OVERFLOW)
        self._prepared = prepared_writes(self.engine.dialect)

    def _open_file(self) -> None:
        conn = connect_writer(self.path)
        try:
            check_sqlite(conn)  # a newer file is refused before this code changes anything in it
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("PRAGMA synchronous=NORMAL")
            upgrade_sqlite(conn, f"database {self.path}")  # the tables of a new file, or an older file's revisions
        except BaseException:
            conn.close()
            raise
        self._conn = conn
        self.engine = sqlite_engine(self._connection)
        self._prepared = prepared_writes(self.engine.dialect)
        if self.path != ":memory:":
            self._readers = sqlite_engine(lambda: connect_reader(self.reader_path), pooled=True)
            self._watch = FileWatch(self.path)

    def _connection(self) -> sqlite3.Connection:
        """Return the open SQLite connection, or raise sqlite3.OperationalError when a failed recreation left none."""
        conn = self._conn
        if conn is None:
            raise sqlite3.OperationalError(f"database {self.path} is not open: its recreation has not finished")
        return conn

    def check_writable(self) -> None:
        """Raise StoreError unless a write transaction can start now (another process may hold the database)."""
        if self.server:
            return  # a server orders its writers itself: opening it was the check
        try:
            with self._conn_lock:
                conn = self._connection()
                conn.execute("BEGIN IMMEDIATE")
                conn.execute("ROLLBACK")
        except sqlite3.Error as exc:
            raise StoreError(f"database {self.path}: cannot write ({exc}); is another process using it?") from None

    @contextmanager
    def writing(self) -> Iterator[Connection]:
        """Yield a connection in a write transaction that holds the database's write lock; commit at the end.

        The lock orders every process writing the database: what is read in the block (stamps, log positions) is
        still true at the commit. Any failure rolls the whole block back.
        """
        with self._conn_lock:
            self.commits.attempt = None  # set once this transaction has an id; a failure before that committed nothing
            if not self.server:
                self._connection()  # not during a recreation
            with self.engine.connect() as conn:
                if not self.server:
                    conn.execution_options(**{SQLITE_BEGIN: "BEGIN IMMEDIATE"})
                count = None
                with conn.begin():
                    if self.server:
                        count = self.commits.begin(conn)
                    yield conn
                if count is not None:
                    self.commits.committed(count)

    def others_version(self) -> int:
        """Return a number that moves when another connection (another process) has committed since the last call.

        SQLite counts the other connections' commits to the file itself (PRAGMA data_version). On a server, every
        write transaction adds one to the database's write count under the write lock (writing()); the counts since
        the last look that were not this store's own commits were another's.
        """
        if not self.server:
            return int(self.read("PRAGMA data_version")[0][0])
        return self.commits.others_version(self.read)

    def close(self) -> None:
        """Close the database's connections."""
        self._drop_readers()
        with self._conn_lock:
            self.engine.dispose()
            if self._conn is not None:
                self._conn.close()

    # ----------------------------------------------------- a file gone away

    def _check_file(self) -> None:
        """Notice the database file being deleted or replaced under us, and put this process's copy back."""
        what = self._watch.change() if self._watch is not None else None
        if what is None:
            return
        self.persisted, self.last_error = False, f"database file {what}"
        log.error("database %s was %s while in use; writing it again from this process's copy", self.path, what)
        with self._conn_lock:
            if self._conn is None:
                self._open()  # an earlier try got as far as closing the old connection; its copy is in place
            else:
                write_back(self._conn, self.path, aside=what != "deleted", close=self._close_for_recreation)
                self._open()
        self.persisted, self.last_error = True, None  # everything written so far is in the new file
        self.recreations += 1
        log.warning("database %s recreated; writes go on", self.path)

    def _close_for_recreation(self) -> None:
        # Read connections go first: they hold the old file open too.
        self._drop_readers()
        self.engine.dispose(close=False)
        self._connection().close()
        self._conn = None

    # --------------------------------------------------------------- writes

    def _write_what_can_be(self, batch: list[QueueItem]) -> list[QueueItem]:
        """Write the batch in one transaction and return the items left unwritten (none, normally)."""
        if self.commits.unsettled is not None:
            settled = self._settle(batch)
            if settled:
                return batch[settled:]  # the writer comes back for the rest at once
        try:
            self._write(batch)
            return []
        except DATABASE_DOWN:
            if self.server:
                # The connection failed inside the transaction, maybe while its commit was on the way: whether those
                # items are in the database is asked before they are written again (_settle).
                self.commits.failed(len(batch))
            raise  # the database itself fails (disk full, locked, gone): the same items will go once it is back
        except Exception as exc:
            if len(batch) == 1:
                raise
            # Something in the items failed: write them one by one, so one bad item cannot hold back the rest.
            self._failed(exc)
            left: list[QueueItem] = []
            for item in batch:
                try:
                    self._write([item])
                except Exception as item_exc:  # noqa: BLE001 - kept, in order, for the next try
                    self._failed(item_exc)
                    left.append(item)
            return left

    def _settle(self, batch: list[QueueItem]) -> int:
        """Return how many of the batch's first items an earlier, interrupted transaction did commit (0 if it did not)."""
        committed = batch[: self.commits.settle(self.read)]
        if not committed:
            return 0
        log.warning("database %s: a write whose answer was lost had gone through; it is not written again", self.name)
        for item in committed:
            if isinstance(item, LogEntries):
                position = self.log_position(item.log)
                if position is not None:
                    self.log_positions[item.log] = position
        self.sessions_changed()
        return len(committed)

    def _write(self, batch: list[QueueItem]) -> None:
        # Events are grouped per statement, so a batch costs a few executemany calls, not one call per row.
        events: list[Event] = []
        statements: list[Statement] = []
        logged: list[LogEntries] = []
        for item in batch:
            if isinstance(item, list):
                events.extend(item)
            elif isinstance(item, LogEntries):
                logged.append(item)
            else:
                statements.append(item)
        # The write lock is taken before the log positions are read, so two processes that send the same entries (a
        # leader and the one that took over from it) cannot both write them.
        with self.writing() as conn:
            positions = take_new_entries(conn, self._prepared, logged, events)
            self._write_rows(conn, events, statements)
        self.log_positions.update(positions)
        # Every event kind is a session's start or end or a denial; statements may change a session's details.
        if events or statements:
            self.sessions_changed()

    def _write_rows(self, conn: Connection, events: list[Event], statements: list[Statement]) -> None:
        write_rows(conn, self._prepared, self.new_stamp(conn), events, statements)

    def log_position(self, log_name: str) -> str | None:
        """Return the id of the last entry of the shared log `log_name` whose events are in the database, or None."""
        rows = self.read(select(t.log_positions.c.entry_id).where(t.log_positions.c.log == log_name))
        return rows[0][0] if rows else None

    def new_stamp(self, conn: Connection) -> int:
        """Return the stamp of the write transaction open on `conn` (a writing() block; a failed one skips it).

        Read under the write lock: another process writing the same database (with --redis, whichever holds the
        lease) may have stamped rows since, and stamps must only go up for the copies that ask what changed since one.
        """
        self._stamp = max(self._stamp, last_stamp(conn)) + 1
        return self._stamp

    def sessions_changed(self) -> None:
        """Note that sessions or denials changed (after the commit): sessions_version moves to a new number."""
        self.sessions_version = next(_data_versions)

    # ---------------------------------------------------------------- reads

    def read(self, statement: Executable | str, params: Params | Sequence[Any] | None = None) -> list[Any]:
        """Run a short statement and return its rows; it sees what the writer has committed (see `run` for strings).

        Whatever it changes is committed at once: a test or a check by hand may delete rows or set a PRAGMA with it.
        The app's own writes go through the writer.
        """
        if self.server:
            with self.engine.connect() as conn:
                return self._fetch(conn, statement, params)
        with self._conn_lock:
            self._connection()
            with self.engine.connect() as conn:
                return self._fetch(conn, statement, params)

    @staticmethod
    def _fetch(conn: Connection, statement: Executable | str, params: Params | Sequence[Any] | None) -> list[Any]:
        result = run(conn, statement, params)
        rows = list(result.fetchall()) if result.returns_rows else []
        conn.commit()
        return rows

    def scan(self, statement: Executable | str, params: Params | None = None) -> list[tuple[Any, ...]]:
        """Run a long read and return its rows as plain tuples, on a connection of its own: the writer goes on.

        It sees what the writer has committed, like read(). An in-memory database has one connection only: there it
        is read().
        """
        with self.snapshot() as conn:
            return tuples(conn, statement, params)

    @contextmanager
    def snapshot(self) -> Iterator[Connection]:
        """Yield a connection inside one read transaction: every query on it sees the same committed state.

        A file or a server lends a connection of its own (the writer goes on meanwhile); an in-memory database has
        only the writer's connection, which is held, with the writer waiting, until the block ends.
        """
        if self.server:
            with self.engine.connect() as conn:
                conn.execution_options(isolation_level="REPEATABLE READ", postgresql_readonly=True)
                with conn.begin():
                    yield conn
            return
        own: Connection | None = None
        if self._readers is not None and self._conn is not None:
            try:
                own = self._readers.connect()
            except DATABASE_DOWN:
                if os.path.exists(self.path):
                    raise
                # The file is gone, about to be written back (see _check_file): read the copy we hold.
        if own is None:
            # In memory, or during a recreation: the writer's connection, the writer waiting until the block ends.
            with self._conn_lock:
                self._connection()
                with self.engine.connect() as conn, conn.begin():
                    yield conn
            return
        with own, own.begin():
            yield own

    def _drop_readers(self) -> None:
        readers, self._readers = self._readers, None
        if readers is not None:
            readers.dispose()
