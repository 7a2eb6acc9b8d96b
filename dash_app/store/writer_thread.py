"""The store's writer thread: a queue drained in batches, each written in one transaction, retried until it goes.

It holds the only copy of events acknowledged but not yet written, so nothing ends it but stop(): a failed batch is
kept and tried again with a growing pause, and the periodic tasks (aggregation, pruning) run between batches.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable
from typing import Any

from sqlalchemy.sql import Executable

from dash_app.events import Event
from dash_app.store.batch_writes import LogEntries, QueueItem
from dash_app.store.connections import one_line
from dash_app.store.statements import Params

log = logging.getLogger(__name__)

FLUSH_SECONDS = 0.2
BATCH_LIMIT = 5000


class QueuedWriter(ABC):
    """Queues writes for one thread, which writes them in batches (_write_what_can_be) and runs periodic tasks."""

    def __init__(self, lock: threading.RLock) -> None:
        self._conn_lock = lock  # held while a periodic task runs: the tasks use the writer's connection
        self._queue: queue.SimpleQueue[QueueItem] = queue.SimpleQueue()
        self._pending = 0
        self._pending_lock = threading.Condition()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.persisted = True
        self.last_error: str | None = None
        self._tasks: list[list[Any]] = []  # [every_seconds, next_due, fn()] run by the writer thread

    @abstractmethod
    def _write_what_can_be(self, batch: list[QueueItem]) -> list[QueueItem]:
        """Write the batch in one transaction and return the items left unwritten (none, normally)."""

    @abstractmethod
    def _check_file(self) -> None:
        """Put the database back if it went away under us (before each batch)."""

    @abstractmethod
    def close(self) -> None:
        """Close the database's connections."""

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

    def submit(self, statement: Executable, params: Params | None = None) -> None:
        """Queue one statement; it is written within FLUSH_SECONDS, in a batch with others."""
        self._put((statement, params or {}))

    def submit_entries(self, log_name: str, entries: list[tuple[str, list[Event]]]) -> None:
        """Queue entries of a shared event log; each is written once, with the log's position, in one transaction."""
        self._put(LogEntries(log_name, entries))

    def on_events(self, events: Iterable[Event]) -> None:
        """Queue recorded events, and the pool state they change, as one item (an EventRecorder listener)."""
        self._put(list(events))

    def _put(self, item: QueueItem) -> None:
        with self._pending_lock:
            self._pending += 1
        self._queue.put(item)

    def add_periodic(self, fn: Callable[[], object], every_seconds: float) -> None:
        """Run `fn()` in the writer thread every `every_seconds`, after the queued writes."""
        self._tasks.append([every_seconds, time.monotonic() + every_seconds, fn])

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

    def _next_batch(self, batch: list[QueueItem]) -> list[QueueItem] | None:
        """Return `batch` topped up from the queue, or None when nothing came within FLUSH_SECONDS."""
        if not batch:
            self._run_due_tasks()
            try:
                batch.append(self._queue.get(timeout=FLUSH_SECONDS))
            except queue.Empty:
                return None
            # Let a burst gather, so a second of traffic costs one transaction.
            time.sleep(0.02)
        while len(batch) < BATCH_LIMIT:
            try:
                batch.append(self._queue.get_nowait())
            except queue.Empty:
                break
        return batch

    def _run(self) -> None:
        batch: list[QueueItem] = []
        backoff = FLUSH_SECONDS
        while not (self._stop.is_set() and not batch and self._queue.empty()):
            # Whatever goes wrong, this thread goes on: it holds the only copy of acknowledged events.
            try:
                self._check_file()
                if self._next_batch(batch) is None:
                    continue
                left = self._write_what_can_be(batch)
            except Exception as exc:  # noqa: BLE001 - logged, and the batch is kept for the next try
                self._failed(exc)
                left = batch
            written = len(batch) - len(left)
            batch = left
            if written:
                self._written(written, done=not batch)
                if not batch:
                    backoff = FLUSH_SECONDS
                    continue
            if self._stop.is_set():
                # Stopping: no retry loop may outlive the app (it would spin on a closed connection).
                log.error("database writer stopped with %d items unwritten: %s", len(batch), self.last_error)
                break
            self._stop.wait(backoff)
            backoff = min(backoff * 2, 5.0)

    def _written(self, written: int, done: bool) -> None:
        """Count `written` items as written; `done` when the batch is all written."""
        if done:
            # Said before flush() can return, so whoever waited for the writes sees them as persisted.
            if not self.persisted:
                log.warning("database writes work again")
            self.persisted, self.last_error = True, None
        with self._pending_lock:
            self._pending -= written
            self._pending_lock.notify_all()

    def _failed(self, exc: BaseException) -> None:
        message = one_line(exc)
        if self.persisted or message != self.last_error:
            # Log the traceback once per distinct failure, not once per retry.
            log.error("database write failed (%s); will retry, serving from memory meanwhile", message, exc_info=exc)
        self.persisted, self.last_error = False, message

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
