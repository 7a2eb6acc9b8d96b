"""The log persister: the leader's background service that writes every entry of the shared log to the store once."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

import redis

from dash_app.eventlog.codec import decode_entry, raw_entries
from dash_app.eventlog.reader import LogReader
from dash_app.store.database import Store, entry_key

log = logging.getLogger(__name__)

READ_COUNT = 500
TRIM_EVERY_SECONDS = 10.0
SEEN_SECONDS = 86400.0  # a log line's id is remembered this long (a line is never read again later than that)


class LogPersister(LogReader):
    """Follows the stream from the store's own position and queues its entries on the store's batched writer.

    The store writes an entry's events and its new position in one transaction, and skips entries at or before the
    position it finds there: whoever sends them, and however often, each entry's events are stored once. It also
    trims the stream: entries older than `keep_seconds` go, but never one the store does not hold yet. (A failed
    read is only retried: the follower reports Redis's health.)
    """

    name = "log-persister"

    def __init__(
        self,
        client: redis.Redis,
        stream: str,
        store: Store,
        keep_seconds: float,
        forget_seen: Callable[[float], None] | None = None,
    ) -> None:
        super().__init__()
        self.forget_seen = forget_seen  # drops the ids of log lines seen before a time (RedisLedger.forget_seen)
        self.client = client
        self.stream = stream
        self.store = store
        self.keep_seconds = keep_seconds
        self.last_id = store.log_position(stream) or "0-0"
        self._next_trim = 0.0

    def step(self, block_ms: int | None = None) -> int:
        """Queue what is new in the stream for the store; return the number of entries queued."""
        reply = self.client.xread({self.stream: self.last_id}, count=READ_COUNT, block=block_ms)
        entries = []
        for entry_id, fields in raw_entries(reply):
            try:
                entries.append((entry_id, decode_entry(fields)))
            except Exception:  # noqa: BLE001 - an entry nobody can read must not hold back all that follow
                log.exception("shared log: entry %s cannot be read; it is not stored", entry_id)
        if reply and not entries:
            self.last_id = raw_entries(reply)[-1][0]
        if entries:
            self.store.submit_entries(self.stream, entries)
            self.last_id = entries[-1][0]
        if time.monotonic() >= self._next_trim:
            self._next_trim = time.monotonic() + TRIM_EVERY_SECONDS
            self.trim()
        return len(entries)

    def trim(self) -> None:
        """Drop entries older than keep_seconds that the store already holds."""
        stored = self.store.log_positions.get(self.stream) or self.store.log_position(self.stream)
        if not stored:
            return
        cutoff = (int((time.time() - self.keep_seconds) * 1000), 0)
        # MINID keeps entries at or after the id: keep the first one the store may not hold yet, too.
        ms, seq = min(cutoff, entry_key(stored))
        self.client.xtrim(self.stream, minid=f"{ms}-{seq}", approximate=True)
        if self.forget_seen is not None:
            self.forget_seen(time.time() - SEEN_SECONDS)
