"""The objects one running app shares between its routes, callbacks and background threads."""

import gc
import threading
from dataclasses import dataclass, field


@dataclass
class AppState:
    """Config, buffer and background services of one app, reachable as server.extensions['dash_app']."""

    config: object
    buffer: object
    recorder: object = None
    pool: object = None
    store: object = None
    history: object = None
    metrics_registry: object = None
    stream: object = None
    services: list = field(default_factory=list)
    _stopped: threading.Event = field(default_factory=threading.Event)

    def stats_summary(self):
        """Return the buffer's stats, plus whether writes reach SQLite right now."""
        stats = self.buffer.get_stats_summary()
        stats["persisted"] = self.store.persisted if self.store is not None else False
        return stats

    def start(self):
        """Start every background service (demo traffic, stream ticker, writers)."""
        for service in self.services:
            service.start()
        # A restored or backfilled buffer is millions of long-lived objects; a full cyclic-GC pass over them takes
        # ~90 ms and would land on some request. Freeze what exists now so collections skip it.
        gc.collect()
        gc.freeze()

    def stop(self):
        """Stop the background services, newest first; safe to call twice."""
        if self._stopped.is_set():
            return
        self._stopped.set()
        for service in reversed(self.services):
            service.stop()
        gc.unfreeze()  # this app's objects may be garbage now; let the collector see them again


def get_state(app_or_server):
    """Return the AppState of a Dash app or its Flask server."""
    server = getattr(app_or_server, "server", app_or_server)
    return server.extensions["dash_app"]
