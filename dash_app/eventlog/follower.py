"""The log follower: a background service that applies every new entry of the shared log to this process, in order."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

import redis

from dash_app.eventlog.codec import FIELD, decode_entry, raw_entries
from dash_app.eventlog.progress import LogProgress
from dash_app.eventlog.reader import BLOCK_MS, LogReader
from dash_app.events import Event

log = logging.getLogger(__name__)

READ_COUNT = 200  # entries per read; a backfill's entry holds up to a batch's events


class LogFollower(LogReader):
    """Reads the stream from `progress.applied` and hands each entry's events to `apply(entry_id, events)`; tracks health."""

    name = "log-follower"

    def __init__(
        self,
        client: redis.Redis,
        stream: str,
        progress: LogProgress,
        apply: Callable[[str, list[Event]], None],
        on_idle: Callable[[], object] | None = None,
        block_ms: int = BLOCK_MS,
        prepare: Callable[[], None] | None = None,
        on_reconnect: Callable[[], None] | None = None,
    ) -> None:
        super().__init__(block_ms)
        self.client = client
        self.stream = stream
        self.progress = progress  # it reads on from progress.applied, and moves it on
        self.apply = apply
        self.on_idle = on_idle  # called after each read, in this thread: side state that is not in the log
        # Called before the first read, until it succeeds (it may move the position back): what needs Redis to start.
        self.prepare = prepare
        # Called before the first read after a failed one (Redis answers again): it may have lost data meanwhile.
        self.on_reconnect = on_reconnect
        self.connected = True
        self.last_error: str | None = None
        self.down_since: float | None = None

    @property
    def last_id(self) -> str:
        """The last entry this process applied."""
        return self.progress.applied

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
            self.progress.mark_applied(entry_id, fields.get(FIELD, b"[]"))
            applied += 1
        if self.on_idle is not None:
            self.on_idle()
        return applied

    def lost(self, exc: BaseException) -> None:
        message = f"{type(exc).__name__}: {exc}"
        if self.connected:
            log.error("shared log: cannot read from Redis (%s); serving what this process holds", message)
            self.down_since = time.time()
        self.connected, self.last_error = False, message
        self.progress.data_lost()
