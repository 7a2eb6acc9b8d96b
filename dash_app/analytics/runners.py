"""Where analyses run: in a process of their own beside a database file, or in this process for an in-memory one.

An analysis of a month of sessions keeps the interpreter busy for about a second; in the serving process it would hold
up every live refresh and stream tick for that long. AnalysisProcess runs it in a spawned child that keeps its own
HistoryMirror of the database file, refreshed from the rows changed since its last read (also while idle), so a query
finds the copy current and pays for the analysis only. An in-memory database cannot be opened by another process:
InProcessRunner keeps the mirror here instead.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import multiprocessing
import os
import re
import signal
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from multiprocessing.connection import Connection
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from sqlalchemy import Connection as SQLConnection
from sqlalchemy import Engine, make_url

from dash_app.store.database import Store, connect_reader, sqlite_engine
from dash_app.store.migrate import is_url

if TYPE_CHECKING:
    from dash_app.analytics.mirror import HistoryMirror

log = logging.getLogger(__name__)

# How often an idle analysis process reads what changed, so that a query seldom waits for a long catch-up.
IDLE_REFRESH_SECONDS = 2.0
# Where the analysis process saves its copy of a database file's history (analytics/mirror_file.py): `<db>` + this,
# as SQLite's own `<db>-wal`.
SAVED_COPY_SUFFIX = "-analysis.npz"


def saved_copy_path(database: str, folder: str = "") -> str | None:
    """Return where the analysis copy of `database` is saved: beside a file, in `folder` for a server; None for memory.

    A server's copy is named after what identifies its database (dialect, user, host, port, name), never its password,
    so a changed password finds the same copy; a server with no `folder` keeps none.
    """
    if database in ("", ":memory:"):
        return None
    if not is_url(database):
        return database + SAVED_COPY_SUFFIX
    if not folder:
        return None
    url = make_url(database)
    identity = json.dumps(
        [url.get_backend_name(), url.username, url.host, url.port, url.database, sorted(url.query.items())], default=str
    )
    digest = hashlib.sha256(identity.encode()).hexdigest()[:16]
    name = re.sub(r"[^A-Za-z0-9_.-]", "_", url.database or "postgres")[:64]
    return os.path.join(os.path.expanduser(folder), f"{name}-{digest}{SAVED_COPY_SUFFIX}")


def started_if_analysed_before(database: str, folder: str = "") -> AnalysisProcess | None:
    """Return an analysis process of `database`, started, when an earlier one saved its copy (`saved_copy_path`)."""
    if not is_url(database) and database not in ("", ":memory:"):
        database = str(Path(database).expanduser().resolve())  # as the store names the file to its readers
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
    database = store.reader_path or store.path
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


class SavedCopies:
    """Loads a mirror from its saved copy at start and saves it after reads that changed it (analytics/mirror_file.py)."""

    def __init__(self, mirror: HistoryMirror, path: str | None) -> None:
        self.mirror, self.path = mirror, path
        self._version = -1  # the mirror's version when last loaded or saved
        self._whole_reads = 0  # and how many times it had read the history whole by then
        self._at = -math.inf  # and when
        self.loaded = False  # the mirror holds a loaded copy that no refresh has rejected yet

    def load(self) -> None:
        """Take the saved copy as the mirror's contents, if there is a usable one (the first refresh checks it)."""
        from dash_app.analytics import mirror_file

        if self.path is None:
            return
        try:
            mirror_file.remove_leftovers(self.path)  # a save cut short (a process killed while saving)
        except OSError as exc:
            log.warning("looking for leftovers of saving the copy of the history failed: %s", exc)
        try:
            self.mirror.adopt(mirror_file.load(self.path))
        except FileNotFoundError:
            return
        except (mirror_file.CopyUnusable, OSError) as exc:
            log.warning("the saved copy of the history is not used: %s", exc)
            return
        self._note()
        self.loaded = True
        log.info("loaded the saved copy of the history (%d sessions)", len(self.mirror.sessions))

    def checked(self) -> None:
        """After the first refresh: delete a loaded copy that the mirror found not of this history (it read it whole).

        Left in place, a rejected copy could pass the checks later, once the database's new writes reach its stamp.
        """
        if not self.loaded:
            return
        self.loaded = False
        if self.mirror.whole_reads and self.path is not None:
            try:
                os.unlink(self.path)
            except FileNotFoundError:
                pass
            except OSError as exc:
                log.warning("deleting the saved copy of another history failed: %s", exc)

    def save(self, now: bool = False) -> None:
        """Save the mirror if it changed since: at once after a whole read or with `now`, else every SAVE_SECONDS."""
        from dash_app.analytics import mirror_file

        if self.path is None or self.mirror.version == self._version:
            return
        whole_read = self.mirror.whole_reads != self._whole_reads
        if not (now or whole_read or time.monotonic() - self._at >= mirror_file.SAVE_SECONDS):
            return
        copy = self.mirror.saved()
        if copy is None:
            return
        try:
            mirror_file.save(copy, self.path)
        except Exception as exc:  # noqa: BLE001 - a full or read-only disk: the next start reads the database whole
            log.warning("saving the copy of the history failed: %s: %s", type(exc).__name__, exc)
        self._note()

    def _note(self) -> None:
        self._version, self._whole_reads, self._at = self.mirror.version, self.mirror.whole_reads, time.monotonic()


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
    if saved_copy is not None:
        try:  # a server's copy goes to a folder of its own (a cache), made private to this user
            os.makedirs(os.path.dirname(saved_copy), mode=0o700, exist_ok=True)
        except OSError as exc:
            log.warning("making the folder of the copy of the history failed (none is kept): %s", exc)
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
