"""How each source of events is doing: one record type for every kind, listed by GET /sources."""

from __future__ import annotations

import threading
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

from dash_app.services import DEMO, DIRECTORY, FLEXLM, POLLER
from dash_app.sources.errors import SourceError
from dash_app.timeutil import iso_utc

if TYPE_CHECKING:
    from dash_app.eventlog.shared import SharedLog
    from dash_app.services import Service

UP, DOWN, CATCHING_UP, DEGRADED = "up", "down", "catching_up", "degraded"
COUNTERS = ("polls", "borrows", "returns", "denials", "malformed")


@dataclass
class SourceHealth:
    """One source's state, the time of its last success, its last error, and what it has counted."""

    kind: str  # "flexlm", "lmstat", "rlmstat", "lmx", "dsls", "api", "demo"
    name: str  # the log path, PORT@HOST, ...
    state: str = UP
    last_ok: float | None = None
    error: SourceError | None = None
    down_since: float | None = None
    counters: dict[str, int] = field(default_factory=lambda: dict.fromkeys(COUNTERS, 0))
    extra: dict[str, Any] = field(default_factory=dict)  # what a kind adds (a server's features and their expiry)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False, compare=False)

    def count(self, **amounts: int) -> None:
        """Add to the counters."""
        with self._lock:
            for name, amount in amounts.items():
                self.counters[name] = self.counters.get(name, 0) + amount

    def ok(self, at: float) -> None:
        """Note a success at `at`: the source is up."""
        with self._lock:
            self.state, self.last_ok, self.down_since = UP, at, None

    def degraded(self, at: float, error: SourceError) -> None:
        """Note a poll at `at` applied only in part: the source is degraded, `error` says why (it is not down)."""
        with self._lock:
            self.state, self.last_ok, self.down_since, self.error = DEGRADED, at, None, error

    @property
    def last_error(self) -> str | None:
        """Return the last error's whole text, or None."""
        error = self.error
        return error.text if error is not None else None

    def failed(self, at: float, error: SourceError) -> None:
        """Note a failure at `at`: the source is down since its first failure in a row."""
        with self._lock:
            if self.state != DOWN:
                self.down_since = at
            self.state, self.error = DOWN, error

    def as_dict(self) -> dict[str, Any]:
        """Return the JSON shape GET /sources lists."""
        with self._lock:
            return {
                "kind": self.kind,
                "name": self.name,
                "state": self.state,
                "last_ok": iso_utc(self.last_ok) if self.last_ok is not None else None,
                "last_error": self.last_error,
                "error": self.error.as_dict() if self.error is not None else None,
                "down_since": iso_utc(self.down_since) if self.down_since is not None else None,
                "counters": dict(self.counters),
                **self.extra,
            }


def _flexlm(services: Mapping[str, Any]) -> list[dict[str, Any]]:
    follower = services.get(FLEXLM)
    if follower is None:
        return []
    entries = []
    for log in follower.snapshot()["logs"]:
        waiting = log["state"] == "waiting"
        behind = log["size"] is not None and log["offset"] is not None and log["offset"] < log["size"]
        state_name = DOWN if log["state"].startswith("error") or waiting else "catching_up" if behind else UP
        entries.append(
            {
                "kind": "flexlm",
                "name": log["path"],
                "state": state_name,
                "last_ok": log["last_event_at"],
                "last_error": SourceError(**log["error"]).text if log.get("error") else None,
                "error": log.get("error"),
                "down_since": None,
                "counters": {
                    "polls": 0,
                    "borrows": log.get("borrows", 0),
                    "returns": log.get("returns", 0),
                    "denials": log.get("denials", 0),
                    "malformed": log.get("malformed", 0),
                },
            }
        )
    return entries


def sources_of(api_source: SourceHealth, services: Mapping[str, Any], only_down: bool = False) -> list[dict[str, Any]]:
    """Return the JSON entries of every source (the REST API's, and the services that bring events), or the down ones.

    `only_down` skips building the entries of sources that are up: a page refresh and an alert tick want only those,
    and a polled server's entry carries all its features.
    """
    entries = [] if only_down else [api_source.as_dict()]
    if services.get(DEMO) is not None and not only_down:
        entries.append(SourceHealth("demo", "demo traffic").as_dict())
    entries += [entry for entry in _flexlm(services) if not only_down or entry["state"] == DOWN]
    poller = services.get(POLLER)
    if poller is not None:
        entries += [health.as_dict() for health in poller.health() if not only_down or health.state == DOWN]
    return entries + directory_sources(services, only_down)


def directory_sources(services: Mapping[str, Any], only_down: bool = False) -> list[dict[str, Any]]:
    """Return the entries of this process's directory service (every process runs its own), or its down ones."""
    directory = services.get(DIRECTORY)
    if directory is None:
        return []
    return [health.as_dict() for health in directory.health() if not only_down or health.state == DOWN]


class SourcesOwner(Protocol):
    """What holds the sources (AppState): the REST API's record, the shared log, and the services running now."""

    @property
    def api_source(self) -> SourceHealth:
        """The REST API as a source of events."""

    @property
    def shared(self) -> SharedLog | None:
        """With --redis, the shared log this process follows."""

    def running_services(self) -> dict[str, Service]:
        """The services this process runs now."""


def list_sources(state: SourcesOwner) -> list[dict[str, Any]]:
    """Return the JSON entries of every source the app has (GET /sources)."""
    shared = state.shared
    if shared is not None and not shared.leadership.leading:
        # The sources run in the lease holder (--redis): show what it last said of them, beside this process's API.
        return [state.api_source.as_dict(), *shared.sources, *directory_sources(state.running_services())]
    return sources_of(state.api_source, state.running_services())


def down_sources(state: SourcesOwner) -> list[dict[str, Any]]:
    """Return the entries of the sources that are down now."""
    return down_of(state.api_source, state.shared, state.running_services())


def down_of(api_source: SourceHealth, shared: SharedLog | None, services: Mapping[str, Any]) -> list[dict[str, Any]]:
    """Return the down sources among `services`, or with --redis in a process without the lease, the leader's."""
    if shared is not None and not shared.leadership.leading:
        return [entry for entry in shared.sources if entry["state"] == DOWN] + directory_sources(services, only_down=True)
    return sources_of(api_source, services, only_down=True)
