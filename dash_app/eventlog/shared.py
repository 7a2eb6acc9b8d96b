"""One process's parts on the shared log (--redis), as the app reads them to report on it."""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import redis

from dash_app.eventlog.connection import Keys
from dash_app.eventlog.follower import LogFollower
from dash_app.eventlog.lease import Leadership
from dash_app.eventlog.recovery import Recovery
from dash_app.store.database import entry_key

if TYPE_CHECKING:
    from dash_app.eventlog.shared_pool import SharedLicensePool
    from dash_app.services import Service
    from dash_app.store.database import Store


def no_sources(services: Mapping[str, Service]) -> list[dict[str, Any]]:
    """Return no source entries: a process whose leader runs no sources."""
    return []


@dataclass
class SharedLog:
    """The parts of one process on the shared log: what the app reads to report on it."""

    client: redis.Redis
    keys: Keys
    pool: SharedLicensePool
    follower: LogFollower
    leadership: Leadership
    # The leader's source entries, as last shared (the others show these); SideStateSharer fills this list in place.
    sources: list[dict[str, Any]]
    # The entries of the leader's sources (their health), given the services it runs: shared with the others.
    describe_sources: Callable[[Mapping[str, Service]], list[dict[str, Any]]] = no_sources
    # Notices that Redis lost data and rebuilds the pool (build_shared gives it).
    recovery: Recovery | None = None

    def healthy(self) -> bool:
        """True while this process reads the log."""
        return self.follower.connected

    def wait_persisted(self, store: Store, timeout: float) -> bool:
        """Block until `store` holds every entry this process has applied or added (whoever writes it); True when so."""
        # Its own last entries may not have reached its follower yet.
        wanted = max(entry_key(self.follower.last_id), entry_key(self.pool.last_sent))
        deadline = time.monotonic() + timeout
        while entry_key(store.log_position(self.keys.events) or "0-0") < wanted:
            if time.monotonic() >= deadline:
                return False
            time.sleep(0.05)
        return True

    def status(self) -> dict[str, Any]:
        """Return the shared log's state for /healthz and the stats."""
        return {
            "redis": "up" if self.follower.connected else "down",
            "pid": os.getpid(),
            "leader": self.leadership.leading,
            "last_entry": self.follower.last_id,
            "detail": self.follower.last_error,
            "down_since": self.follower.down_since,
        }
