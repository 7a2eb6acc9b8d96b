"""Plain reads of the stored history that need no DataFrame: counts since a time, and the sessions' data version.

Apart from sessions.py so that the serving process, which asks only these, never loads pandas.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from dash_app.store.database import Store


def overage_borrows_since(store: Store, start: float) -> dict[str, int]:
    """Return {tool: overage borrows stored with borrowed_at at or after `start`}."""
    rows = store.read(
        "SELECT tool, COUNT(*) FROM borrows WHERE is_overage = 1 AND borrowed_at >= :start GROUP BY tool", {"start": start}
    )
    return {tool: count for tool, count in rows}


def denial_times_since(store: Store, start: float) -> list[tuple[float, str]]:
    """Return [(ts, tool)] of the stored denials at or after `start`, oldest first."""
    rows = store.read("SELECT ts, tool FROM denials WHERE ts >= :start AND tool IS NOT NULL ORDER BY ts, rowid", {"start": start})
    return [(ts, tool) for ts, tool in rows]


def denials_since(store: Store, start: float) -> list[tuple[float, str, str]]:
    """Return [(ts, tool, user)] of the stored denials at or after `start` (a missing user as "")."""
    rows = store.read('SELECT ts, tool, "user" FROM denials WHERE ts >= :start AND tool IS NOT NULL', {"start": start})
    return [(ts, tool, user or "") for ts, tool, user in rows]


def data_version(store: Store) -> int:
    """Return a number that changes whenever the store's sessions or denials do (a cache key; never reused).

    It moves after every committed write of events or checkout details, and after a prune that removed any.
    """
    return store.sessions_version
