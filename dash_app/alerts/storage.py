"""The alerts' rows in the database: what a restart reads back, what a takeover compares, and what each tick saves."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING, Any, NamedTuple

from sqlalchemy import bindparam, text

from dash_app.alerts.alert import FIRING, RESOLVED, Alert
from dash_app.alerts.notices import DeliveryRecord
from dash_app.store import tables
from dash_app.store.database import upsert

if TYPE_CHECKING:
    from dash_app.store.database import Store

KEYS_PER_READ = 500  # keys per `IN (...)` of a takeover's read: well under SQLite's limit on parameters

# The columns of an alerts row, in the order _alert_of takes them.
_COLUMNS = "episode, key, rule, subject, tool, state, since, fired_at, resolved_at, value, threshold, message, notified_at"
# The rows of some keys, oldest firing first (a takeover keeps the last of each).
_LATEST = text(
    "SELECT key, episode, state, fired_at, notified_at FROM alerts WHERE key IN :keys ORDER BY fired_at, rowid"
).bindparams(bindparam("keys", expanding=True))


class StoredAlert(NamedTuple):
    """The store's latest row of one alert key, as a takeover reads it."""

    episode: str
    state: str
    fired_at: float
    notified_at: float | None


class AlertStorage:
    """Reads and writes the `alerts` and `alert_deliveries` tables of one store (writes go through its writer)."""

    def __init__(self, store: Store) -> None:
        self._store = store

    def firing(self) -> list[Alert]:
        """Return the stored firing alerts, oldest first."""
        rows = self._store.read(f"SELECT {_COLUMNS} FROM alerts WHERE state = :state ORDER BY fired_at", {"state": FIRING})
        return [_alert_of(row) for row in rows]

    def resolved(self, limit: int) -> list[Alert]:
        """Return the latest `limit` resolved alerts, oldest first."""
        rows = self._store.read(
            f"SELECT {_COLUMNS} FROM alerts WHERE state = :state ORDER BY resolved_at DESC LIMIT :n",
            {"state": RESOLVED, "n": limit},
        )
        return [_alert_of(row) for row in reversed(rows)]

    def latest(self, keys: Sequence[str]) -> dict[str, StoredAlert]:
        """Return the store's latest row (the last fired) of each of `keys` it has a row of."""
        self._store.flush(timeout=1.0)  # this process's saves from an earlier lead may still be queued
        latest: dict[str, StoredAlert] = {}
        for start in range(0, len(keys), KEYS_PER_READ):
            chunk = keys[start : start + KEYS_PER_READ]
            for key, episode, state, fired_at, notified_at in self._store.read(_LATEST, {"keys": chunk}):
                latest[key] = StoredAlert(episode, state, fired_at, notified_at)  # later rows replace earlier ones
        return latest

    def save(self, alert: Alert) -> None:
        """Queue `alert`'s row for the store."""
        self._store.submit(
            upsert(self._store.dialect, tables.alerts, ["episode"]),
            {name: getattr(alert, name) for name in _COLUMNS.split(", ")},
        )

    def save_delivery(self, record: DeliveryRecord) -> None:
        """Keep a delivery's outcome in the store (the delivery queue's on_record, from its worker threads)."""
        self._store.submit(
            tables.alert_deliveries.insert(),
            {
                "at": record.at,
                "key": record.key,
                "event": record.event,
                "channel": record.channel,
                "ok": int(record.ok),
                "tries": record.tries,
                "error": record.error,
            },
        )


def _alert_of(row: Iterable[Any]) -> Alert:
    episode, key, rule, subject, tool, state, since, fired_at, resolved_at, value, threshold, message, notified_at = row
    return Alert(key, rule, subject, tool, state, since, value, threshold, message, episode, fired_at, resolved_at, notified_at)
