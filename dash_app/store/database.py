"""The store: one database, a SQLite file or a PostgreSQL server; a batched writer thread, and reads for everything else.

Statements are SQLAlchemy Core over store.tables, one text for both databases. What differs between them is kept in
this module: how a write transaction takes the database's write lock (SQLite's BEGIN IMMEDIATE, a transaction-level
advisory lock on a server), where long reads run (connections of their own), and, for a file, noticing it deleted or
replaced under us.
"""

from __future__ import annotations

import itertools
import logging
import os
import queue
import sqlite3
import threading
import time
import urllib.parse
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from functools import cache
from pathlib import Path
from typing import TYPE_CHECKING, Any, NamedTuple, TypeAlias

from sqlalchemy import Connection, Engine, Table, case, create_engine, event, func, select, text
from sqlalchemy import exc as sa_exc
from sqlalchemy.dialects import postgresql
from sqlalchemy.dialects import sqlite as sqlite_dialect
from sqlalchemy.pool import QueuePool, StaticPool
from sqlalchemy.sql import ClauseElement, Executable
from sqlalchemy.sql.compiler import SQLCompiler

from dash_app.events import BORROW, FAILURE, RETURN, Event
from dash_app.store import tables as t
from dash_app.store.migrate import DatabaseError, check_sqlite, is_url, redacted, server_engine, upgrade_server, upgrade_sqlite
from dash_app.store.schema import SchemaTooNew, source_of
from dash_app.store.tables import PRUNED_ROWS_COMPLETE_AFTER

if TYPE_CHECKING:  # for the annotations only: the store needs nothing of the licenses package at run time
    from dash_app.licenses.inventory import ToolSpec

log = logging.getLogger(__name__)

# What the writer's queue holds: the events of one record call, one statement with its parameters, or entries of the
# shared event log (--redis).
Params: TypeAlias = Mapping[str, Any]
Statement: TypeAlias = tuple[Executable, Params]


class LogEntries(NamedTuple):
    """Entries of a shared event log, in order: each (entry id, its events); written once, whoever sends them."""

    log: str  # the log's name (its Redis key)
    entries: list[tuple[str, list[Event]]]


QueueItem: TypeAlias = list[Event] | Statement | LogEntries


def entry_key(entry_id: str) -> tuple[int, int]:
    """Return a Redis Stream entry id ("1700000000000-3") as a pair that sorts as the stream does."""
    ms, _, seq = entry_id.partition("-")
    return int(ms), int(seq or 0)


# An Event is a row of `events`: its fields are the columns, in order.
EVENT_FIELDS = Event._fields
# The earliest time of the events written and not yet folded into the long history (HistoryKeeper.aggregate). It is
# kept in the database, in the transaction that writes the events, not in the writing process's memory: with --redis
# the lease holder that aggregates may not be the process that wrote them (a leader killed before its next run, or
# ingest-flexlm), and a crash between the write and the aggregation must not lose them from the history.
UNAGGREGATED_SINCE = "unaggregated_since"

FLUSH_SECONDS = 0.2
BATCH_LIMIT = 5000
IDENTITY_CHECK_SECONDS = 1.0  # how often the writer checks that the database file is still the one it opened
BUSY_TIMEOUT_MS = 5000
# Every process writing one database server takes this transaction-level advisory lock first (an arbitrary number of
# ours), as a SQLite writer takes the file's write lock: stamps and log positions are read and moved under it.
WRITE_LOCK = 80_502_018
# Connections to a database server: the writer's, the periodic tasks', and the readers' (page, stream, analytics).
SERVER_POOL_SIZE = 5
SERVER_POOL_OVERFLOW = 10
# How a SQLite transaction begins, as an execution option of the connection (BEGIN, or BEGIN IMMEDIATE to write).
SQLITE_BEGIN = "sqlite_begin"

# Numbers for Store.sessions_version, shared by every store in the process: a value is never given twice, so a
# cache keyed on it cannot mistake one store's data for another's.
_data_versions = itertools.count(1)

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


def insert_for(dialect: str, table: Table) -> Any:
    """Return an INSERT into `table` that can take ON CONFLICT: SQLite's or PostgreSQL's, which share that API."""
    return (postgresql if dialect == "postgresql" else sqlite_dialect).insert(table)


def upsert(dialect: str, table: Table, keys: Sequence[str], replace: Sequence[str] | None = None) -> Any:
    """Return an INSERT into `table` that, for a row whose `keys` exist, sets the `replace` columns (default: all)."""
    stmt = insert_for(dialect, table)
    columns = [c.name for c in table.columns if c.name not in keys and c.name != "rowid"] if replace is None else replace
    return stmt.on_conflict_do_update(index_elements=list(keys), set_={name: stmt.excluded[name] for name in columns})


@cache
def _writes(dialect: str) -> dict[str, Any]:
    """Return the writer's statements in `dialect`, made once."""
    # A borrow and its return may reach the writer in either order (one source's batch can be recorded after another
    # thread returned one of its borrows), so both are upserts that leave the other's columns alone: the row ends the
    # same whichever comes first. Each row is one session, kept --history-days after its return (HistoryKeeper.prune);
    # its source follows from its id (schema.source_of), its host and version from the borrow event.
    borrow = upsert(
        dialect, t.borrows, ["id"], ["tool", "user", "borrowed_at", "is_overage", "source", "changed", "host", "version"]
    )
    returned = upsert(dialect, t.borrows, ["id"], ["returned_at", "changed"])
    charge = insert_for(dialect, t.charges)
    charge = charge.on_conflict_do_update(
        index_elements=["tool"], set_={"overage_borrows": t.charges.c.overage_borrows + charge.excluded.overage_borrows}
    )
    # The earliest unaggregated time: the smaller of the one stored and this batch's.
    mark = insert_for(dialect, t.history_meta)
    stored = t.history_meta.c.value
    mark = mark.on_conflict_do_update(
        index_elements=["key"], set_={"value": case((mark.excluded.value < stored, mark.excluded.value), else_=stored)}
    )
    return {
        "borrow": borrow,
        "returned": returned,
        "charge": charge,
        "event": t.events.insert(),
        "denial": t.denials.insert(),
        "mark": mark,
        "position": upsert(dialect, t.log_positions, ["log"]),
    }


# The columns each writer statement is given, in the table's order (the order SQLAlchemy compiles an INSERT's in).
_COLUMNS = {
    "borrow": ("id", "tool", "user", "borrowed_at", "is_overage", "returned_at", "source", "host", "version", "changed"),
    "returned": ("id", "tool", "user", "borrowed_at", "is_overage", "returned_at", "source", "changed"),
    "charge": ("tool", "overage_borrows"),
    "event": EVENT_FIELDS,  # an Event is a row of `events`: its fields are the columns, in order
    "denial": ("ts", "tool", "user", "reason", "changed"),
    "mark": ("key", "value"),
    "position": ("log", "entry_id"),
}


class Prepared:
    """A writer statement compiled once for one database, executed with many rows of plain tuples.

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


def prepared_writes(dialect: Any) -> dict[str, Prepared]:
    """Return the writer's statements compiled for `dialect` (an engine's), by name."""
    writes = _writes(dialect.name)
    return {name: Prepared(writes[name], dialect, columns) for name, columns in _COLUMNS.items()}


# A server's transaction ids (others_version): this transaction's, and the next one to be given.
# A server: each write transaction counts itself in history_meta (Store.others_version) and notes its transaction id
# (Store._settle: did a commit whose answer was lost go through?).
WRITE_COUNT = "write_count"
_COUNT_WRITE = text(
    f"INSERT INTO history_meta (key, value) VALUES ('{WRITE_COUNT}', 1) "
    "ON CONFLICT (key) DO UPDATE SET value = history_meta.value + 1 RETURNING value"
)
_READ_COUNT = f"SELECT value FROM history_meta WHERE key = '{WRITE_COUNT}'"
_OWN_XID = text("SELECT pg_current_xact_id()::text::bigint")
_XID_STATUS = "SELECT pg_xact_status(CAST(CAST(:xid AS text) AS xid8))"
# How long a server's writer waits for the write lock (another process's transaction) before it retries later.
LOCK_TIMEOUT = "10s"

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


def file_uri(path: str, mode: str) -> str:
    """Return the SQLite URI of the file at `path` opened in `mode` ("ro", "rw"): never a new empty file."""
    return "file:" + urllib.parse.quote(str(Path(path).expanduser().resolve())) + f"?mode={mode}"


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


class StoreError(Exception):
    """The database cannot be opened or set up; the message is one line for the user."""


class Store:
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
        self._conn_lock = threading.RLock()
        self._conn: sqlite3.Connection | None = None  # SQLite's; None until opened, and while a recreation is under way
        self.engine: Engine  # the writer's (and, for SQLite, every short read's)
        # (st_dev, st_ino) of the file opened, to notice it being deleted or replaced
        self._identity: tuple[int, int] | None = None
        self._next_identity_check = 0.0
        # Connections of their own for long reads of a file (scan, snapshot), pooled; disposed of when the file is
        # recreated or the store closes, so connections to the old file are closed rather than reused.
        self._readers: Engine | None = None
        # Resolved now: read connections opened later must reach the same file whatever the working directory.
        self.reader_path = str(Path(self.path).expanduser().resolve()) if not self.server and self.path != ":memory:" else ""
        # Changes (to a number never used before) whenever a committed write touched sessions or denials.
        self.sessions_version = next(_data_versions)
        try:
            self._open()
        except (sqlite3.Error, SchemaTooNew) as exc:
            raise StoreError(f"database {self.path}: {exc}") from None
        except DatabaseError as exc:
            raise StoreError(str(exc)) from None
        self._queue: queue.SimpleQueue[QueueItem] = queue.SimpleQueue()
        self._pending = 0
        self._pending_lock = threading.Condition()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.persisted = True
        self.last_error: str | None = None
        self.recreations = 0  # times the file was found deleted or replaced and written again
        self._tasks: list[list[Any]] = []  # [every_seconds, next_due, fn()] run by the writer thread
        self.log_positions: dict[str, str] = {}  # log -> id of its last entry committed here (LogEntries)
        # A server: the write counts of our own commits not yet looked past (others_version), and the last write
        # transaction's (id, items) while it is unknown whether its commit went through (_settle).
        self._counts_lock = threading.Lock()
        self._own_counts: set[int] = set()
        self._count_seen: int | None = None
        self._others = 0
        self._attempt: int | None = None
        self._unsettled: tuple[int, int] | None = None

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
        conn = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None)
        try:
            # Another process's short write must make ours wait, not fail.
            conn.execute(f"PRAGMA busy_timeout={BUSY_TIMEOUT_MS}")
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
            st = os.stat(self.path)
            self._identity = (st.st_dev, st.st_ino)

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
            self._attempt = None  # set once this transaction has an id; a failure before that committed nothing
            if not self.server:
                self._connection()  # not during a recreation
            with self.engine.connect() as conn:
                if not self.server:
                    conn.execution_options(**{SQLITE_BEGIN: "BEGIN IMMEDIATE"})
                count = None
                with conn.begin():
                    if self.server:
                        # A process that stopped holding the lock, or a server gone quiet: an error to retry, no hang.
                        conn.exec_driver_sql(f"SET LOCAL lock_timeout = '{LOCK_TIMEOUT}'")
                        conn.execute(select(func.pg_advisory_xact_lock(WRITE_LOCK)))
                        count = int(conn.execute(_COUNT_WRITE).scalar_one())
                        self._attempt = conn.execute(_OWN_XID).scalar_one()
                    yield conn
                self._attempt = None  # committed
                if count is not None:
                    with self._counts_lock:
                        self._own_counts.add(count)

    def others_version(self) -> int:
        """Return a number that moves when another connection (another process) has committed since the last call.

        SQLite counts the other connections' commits to the file itself (PRAGMA data_version). On a server, every
        write transaction adds one to the database's write count under the write lock (writing()); the counts since
        the last look that were not this store's own commits were another's.
        """
        if not self.server:
            return int(self.read("PRAGMA data_version")[0][0])
        rows = self.read(_READ_COUNT)
        count = int(rows[0][0]) if rows else 0
        with self._counts_lock:
            previous, self._count_seen = self._count_seen, count
            own = {c for c in self._own_counts if c <= count}
            self._own_counts -= own
        if previous is not None and count - previous > len({c for c in own if c > previous}):
            self._others += 1
        return self._others

    # ------------------------------------------------------------ lifecycle

    def start(self) -> None:
        """Start the writer thread."""
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name="store-writer", daemon=True)
            self._thread.start()

    def stop(self) -> None:
        """Write what is queued, run the periodic tasks once more, then stop the writer and close the database."""
        self.flush(timeout=5)
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._run_due_tasks(force=True)
        self.close()

    def close(self) -> None:
        """Close the database's connections."""
        self._drop_readers()
        with self._conn_lock:
            self.engine.dispose()
            if self._conn is not None:
                self._conn.close()

    # --------------------------------------------------------------- writes

    def submit(self, statement: Executable, params: Params | None = None) -> None:
        """Queue one statement; it is written within FLUSH_SECONDS, in a batch with others."""
        self._put((statement, params or {}))

    def _put(self, item: QueueItem) -> None:
        with self._pending_lock:
            self._pending += 1
        self._queue.put(item)

    def add_periodic(self, fn: Callable[[], object], every_seconds: float) -> None:
        """Run `fn()` in the writer thread every `every_seconds`, after the queued writes."""
        self._tasks.append([every_seconds, time.monotonic() + every_seconds, fn])

    def on_events(self, events: Iterable[Event]) -> None:
        """Queue recorded events, and the pool state they change, as one item (an EventRecorder listener)."""
        self._put(list(events))

    def flush(self, timeout: float = 10) -> bool:
        """Block until every queued statement is written (or `timeout` passes); return True when all are."""
        deadline = time.monotonic() + timeout
        with self._pending_lock:
            while self._pending:
                left = deadline - time.monotonic()
                if left <= 0 or self._thread is None:
                    return False
                self._pending_lock.wait(min(left, 0.05))
        return True

    def _run(self) -> None:
        batch: list[QueueItem] = []
        backoff = FLUSH_SECONDS
        while not (self._stop.is_set() and not batch and self._queue.empty()):
            # Whatever goes wrong, this thread goes on: it holds the only copy of acknowledged events.
            try:
                self._check_file()
                if not batch:
                    self._run_due_tasks()
                    try:
                        batch.append(self._queue.get(timeout=FLUSH_SECONDS))
                    except queue.Empty:
                        continue
                    # Let a burst gather, so a second of traffic costs one transaction.
                    time.sleep(0.02)
                while len(batch) < BATCH_LIMIT:
                    try:
                        batch.append(self._queue.get_nowait())
                    except queue.Empty:
                        break
                left = self._write_what_can_be(batch)
            except Exception as exc:  # noqa: BLE001 - logged, and the batch is kept for the next try
                self._failed(exc)
                left = batch
            written = len(batch) - len(left)
            batch = left
            if written and not batch:
                # Said before flush() can return, so whoever waited for the writes sees them as persisted.
                if not self.persisted:
                    log.warning("database writes work again")
                self.persisted, self.last_error, backoff = True, None, FLUSH_SECONDS
            if written:
                with self._pending_lock:
                    self._pending -= written
                    self._pending_lock.notify_all()
            if not batch and written:
                continue
            if self._stop.is_set():
                # Stopping: no retry loop may outlive the app (it would spin on a closed connection).
                log.error("database writer stopped with %d items unwritten: %s", len(batch), self.last_error)
                break
            self._stop.wait(backoff)
            backoff = min(backoff * 2, 5.0)

    def _check_file(self) -> None:
        """Notice the database file being deleted or replaced under us, and put this process's copy back."""
        if self._identity is None or time.monotonic() < self._next_identity_check:
            return
        self._next_identity_check = time.monotonic() + IDENTITY_CHECK_SECONDS
        found: tuple[int, int] | None
        try:
            st = os.stat(self.path)
            found = (st.st_dev, st.st_ino)
        except FileNotFoundError:
            found = None
        if found == self._identity:
            return
        what = "deleted" if found is None else "replaced by another file"
        self.persisted, self.last_error = False, f"database file {what}"
        log.error("database %s was %s while in use; writing it again from this process's copy", self.path, what)
        self._recreate(aside=found is not None)
        self.persisted, self.last_error = True, None  # everything written so far is in the new file
        self.recreations += 1
        log.warning("database %s recreated; writes go on", self.path)

    def _recreate(self, aside: bool) -> None:
        """Write the open database (whose file is gone or replaced) back to the path, then use that file."""
        path = self.path
        copy = f"{path}.recovering"
        with self._conn_lock:
            if self._conn is None:
                self._open()  # an earlier try got as far as closing the old connection; its copy is in place
                return
            if os.path.exists(copy):
                os.remove(copy)
            # The connection still reads the deleted inode, WAL included: everything written so far is in it.
            target = sqlite3.connect(copy)
            try:
                self._conn.backup(target)
            finally:
                target.close()
            if aside:
                # Someone put another file here: keep it, under a name that says so.
                stamp = time.strftime("%Y%m%dT%H%M%S", time.gmtime())
                for suffix in ("", "-wal", "-shm"):
                    if os.path.exists(path + suffix):
                        os.replace(path + suffix, f"{path}.replaced-{stamp}{suffix}")
            # Closing checkpoints into the old inode and removes its -wal and -shm by name: do it before the new
            # file exists, so no stale WAL is ever applied to the new database. Read connections go first: they
            # hold the old file open too.
            self._drop_readers()
            self.engine.dispose(close=False)
            self._conn.close()
            self._conn = None
            for suffix in ("-wal", "-shm"):
                if os.path.exists(path + suffix):
                    os.remove(path + suffix)
            os.replace(copy, path)
            self._open()

    def _write_what_can_be(self, batch: list[QueueItem]) -> list[QueueItem]:
        """Write the batch in one transaction and return the items left unwritten (none, normally)."""
        if self._unsettled is not None:
            settled = self._settle(batch)
            if settled:
                return batch[settled:]  # the writer comes back for the rest at once
        try:
            self._write(batch)
            return []
        except DATABASE_DOWN:
            if self.server and self._attempt is not None:
                # The connection failed inside the transaction, maybe while its commit was on the way: whether those
                # items are in the database is asked before they are written again (_settle).
                self._unsettled = (self._attempt, len(batch))
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
        """Return how many of the batch's first items an earlier, interrupted transaction did commit (0 if it did not).

        Raises when the server cannot say yet (it is still away, or the transaction is still open there).
        """
        assert self._unsettled is not None
        xid, items = self._unsettled
        status = self.read(_XID_STATUS, {"xid": xid})[0][0]
        if status == "in progress":
            raise sa_exc.OperationalError(_XID_STATUS, {"xid": xid}, RuntimeError("the last write is still open"))
        self._unsettled = None
        if status != "committed":
            return 0
        log.warning("database %s: a write whose answer was lost had gone through; it is not written again", self.name)
        committed = batch[:items]
        for item in committed:
            if isinstance(item, LogEntries):
                position = self.log_position(item.log)
                if position is not None:
                    self.log_positions[item.log] = position
        self.sessions_changed()
        return len(committed)

    def _failed(self, exc: BaseException) -> None:
        message = one_line(exc)
        if self.persisted or message != self.last_error:
            # Log the traceback once per distinct failure, not once per retry.
            log.error("database write failed (%s); will retry, serving from memory meanwhile", message, exc_info=exc)
        self.persisted, self.last_error = False, message

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
            positions = self._take_new_entries(conn, logged, events)
            self._write_rows(conn, events, statements)
        self.log_positions.update(positions)
        # Every event kind is a session's start or end or a denial; statements may change a session's details.
        if events or statements:
            self.sessions_changed()

    def _take_new_entries(self, conn: Connection, logged: list[LogEntries], events: list[Event]) -> dict[str, str]:
        """Add to `events` those of the log entries not yet in the database, and move each log's position past them."""
        positions: dict[str, str] = {}
        for item in logged:
            known = positions.get(item.log) or read_position(conn, item.log)
            after = entry_key(known) if known else (-1, -1)
            for entry_id, entry_events in item.entries:
                if entry_key(entry_id) > after:
                    events.extend(entry_events)
                    after, known = entry_key(entry_id), entry_id
            if known:
                positions[item.log] = known
        self._prepared["position"].run(conn, list(positions.items()))
        return positions

    def log_position(self, log_name: str) -> str | None:
        """Return the id of the last entry of the shared log `log_name` whose events are in the database, or None."""
        rows = self.read(select(t.log_positions.c.entry_id).where(t.log_positions.c.log == log_name))
        return rows[0][0] if rows else None

    def submit_entries(self, log_name: str, entries: list[tuple[str, list[Event]]]) -> None:
        """Queue entries of a shared event log; each is written once, with the log's position, in one transaction."""
        self._put(LogEntries(log_name, entries))

    def _write_rows(self, conn: Connection, events: list[Event], statements: list[Statement]) -> None:
        writes = self._prepared
        stamp = self.new_stamp(conn)
        borrows, returns, denials = [], [], []
        charges: dict[str | None, int] = {}  # by tool, keyed like Event.tool (a borrow's is never None)
        for e in events:
            if e.kind == BORROW:
                source = source_of(e.borrow_id)
                borrows.append((e.borrow_id, e.tool, e.user, e.ts, e.is_overage, None, source, e.host, e.version, stamp))
                if e.is_overage:
                    charges[e.tool] = charges.get(e.tool, 0) + 1
            elif e.kind == RETURN:
                # A return written first keeps its borrow's time as its own until the borrow row arrives.
                returns.append((e.borrow_id, e.tool, e.user, e.ts, 0, e.ts, source_of(e.borrow_id), stamp))
            elif e.kind == FAILURE:
                denials.append((e.ts, e.tool, e.user, e.reason, stamp))
        writes["borrow"].run(conn, borrows)
        writes["returned"].run(conn, returns)
        writes["charge"].run(conn, list(charges.items()))
        writes["event"].run(conn, events)
        if events:
            # Committed with them, or not at all.
            writes["mark"].run(conn, [(UNAGGREGATED_SINCE, min(e.ts for e in events))])
        writes["denial"].run(conn, denials)  # in the same transaction as their events
        for statement, params in statements:
            conn.execute(statement, params)

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

    def run_tasks_now(self, timeout: float = 10) -> None:
        """Write what is queued, then run every periodic task at once (tests and shutdown)."""
        self.flush(timeout)
        self._run_due_tasks(force=True)

    def _run_due_tasks(self, force: bool = False) -> None:
        now = time.monotonic()
        for task in self._tasks:
            every, due, fn = task
            if not force and now < due:
                continue
            task[1] = now + every
            try:
                with self._conn_lock:
                    fn()
            except Exception as exc:  # noqa: BLE001 - a periodic task's failure must not end the writer
                message = one_line(exc)
                if message != self.last_error:  # once per distinct failure, not every second while a server is away
                    log.error("database maintenance %s failed: %s", getattr(fn, "__name__", fn), message, exc_info=exc)
                self.persisted, self.last_error = False, message

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

    def save_tools(self, specs: Mapping[str, ToolSpec]) -> None:
        """Replace the stored inventory with `specs` (at start-up, before the writer runs)."""
        with self.writing() as conn:
            conn.execute(t.tools.delete())
            if specs:
                conn.execute(
                    t.tools.insert(),
                    [
                        {
                            "tool": s.tool,
                            "total": s.total,
                            "commit_qty": s.commit_qty,
                            "max_overage": s.max_overage,
                            "commit_price": s.commit_price,
                            "overage_price_per_license": s.overage_price_per_license,
                        }
                        for s in specs.values()
                    ],
                )

    def load_open_borrows(self) -> list[tuple[str, str, str, float, int, str | None, str | None]]:
        """Return [(id, tool, user, borrowed_at, is_overage, host, version)] of borrows not yet returned."""
        return [tuple(row) for row in self.read(_OPEN_BORROWS)]

    def load_charges(self) -> dict[str, int]:
        """Return {tool: overage_borrows}."""
        return {tool: n for tool, n in self.read(_CHARGES)}

    def load_pool_state(self, log_name: str) -> tuple[list[tuple[Any, ...]], dict[str, int], str | None]:
        """Return the open borrows, the charges and the position in the shared log `log_name` they are at, read at once."""
        with self.snapshot() as conn:
            position = read_position(conn, log_name)
            borrows = tuples(conn, _OPEN_BORROWS)
            charges = dict(tuples(conn, _CHARGES))
        return borrows, charges, position


_b = t.borrows.c
_OPEN_BORROWS = (
    select(_b.id, _b.tool, _b.user, _b.borrowed_at, _b.is_overage, _b.host, _b.version)
    .where(_b.returned_at.is_(None))
    .order_by(_b.borrowed_at)
)
_CHARGES = select(t.charges.c.tool, t.charges.c.overage_borrows)


def one_line(exc: BaseException) -> str:
    """Return `exc` as one line for logs and health: SQLAlchemy's wrapper adds the statement on more lines."""
    if isinstance(exc, sa_exc.DBAPIError) and exc.orig is not None:
        exc = exc.orig
    first = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
    return f"{type(exc).__name__}: {first}"
