"""Where analyses run: in a process of their own for a database file or server, or in this process for an in-memory one.

An analysis of a month of sessions keeps the interpreter busy for about a second; in the serving process it would hold
up every live refresh and stream tick for that long. AnalysisProcess runs it in a spawned child that keeps its own
HistoryMirror of the database, refreshed from the rows changed since its last read (also while idle), so a query
finds the copy current and pays for the analysis only; it saves that copy (beside a file, in a folder of its own for
a server) for the next start. An in-memory database cannot be opened by another process: InProcessRunner keeps the
mirror here instead.
"""

from __future__ import annotations

import logging
import multiprocessing
import os
import signal
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from multiprocessing.connection import Connection
from typing import TYPE_CHECKING, Any, Protocol

from sqlalchemy import Connection as SQLConnection
from sqlalchemy import Engine

from dash_app.analytics.saved_copies import SavedCopies, private_folder, saved_copy_path
from dash_app.store.database import Store, connect_reader, resolved_database, sqlite_engine
from dash_app.store.migrate import is_url

if TYPE_CHECKING:
    from dash_app.analytics.mirror import HistoryMirror

log = logging.getLogger(__name__)

# How often an idle analysis process reads what changed, so that a query seldom waits for a long catch-up.
IDLE_REFRESH_SECONDS = 2.0


def started_if_analysed_before(database: str, folder: str = "") -> AnalysisProcess | None:
    """Return an analysis process of `database`, started, when an earlier one saved its copy (`saved_copy_path`)."""
    database = resolved_database(database)  # as the store names the file to its readers
    saved = saved_copy_path(database, folder)
    if saved is None or not os.path.exists(saved):
        return None
    process = AnalysisProcess(database, saved)
    process.start()
    return process


def analysis_runner(store: Store, folder: str = "") -> Runner:
    """Return where `store`'s analyses run: a process of their own for a file or a server (saving its copy), else here."""
    if store.path == ":memory:":
        return InProcessRunner(store)
    database = resolved_database(store.path)
    return AnalysisProcess(database, saved_copy_path(database, folder))


class AnalysisUnavailable(RuntimeError):
    """The analysis process ended while working (it is started again for the next query); the message says so."""


class AnalysisFailed(RuntimeError):
    """An analysis raised an error; the message is its one line."""


class Runner(Protocol):
    """Runs a job of jobs.JOBS by name over a current copy of the stored history."""

    def start(self) -> None:
        """Get ready (load the copy) ahead of the first query; optional."""

    def run(self, job: str, **params: Any) -> Any:
        """Bring the copy up to date, run `job` with `params` and return its result."""

    def stop(self) -> None:
        """Release what the runner holds."""


class InProcessRunner:
    """Runs analyses in this process, over a mirror read through the store's own connections."""

    def __init__(self, store: Store) -> None:
        # The analyses (and pandas) are imported by the process that runs them, here or in _serve: a serving process
        # whose database is a file never loads them (half a second at every start, and tens of MB a worker).
        from dash_app.analytics.jobs import JOBS
        from dash_app.analytics.mirror import HistoryMirror

        self.jobs = JOBS
        self.mirror: HistoryMirror = HistoryMirror(store.snapshot)
        self._lock = threading.Lock()

    def start(self) -> None:
        pass  # an in-memory database is a test's or a demo's: its first query reads it

    def run(self, job: str, **params: Any) -> Any:
        with self._lock:
            self.mirror.refresh()
            try:
                return self.jobs[job](self.mirror, **params)
            except ValueError as exc:
                raise AnalysisFailed(str(exc)) from None

    def stop(self) -> None:
        pass


class FileSnapshots:
    """Read transactions on a database file by path, starting over on a new connection when the file is replaced."""

    def __init__(self, path: str) -> None:
        self.path = path
        self._engine: Engine | None = None
        self._identity: tuple[int, int] | None = None
        self.replaced = False  # set when the file changed identity since the last snapshot; the reader clears it

    @contextmanager
    def __call__(self) -> Iterator[SQLConnection]:
        st = os.stat(self.path)  # FileNotFoundError while the writer puts a deleted file back: the query fails
        identity = (st.st_dev, st.st_ino)
        if self._engine is None or identity != self._identity:
            if self._engine is not None:
                self._engine.dispose()
                self.replaced = True
            self._engine, self._identity = sqlite_engine(lambda: connect_reader(self.path)), identity
        with self._engine.connect() as conn, conn.begin():
            yield conn

    def close(self) -> None:
        """Close the connection to the file."""
        if self._engine is not None:
            self._engine.dispose()


class ServerSnapshots:
    """Read transactions on a database server, each on one snapshot of it (repeatable read)."""

    replaced = False  # a server's database is never swapped under its readers as a file can be

    def __init__(self, url: str) -> None:
        self._store = Store(url)  # opens (and checks the revision of) the database as the serving process did

    @contextmanager
    def __call__(self) -> Iterator[SQLConnection]:
        with self._store.snapshot() as conn:
            yield conn

    def close(self) -> None:
        """Close the connections to the server."""
        self._store.close()


def snapshots_for(where: str) -> FileSnapshots | ServerSnapshots:
    """Return read transactions on the database at `where`: a file's path, or a server's URL."""
    return ServerSnapshots(where) if is_url(where) else FileSnapshots(where)


def _serve(conn: Connection, path: str, saved_copy: str | None) -> None:
    """The analysis process: keep a mirror of `path` (saved at `saved_copy`) and answer (job, params) requests on `conn`."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the parent's to handle; it then closes the pipe
    # SIGTERM comes with the server's own (a process group's stop, or multiprocessing's at exit): save, then end.
    stopping = threading.Event()
    signal.signal(signal.SIGTERM, lambda signum, frame: stopping.set())
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s[analysis]: %(message)s")
    from dash_app.analytics.jobs import JOBS, warm_up
    from dash_app.analytics.mirror import HistoryMirror

    snapshots = snapshots_for(path)
    mirror = HistoryMirror(snapshots)
    if saved_copy is not None and is_url(path):
        try:  # a server's copy goes to a folder of its own (a cache), which no other user may write to
            private_folder(os.path.dirname(saved_copy))
        except OSError as exc:
            log.warning("the copy of the history is not kept: %s", exc)
            saved_copy = None
    copies = SavedCopies(mirror, saved_copy)
    copies.load()

    def refresh() -> None:
        if snapshots.replaced:
            snapshots.replaced = False
            mirror.reset()
        mirror.refresh()
        if snapshots.replaced:  # noticed on this very read: read the new file whole
            snapshots.replaced = False
            mirror.reset()
            mirror.refresh()
        copies.checked()
        mirror.index()  # sorted now, while nobody waits, rather than at the next query

    waiting = 0.0  # the history is read at once: the first query (the Capacity view's) should find it read
    warmed = False
    try:
        while not stopping.is_set():
            try:
                if not conn.poll(waiting):
                    waiting = IDLE_REFRESH_SECONDS
                    refresh()
                    if not warmed:
                        warmed = True
                        warm_up(mirror, time.time())
                    copies.save()  # while idle: a query never waits for the file
                    continue
                request = conn.recv()
            except (EOFError, OSError):
                return  # the app is gone
            except Exception:  # noqa: BLE001 - an idle refresh that fails is tried again at the next request
                log.exception("refreshing the copy of the history failed")
                continue
            if request is None:
                return
            job, params = request
            try:
                refresh()
                reply: tuple[str, Any] = ("ok", JOBS[job](mirror, **params))
            except ValueError as exc:
                reply = ("failed", str(exc))
            except Exception as exc:  # noqa: BLE001 - reported to the caller, and the process goes on
                log.exception("analysis %s failed", job)
                reply = ("failed", f"{type(exc).__name__}: {exc}")
            try:
                conn.send(reply)
            except (OSError, ValueError):
                return
    finally:
        copies.save(now=True)


class AnalysisProcess:
    """Runs analyses in a spawned child process over its own copy of the database at `path` (a file, or a URL).

    The process saves that copy at `saved_copy` (saved_copy_path) and starts from it, or keeps none when it is None.
    """

    def __init__(self, path: str, saved_copy: str | None = None) -> None:
        self.path, self.saved_copy = path, saved_copy
        self._lock = threading.Lock()
        self._process: Any = None  # multiprocessing's SpawnProcess
        self._conn: Connection | None = None
        self.restarts = 0
        self._stopped = False  # by stop(): a query that comes after (a thread still at work) starts no process

    def _ensure(self) -> Connection:
        if self._stopped:
            raise AnalysisUnavailable("the analysis process has stopped with the server")
        if self._process is not None and self._process.is_alive() and self._conn is not None:
            return self._conn
        if self._process is not None:
            self.restarts += 1
            log.warning("analysis process ended (exit code %s); starting another", self._process.exitcode)
            self._close()
        # spawn, never fork: the serving process has threads, and a forked child would inherit their locks.
        context = multiprocessing.get_context("spawn")
        parent, child = context.Pipe()
        process = context.Process(target=_serve, args=(child, self.path, self.saved_copy), name="license-analysis", daemon=True)
        process.start()
        child.close()
        self._process, self._conn = process, parent
        return parent

    def start(self) -> None:
        """Start the process now, so it reads the history while nobody waits for it."""
        with self._lock:
            self._ensure()

    def run(self, job: str, **params: Any) -> Any:
        with self._lock:
            conn = self._ensure()
            try:
                conn.send((job, params))
                status, value = conn.recv()
            except (EOFError, OSError) as exc:
                self._close()
                raise AnalysisUnavailable("the analysis process ended during the query; it is being restarted") from exc
        if status == "failed":
            raise AnalysisFailed(value)
        return value

    def _close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None
        if self._process is not None:
            self._process.join(timeout=0.1)
            if self._process.is_alive():
                self._process.kill()
                self._process.join()
            self._process = None

    def stop(self) -> None:
        """Ask the process to end and wait for it; no query starts another after this."""
        with self._lock:
            self._stopped = True
            if self._conn is not None and self._process is not None and self._process.is_alive():
                try:
                    self._conn.send(None)
                except OSError:
                    pass
                self._process.join(timeout=5)
            self._close()

    @property
    def pid(self) -> int | None:
        """The process id of the running analysis process, or None."""
        return None if self._process is None else self._process.pid
