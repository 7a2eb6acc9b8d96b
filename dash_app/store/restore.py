"""Refill the buffer from the database at start, so a restart loses no history."""

import logging
import time

from dash_app.buffer import RealtimeMetricsBuffer
from dash_app.events import KINDS, Event
from dash_app.store.database import Store, read_position, tuples

log = logging.getLogger(__name__)

# The events table's columns are an Event's fields, in order.
_COLUMNS = ", ".join(f'"{name}"' for name in Event._fields)


def restore_buffer(store: Store, buffer: RealtimeMetricsBuffer, log_name: str | None = None) -> tuple[int, str | None]:
    """Add the newest retained events of each kind (up to the buffer's caps) back into `buffer`.

    Return the count, and with `log_name` the position in that shared log the restored events reach (read in the
    same transaction, so the entries after it are exactly those the buffer still lacks).
    """
    began = time.perf_counter()
    since = buffer.clock() - buffer.retention_seconds
    caps = buffer.caps()
    restored = 0
    position = None
    with store.snapshot() as conn:
        if log_name is not None:
            position = read_position(conn, log_name)
        for kind in KINDS:
            rows = tuples(
                conn,
                f"SELECT {_COLUMNS} FROM events WHERE kind = :kind AND ts >= :since ORDER BY ts DESC, rowid DESC LIMIT :cap",
                {"kind": kind, "since": since, "cap": caps[kind]},
            )
            rows.reverse()
            restored += buffer.restore(map(Event._make, rows))
    if restored:
        log.info("restored %d events from %s in %.2f s", restored, store.name, time.perf_counter() - began)
    return restored, position
