"""The objects one running app shares between its routes, callbacks and background threads."""

from __future__ import annotations

import gc
import threading
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from flask import Flask, current_app

from dash_app.pressure import TRUE_DENIAL_MINUTES

# The cyclic garbage collector's thresholds in a process serving the app (AppState.start says why).
GC_THRESHOLDS = (20_000, 10, 10)
# The started apps of this process (a test's may be several), and the thresholds from before the first started.
_gc_lock = threading.Lock()
_gc_users: set[int] = set()
_gc_before: list[int] = []

if TYPE_CHECKING:  # imported for the annotations only: these modules import nothing from here
    from prometheus_client import CollectorRegistry

    from dash_app.alerts.engine import AlertEngine
    from dash_app.analytics.service import CapacityService
    from dash_app.buffer import RealtimeMetricsBuffer
    from dash_app.directory.service import DirectoryService
    from dash_app.eventlog.shared import SharedLog
    from dash_app.licenses import LicensePool
    from dash_app.recording import EventRecorder
    from dash_app.reports.scheduler import ReportScheduler
    from dash_app.services import Service
    from dash_app.sources.health import SourceHealth
    from dash_app.store import Store
    from dash_app.store.history import HistoryKeeper
    from dash_app.stream import StreamTicker

EXTENSION_KEY = "dash_app"


@dataclass(frozen=True)
class WebSettings:
    """The settings the routes and the page read at request time; the rest of the Config stays with create_app."""

    currency: str
    refresh_ms: int
    retention_seconds: float
    history_days: float
    api_token: str | None = field(repr=False)  # the write token: never in a repr or a log line
    true_denial_minutes: int = TRUE_DENIAL_MINUTES  # a user's denials of a tool within this many minutes count once


@dataclass
class AppState:
    """Everything one app holds, built by build_state and reachable with get_state()."""

    settings: WebSettings
    buffer: RealtimeMetricsBuffer
    recorder: EventRecorder
    pool: LicensePool
    store: Store
    history: HistoryKeeper
    metrics_registry: CollectorRegistry
    stream: StreamTicker
    analytics: CapacityService
    services: dict[str, Service]  # by name (STORE, DEMO, ...), in start order
    api_source: SourceHealth  # the REST API as a source of events: its counters
    alerts: AlertEngine
    directory: DirectoryService  # who belongs where: the file's and the company directory's groups
    shared: SharedLog | None = None  # with --redis: the shared log this process follows
    reports: ReportScheduler | None = None  # with --reports: the scheduled reports' thread (also in `services`)
    _stopped: threading.Event = field(default_factory=threading.Event)

    def service(self, name: str) -> Service | None:
        """Return the service called `name`, or None when this process does not run it (now)."""
        return self.running_services().get(name)

    def running_services(self) -> dict[str, Service]:
        """Return the services this process runs now: its own, and with --redis the leader's while it holds the lease."""
        if self.shared is None:
            return self.services
        return {**self.services, **self.shared.leadership.running}

    def stats_summary(self) -> dict[str, Any]:
        """Return the buffer's stats, plus whether writes reach the database right now."""
        stats = self.buffer.get_stats_summary()
        stats["persisted"] = self.store.persisted
        return stats

    def start(self) -> None:
        """Start every background service (writer, demo traffic, log followers, stream ticker)."""
        for service in self.services.values():
            service.start()
        # A restored or backfilled buffer is millions of long-lived objects; a full cyclic-GC pass over them takes
        # ~90 ms and would land on some request. Freeze what exists now so collections skip it.
        gc.collect()
        gc.freeze()
        # A refresh builds tens of thousands of short-lived containers, nearly all freed by reference counting at once;
        # at the default threshold (700) the collector walks the living ones dozens of times a tick: 1.3 ms of a 14 ms
        # overview refresh at 200 tools on average, 5-15 ms on the ticks that rebuild a chart. At GC_THRESHOLDS it
        # runs a thirtieth as often, for 0.1-0.3 ms a tick, and keeps cyclic garbage to a few thousand objects.
        with _gc_lock:
            if not _gc_users:
                _gc_before[:] = gc.get_threshold()
            _gc_users.add(id(self))
        gc.set_threshold(*GC_THRESHOLDS)

    def stop(self) -> None:
        """Stop the background services, newest first; safe to call twice."""
        if self._stopped.is_set():
            return
        self._stopped.set()
        self.analytics.stop()
        for service in reversed(self.services.values()):
            service.stop()
        gc.unfreeze()  # this app's objects may be garbage now; let the collector see them again
        with _gc_lock:  # the thresholds from before the first of this process's apps started, once the last stops
            if id(self) in _gc_users:
                _gc_users.discard(id(self))
                if not _gc_users:
                    gc.set_threshold(*_gc_before)


def attach_state(server: Flask, state: AppState) -> None:
    """Make `state` the one get_state() returns for `server`'s requests."""
    server.extensions[EXTENSION_KEY] = state


def get_state(app_or_server: Any = None) -> AppState:
    """Return the AppState of a Dash app or its Flask server, or of the app serving the current request."""
    if app_or_server is None:
        return current_app.extensions[EXTENSION_KEY]
    server = getattr(app_or_server, "server", app_or_server)
    return server.extensions[EXTENSION_KEY]
