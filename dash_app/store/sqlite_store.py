"""SQLite persistence: a batched writer thread for events and pool state, and reads for restore."""

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
from pathlib import Path
from typing import TYPE_CHECKING, Any, NamedTuple, TypeAlias

from dash_app.events import BORROW, FAILURE, RETURN, Event
from dash_app.store.migrate import check_sqlite, upgrade_sqlite
from dash_app.store.schema import SchemaTooNew, source_of

if TYPE_CHECKING:  # for the annotations only: the store needs nothing of the licenses package at run time
    from dash_app.licenses.inventory import ToolSpec

log = logging.getLogger(__name__)

# What the writer's queue holds: the events of one record call, one statement with its parameters, or entries of the
# shared event log (--redis).
Statement: TypeAlias = tuple[str, Sequence[Any]]


class LogEntries(NamedTuple):
    """Entries of a shared event log, in order: each (entry id, its events); written once, whoever sends them."""

    log: str  # the log's name (its Redis key)
    entries: list[tuple[str, list[Event]]]


QueueItem: TypeAlias = list[Event] | Statement | LogEntries


def entry_key(entry_id: str) -> tuple[int, int]:
    """Return a Redis Stream entry id ("1700000000000-3") as a pair that sorts as the stream does."""
    ms, _, seq = entry_id.partition("-")
    return int(ms), int(seq or 0)


# A borrow and its return may reach the writer in either order (one source's batch can be recorded after another
# thread returned one of its borrows), so both are upserts that leave the other's columns alone: the row ends the
# same whichever comes first. Each row is one session, kept --history-days after its return (HistoryKeeper.prune);
# its source follows from its id (schema.source_of), its host and version from the borrow event.
_INSERT_BORROW = (
    "INSERT INTO borrows (id, tool, user, borrowed_at, is_overage, returned_at, source, changed, host, version) "
    "VALUES (?, ?, ?, ?, ?, NULL, ?, ?, ?, ?) "
    "ON CONFLICT(id) DO UPDATE SET tool = excluded.tool, user = excluded.user, borrowed_at = excluded.borrowed_at, "
    "is_overage = excluded.is_overage, source = excluded.source, changed = excluded.changed, host = excluded.host, "
    "version = excluded.version"
)
_RETURN_BORROW = (
    "INSERT INTO borrows (id, tool, user, borrowed_at, is_overage, returned_at, source, changed) "
    "VALUES (?, ?, ?, ?, 0, ?, ?, ?) "
    "ON CONFLICT(id) DO UPDATE SET returned_at = excluded.returned_at, changed = excluded.changed"
)
_ADD_CHARGES = (
    "INSERT INTO charges (tool, overage_borrows) VALUES (?, ?) "
    "ON CONFLICT(tool) DO UPDATE SET overage_borrows = overage_borrows + excluded.overage_borrows"
)
# An Event is a row of this table: its fields are the columns, in order.
_INSERT_EVENT = f"INSERT INTO events ({', '.join(Event._fields)}) VALUES ({', '.join('?' * len(Event._fields))})"
_INSERT_DENIAL = "INSERT INTO denials (ts, tool, user, reason, changed) VALUES (?, ?, ?, ?, ?)"
# The earliest time of the events written and not yet folded into the long history (HistoryKeeper.aggregate). It is
# kept in the file, in the transaction that writes the events, not in the writing process's memory: with --redis the
# lease holder that aggregates may not be the process that wrote them (a leader killed before its next run, or
# ingest-flexlm), and a crash between the write and the aggregation must not lose them from the history.
UNAGGREGATED_SINCE = "unaggregated_since"
_MARK_UNAGGREGATED = (
    f"INSERT INTO history_meta (key, value) VALUES ('{UNAGGREGATED_SINCE}', ?) "
    "ON CONFLICT(key) DO UPDATE SET value = min(value, excluded.value)"
)

FLUSH_SECONDS = 0.2
BATCH_LIMIT = 5000
IDENTITY_CHECK_SECONDS = 1.0  # how often the writer checks that the database file is still the one it opened
BUSY_TIMEOUT_MS = 5000

# Numbers for SQLiteStore.sessions_version, shared by every store in the process: a value is never given twice, so a
# cache keyed on it cannot mistake one store's data for another's.
_data_versions = itertools.count(1)


# The newest stamp in a file (SQLiteStore._stamp): of the rows, of the prunes' log, and of what the log forgot.
LAST_STAMP_SQL = (
    "SELECT max(ifnull((SELECT MAX(changed) FROM borrows), 0), ifnull((SELECT MAX(changed) FROM denials), 0), "
    "ifnull((SELECT MAX(stamp) FROM pruned_rows), 0), "
    "ifnull((SELECT value FROM history_meta WHERE key = 'pruned_rows_complete_after'), 0))"
)


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


@contextmanager
def read_transaction(conn: sqlite3.Connection) -> Iterator[sqlite3.Connection]:
    """Run the block's reads on `conn` (autocommit mode) in one transaction, so they see one committed state."""
    conn.execute("BEGIN")
    try:
        yield conn
    finally:
        conn.execute("COMMIT")


def read_position(conn: sqlite3.Connection, log_name: str) -> str | None:
    """Return the id of the last entry of the shared log `log_name` stored in the file on `conn`, or None."""
    row = conn.execute("SELECT entry_id FROM log_positions WHERE log = ?", (log_name,)).fetchone()
    return row[0] if row else None


class StoreError(Exception):
    """The database cannot be opened or set up; the message is one line for the user."""


class SQLiteStore:
    """Owns one SQLite database (WAL); writes go through a queue to one batching thread."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = str(path)
        if "://" in self.path:
            # The schema and `db copy` take a server already (store.migrate); the server's store is SQLite's for now.
            raise StoreError(
                "--db: this release keeps its data in a SQLite file; a database URL works with "
                "`python -m dash_app db current|upgrade|copy` only"
            )
        if self.path != ":memory:":
            parent = Path(self.path).expanduser().resolve().parent
            if not parent.is_dir():
                raise StoreError(f"database {self.path}: folder {parent} does not exist")
        # One connection serves the writer thread and readers; the lock keeps their use apart.
        self._conn_lock = threading.RLock()
        self._conn: sqlite3.Connection | None = None  # None until opened, and while a recreation is under way
        # (st_dev, st_ino) of the file opened, to notice it being deleted or replaced
        self._identity: tuple[int, int] | None = None
        self._next_identity_check = 0.0
        # Connections of their own for long reads (scan): idle ones, and the generation they belong to, which a
        # recreation or close moves on so that connections to the old file are closed rather than reused.
        self._readers: list[sqlite3.Connection] = []
        self._readers_lock = threading.Lock()
        self._readers_generation = 0
        # Resolved now: read connections opened later must reach the same file whatever the working directory.
        self.reader_path = str(Path(self.path).expanduser().resolve()) if self.path != ":memory:" else ""
        # Changes (to a number never used before) whenever a committed write touched sessions or denials.
        self.sessions_version = next(_data_versions)
        try:
            self._open()
        except (sqlite3.Error, SchemaTooNew) as exc:
            raise StoreError(f"database {self.path}: {exc}") from None
        self._queue: queue.SimpleQueue[QueueItem] = queue.SimpleQueue()
        self._pending = 0
        self._pending_lock = threading.Condition()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.persisted = True
        self.last_error: str | None = None
        self.recreations = 0  # times the file was found deleted or replaced and written again
        self._tasks: list[list[Any]] = []  # [every_seconds, next_due, fn(conn)] run by the writer thread
        self.log_positions: dict[str, str] = {}  # log -> id of its last entry committed here (LogEntries)

    def _open(self) -> None:
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
        # The stamp of the last committed write: rows of sessions and denials carry the stamp of the write that last
        # changed them (schema v2), so readers that keep a copy can ask for what changed since.
        self._stamp = int(conn.execute(LAST_STAMP_SQL).fetchone()[0])  # stamps only go up, across restarts too
        if self.path != ":memory:":
            st = os.stat(self.path)
            self._identity = (st.st_dev, st.st_ino)

    def _connection(self) -> sqlite3.Connection:
        """Return the open connection, or raise sqlite3.OperationalError when a failed recreation left none."""
        conn = self._conn
        if conn is None:
            raise sqlite3.OperationalError(f"database {self.path} is not open: its recreation has not finished")
        return conn

    def check_writable(self) -> None:
        """Raise StoreError unless a write transaction can start now (another process may hold the database)."""
        try:
            with self._conn_lock:
                conn = self._connection()
                conn.execute("BEGIN IMMEDIATE")
                conn.execute("ROLLBACK")
        except sqlite3.Error as exc:
            raise StoreError(f"database {self.path}: cannot write ({exc}); is another process using it?") from None

    # ------------------------------------------------------------ lifecycle

    def start(self) -> None:
        """Start the writer thread."""
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name="sqlite-writer", daemon=True)
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
        """Close the connection (and the idle read connections)."""
        self._drop_readers()
        with self._conn_lock:
            if self._conn is not None:
                self._conn.close()

    # --------------------------------------------------------------- writes

    def submit(self, sql: str, params: Sequence[Any] = ()) -> None:
        """Queue one statement; it is written within FLUSH_SECONDS, in a batch with others."""
        self._put((sql, params))

    def _put(self, item: QueueItem) -> None:
        with self._pending_lock:
            self._pending += 1
        self._queue.put(item)

    def add_periodic(self, fn: Callable[[sqlite3.Connection], object], every_seconds: float) -> None:
        """Run `fn(conn)` in the writer thread every `every_seconds`, after the queued writes."""
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
                    log.warning("SQLite writes work again")
                self.persisted, self.last_error, backoff = True, None, FLUSH_SECONDS
            if written:
                with self._pending_lock:
                    self._pending -= written
                    self._pending_lock.notify_all()
            if not batch and written:
                continue
            if self._stop.is_set():
                # Stopping: no retry loop may outlive the app (it would spin on a closed connection).
                log.error("SQLite writer stopped with %d items unwritten: %s", len(batch), self.last_error)
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
            self._conn.close()
            self._conn = None
            for suffix in ("-wal", "-shm"):
                if os.path.exists(path + suffix):
                    os.remove(path + suffix)
            os.replace(copy, path)
            self._open()

    def _write_what_can_be(self, batch: list[QueueItem]) -> list[QueueItem]:
        """Write the batch in one transaction and return the items left unwritten (none, normally)."""
        try:
            self._write(batch)
            return []
        except sqlite3.OperationalError:
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

    def _failed(self, exc: BaseException) -> None:
        message = f"{type(exc).__name__}: {exc}"
        if self.persisted or message != self.last_error:
            # Log the traceback once per distinct failure, not once per retry.
            log.error("SQLite write failed (%s); will retry, serving from memory meanwhile", message, exc_info=exc)
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
        with self._conn_lock:
            conn = self._connection()
            # IMMEDIATE: the write lock is taken before the log positions are read, so two processes that send the
            # same entries (a leader and the one that took over from it) cannot both write them.
            conn.execute("BEGIN IMMEDIATE")
            try:
                positions = self._take_new_entries(conn, logged, events)
                self._write_rows(conn, events, statements)
                conn.execute("COMMIT")
            except BaseException:
                # Any failure, not only SQLite's own, must leave no transaction open behind it.
                if conn.in_transaction:
                    conn.execute("ROLLBACK")
                raise
            self.log_positions.update(positions)
            # Every event kind is a session's start or end or a denial; statements may change a session's details.
            if events or statements:
                self.sessions_changed()

    def _take_new_entries(self, conn: sqlite3.Connection, logged: list[LogEntries], events: list[Event]) -> dict[str, str]:
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
        for log_name, entry_id in positions.items():
            conn.execute(
                "INSERT INTO log_positions (log, entry_id) VALUES (?, ?) "
                "ON CONFLICT(log) DO UPDATE SET entry_id = excluded.entry_id",
                (log_name, entry_id),
            )
        return positions

    def log_position(self, log_name: str) -> str | None:
        """Return the id of the last entry of the shared log `log_name` whose events are in the database, or None."""
        with self._conn_lock:
            return read_position(self._connection(), log_name)

    def submit_entries(self, log_name: str, entries: list[tuple[str, list[Event]]]) -> None:
        """Queue entries of a shared event log; each is written once, with the log's position, in one transaction."""
        self._put(LogEntries(log_name, entries))

    def _write_rows(self, conn: sqlite3.Connection, events: list[Event], statements: list[Statement]) -> None:
        stamp = self.new_stamp(conn)
        borrows = [
            (e.borrow_id, e.tool, e.user, e.ts, e.is_overage, source_of(e.borrow_id), stamp, e.host, e.version)
            for e in events
            if e.kind == BORROW
        ]
        # A return written first keeps its borrow's time as its own until the borrow row arrives.
        returns = [(e.borrow_id, e.tool, e.user, e.ts, e.ts, source_of(e.borrow_id), stamp) for e in events if e.kind == RETURN]
        denials = [(e.ts, e.tool, e.user, e.reason, stamp) for e in events if e.kind == FAILURE]
        charges: dict[str | None, int] = {}  # by tool, keyed like Event.tool (a borrow's is never None)
        for e in events:
            if e.kind == BORROW and e.is_overage:
                charges[e.tool] = charges.get(e.tool, 0) + 1
        conn.executemany(_INSERT_BORROW, borrows)
        conn.executemany(_RETURN_BORROW, returns)
        conn.executemany(_ADD_CHARGES, list(charges.items()))
        conn.executemany(_INSERT_EVENT, events)  # an Event is a row of this table
        if events:
            conn.execute(_MARK_UNAGGREGATED, (min(e.ts for e in events),))  # committed with them, or not at all
        conn.executemany(_INSERT_DENIAL, denials)  # in the same transaction as their events
        for sql, params in statements:
            conn.execute(sql, params)

    def new_stamp(self, conn: sqlite3.Connection) -> int:
        """Return the stamp of the write transaction open on `conn` (writer thread; a failed one skips it).

        Read under the write lock: another process writing the same file (with --redis, whichever holds the lease)
        may have stamped rows since, and stamps must only go up for the copies that ask what changed since one.
        """
        self._stamp = max(self._stamp, int(conn.execute(LAST_STAMP_SQL).fetchone()[0])) + 1
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
                    fn(self._connection())
            except Exception as exc:  # noqa: BLE001 - a periodic task's failure must not end the writer
                log.error("SQLite maintenance %s failed: %s", getattr(fn, "__name__", fn), exc, exc_info=exc)
                self.persisted, self.last_error = False, f"{type(exc).__name__}: {exc}"

    # ---------------------------------------------------------------- reads

    def read(self, sql: str, params: Sequence[Any] | Mapping[str, Any] = ()) -> list[Any]:
        """Run a read query and return all rows; it sees what the writer has committed."""
        with self._conn_lock:
            return self._connection().execute(sql, params).fetchall()

    def scan(self, sql: str, params: Sequence[Any] | Mapping[str, Any] = ()) -> list[Any]:
        """Run a long read query and return all rows, on a connection of its own, so the writer is not held up.

        It sees what the writer has committed, like read(). An in-memory database has one connection only: there it
        is read().
        """
        if self.path == ":memory:":
            return self.read(sql, params)
        try:
            conn, generation = self._take_reader()
        except sqlite3.OperationalError:
            return self.read(sql, params)  # the file is being written back (see _recreate): read the one we hold
        try:
            return conn.execute(sql, params).fetchall()
        finally:
            self._give_back_reader(conn, generation)

    @contextmanager
    def snapshot(self) -> Iterator[sqlite3.Connection]:
        """Yield a connection inside one read transaction: every query on it sees the same committed state.

        A file database lends one of its read connections (the writer goes on meanwhile); an in-memory one has
        only the writer's connection, which is held, with the writer waiting, until the block ends.
        """
        if self.path == ":memory:":
            with self._conn_lock:
                with read_transaction(self._connection()) as conn:
                    yield conn
            return
        conn, generation = self._take_reader()
        try:
            with read_transaction(conn) as conn:
                yield conn
        finally:
            self._give_back_reader(conn, generation)

    def _take_reader(self) -> tuple[sqlite3.Connection, int]:
        with self._readers_lock:
            generation = self._readers_generation
            if self._readers:
                return self._readers.pop(), generation
        return connect_reader(self.reader_path), generation

    def _give_back_reader(self, conn: sqlite3.Connection, generation: int) -> None:
        with self._readers_lock:
            if generation == self._readers_generation:
                self._readers.append(conn)
                return
        conn.close()

    def _drop_readers(self) -> None:
        with self._readers_lock:
            self._readers_generation += 1
            idle, self._readers = self._readers, []
        for conn in idle:
            conn.close()

    def save_tools(self, specs: Mapping[str, ToolSpec]) -> None:
        """Replace the stored inventory with `specs` (at start-up, before the writer runs)."""
        with self._conn_lock:
            conn = self._connection()
            conn.execute("BEGIN")
            conn.execute("DELETE FROM tools")
            conn.executemany(
                "INSERT INTO tools VALUES (?, ?, ?, ?, ?, ?)",
                [
                    (s.tool, s.total, s.commit_qty, s.max_overage, s.commit_price, s.overage_price_per_license)
                    for s in specs.values()
                ],
            )
            conn.execute("COMMIT")

    def load_open_borrows(self) -> list[tuple[str, str, str, float, int, str | None, str | None]]:
        """Return [(id, tool, user, borrowed_at, is_overage, host, version)] of borrows not yet returned."""
        return self.read(
            "SELECT id, tool, user, borrowed_at, is_overage, host, version FROM borrows "
            "WHERE returned_at IS NULL ORDER BY borrowed_at"
        )

    def load_charges(self) -> dict[str, int]:
        """Return {tool: overage_borrows}."""
        return dict(self.read("SELECT tool, overage_borrows FROM charges"))
