"""Refill the buffer from SQLite at start, so a restart loses no history."""

import logging
import time

log = logging.getLogger(__name__)


def restore_buffer(store, buffer):
    """Add the newest retained events of each kind (up to the buffer's caps) back into `buffer`; return the count."""
    began = time.perf_counter()
    since = buffer.clock() - buffer.retention_seconds
    caps = buffer.caps()
    restored = 0
    for kind, columns in (
        ("borrow", "ts, tool, user, is_overage, borrow_id"),
        ("return", "ts, borrow_id, user, tool"),
        ("failure", "ts, tool, user, reason"),
    ):
        rows = store.read(
            f"SELECT {columns} FROM events WHERE kind = ? AND ts >= ? ORDER BY ts DESC, rowid DESC LIMIT ?",
            (kind, since, caps[kind]),
        )
        rows.reverse()
        restored += buffer.restore(kind, rows)
    if restored:
        log.info("restored %d events from %s in %.2f s", restored, store.path, time.perf_counter() - began)
    return restored
