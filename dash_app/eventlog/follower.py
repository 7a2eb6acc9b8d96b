"""The log follower: a background service that applies every new entry of the shared log to this process, in order."""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Callable

import redis

from dash_app.eventlog.codec import FIELD, decode_entry, raw_entries
from dash_app.eventlog.reader import BLOCK_MS, LogReader
from dash_app.events import Event
from dash_app.store.database import entry_key

log = logging.getLogger(__name__)

READ_COUNT = 200  # entries per read; a backfill's entry holds up to a batch's events


class LogFollower(LogReader):
    """Reads the stream from `start` and hands each entry's events to `apply(entry_id, events)`; tracks health."""

    name = "log-follower"

    def __init__(
        self,
        client: redis.Redis,
        stream: str,
        start: str,
        apply: Callable[[str, list[Event]], None],
        on_idle: Callable[[], object] | None = None,
        block_ms: int = BLOCK_MS,
        prepare: Callable[[], None] | None = None,
        on_reconnect: Callable[[], None] | None = None,
    ) -> None:
        super().__init__(block_ms)
        self.client = client
        self.stream = stream
        self.last_id = start
        self.apply = apply
        self.on_idle = on_idle  # called after each read, in this thread: side state that is not in the log
        # Called before the first read, until it succeeds (it may move last_id back): what needs Redis to start.
        self.prepare = prepare
        # Called before the first read after a failed one (Redis answers again): it may have lost data meanwhile.
        self.on_reconnect = on_reconnect
        # The entries applied here that the store may not hold yet, (id, field e), oldest first: should Redis lose
        # them, they are put back from here (see recovery). Trimmed to the store's position (trim_tail).
        self.tail: deque[tuple[str, bytes]] = deque()
        self.connected = True
        # Moves on whenever Redis may have lost entries (a failed read, a rebuilt pool): see wait_applied.
        self.epoch = 0
        self.last_error: str | None = None
        self.down_since: float | None = None
        self._applied = threading.Condition()

    def step(self, block_ms: int | None = None) -> int:
        """Read and apply what is new (waiting up to `block_ms` for it); return the number of entries applied."""
        if self.prepare is not None:
            self.prepare()
            self.prepare = None
        if not self.connected and self.on_reconnect is not None:
            self.on_reconnect()
        reply = self.client.xread({self.stream: self.last_id}, count=READ_COUNT, block=block_ms)
        if not self.connected:
            log.warning("shared log: Redis answers again after %.1f s", time.time() - (self.down_since or time.time()))
        self.connected, self.last_error, self.down_since = True, None, None
        applied = 0
        for entry_id, fields in raw_entries(reply):
            try:
                self.apply(entry_id, decode_entry(fields))
            except Exception:  # noqa: BLE001 - one entry this process cannot apply must not stop it for good
                log.exception("shared log: entry %s could not be applied here; going on with the next", entry_id)
            self.tail.append((entry_id, fields.get(FIELD, b"[]")))
            with self._applied:
                self.last_id = entry_id
                self._applied.notify_all()
            applied += 1
        if self.on_idle is not None:
            self.on_idle()
        return applied

    def trim_tail(self, stored: str) -> None:
        """Drop the entries at or before `stored` (the store's position in the log) from the tail; this thread only."""
        at = entry_key(stored)
        while self.tail and entry_key(self.tail[0][0]) <= at:
            self.tail.popleft()

    def lost(self, exc: BaseException) -> None:
        message = f"{type(exc).__name__}: {exc}"
        if self.connected:
            log.error("shared log: cannot read from Redis (%s); serving what this process holds", message)
            self.down_since = time.time()
        self.connected, self.last_error = False, message
        self.data_lost()

    def data_lost(self) -> None:
        """Note that Redis may have lost entries not applied here yet: whoever waits for one is told it may be lost."""
        with self._applied:
            self.epoch += 1
            self._applied.notify_all()

    def wait_applied(self, entry_id: str, timeout: float = 1.0, epoch: int | None = None) -> bool:
        """Block until the entry `entry_id` is applied here; return True when it is.

        False when `timeout` passes first, or when Redis failed since the epoch `epoch` (read before the entry was
        added): a Redis that lost the entry may give a later one its place, so reaching its id would prove nothing.
        """
        wanted = entry_key(entry_id)
        deadline = time.monotonic() + timeout
        with self._applied:
            since = self.epoch if epoch is None else epoch
            while self.epoch == since and entry_key(self.last_id) < wanted:
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self._applied.wait(left)
            return self.epoch == since
