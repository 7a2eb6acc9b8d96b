"""How each source of events is doing: one record type for every kind, listed by GET /sources."""

from __future__ import annotations

import re
import threading
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from dash_app.state import DEMO, FLEXLM, POLLER
from dash_app.timeutil import iso_utc

if TYPE_CHECKING:
    from dash_app.eventlog.setup import SharedLog
    from dash_app.state import AppState

UP, DOWN, CATCHING_UP = "up", "down", "catching_up"
COUNTERS = ("polls", "borrows", "returns", "denials", "malformed")

# An error's kind is a short phrase of ours that quotes nothing a source printed, so every reader and every alert
# recipient may be told it; its detail (a poll's last output line may be a checkout line: user and client host) is not.
TIMEOUT, CANNOT_RUN, CRASHED = "timeout", "cannot run", "crashed"  # a poll's; and exit_status(N)
OUTPUT_UNREADABLE, SERVER_DOWN = "output unreadable", "server down"  # a poll's answer: no report, or one saying so
CANNOT_OPEN, NOT_A_FILE, READING_FAILED = "cannot open", "not a regular file", "reading failed"  # a FlexLM log's
ERROR_KINDS = frozenset({TIMEOUT, CANNOT_RUN, OUTPUT_UNREADABLE, SERVER_DOWN, CRASHED, CANNOT_OPEN, NOT_A_FILE, READING_FAILED})
_EXIT_STATUS = re.compile(r"exit status -?\d+")


def exit_status(code: int) -> str:
    """Return the error kind of a command that ended with exit status `code`."""
    return f"exit status {code}"


def is_error_kind(text: str) -> bool:
    """True when `text` is one of our error kinds, not a source's own words."""
    return text in ERROR_KINDS or _EXIT_STATUS.fullmatch(text) is not None


def is_server_name(name: str | None) -> bool:
    """True when a source's name is a license server's PORT@HOST (a FlexLM log's name is its path, admins' only)."""
    port, at, host = (name or "").partition("@")
    return bool(at) and port.isdigit() and bool(host)


@dataclass(frozen=True)
class SourceError:
    """What went wrong with a source: its kind, the license server (None for a log file), and the source's own words."""

    kind: str  # one of ERROR_KINDS or an exit_status()
    server: str | None = None
    detail: str = ""  # one line as the source said it: shown to admins of real names only

    @property
    def text(self) -> str:
        """Return the whole one-line error: its kind, then its detail."""
        return f"{self.kind}: {self.detail}" if self.detail else self.kind

    def as_dict(self) -> dict[str, Any]:
        """Return the JSON shape of GET /sources' `error`."""
        return {"kind": self.kind, "server": self.server, "detail": self.detail}


@dataclass
class SourceHealth:
    """One source's state, the time of its last success, its last error, and what it has counted."""

    kind: str  # "flexlm", "lmstat", "rlmstat", "api", "demo"
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
    return entries


def list_sources(state: AppState) -> list[dict[str, Any]]:
    """Return the JSON entries of every source the app has (GET /sources)."""
    shared = state.shared
    if shared is not None and not shared.leadership.leading:
        # The sources run in the lease holder (--redis): show what it last said of them, beside this process's API.
        return [state.api_source.as_dict(), *shared.sources]
    return sources_of(state.api_source, state.running_services())


def down_sources(state: AppState) -> list[dict[str, Any]]:
    """Return the entries of the sources that are down now."""
    return down_of(state.api_source, state.shared, state.running_services())


def down_of(api_source: SourceHealth, shared: SharedLog | None, services: Mapping[str, Any]) -> list[dict[str, Any]]:
    """Return the down sources among `services`, or with --redis in a process without the lease, the leader's."""
    if shared is not None and not shared.leadership.leading:
        return [entry for entry in shared.sources if entry["state"] == DOWN]
    return sources_of(api_source, services, only_down=True)
