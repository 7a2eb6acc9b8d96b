"""How each source of events is doing: one record type for every kind, listed by GET /sources."""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from typing import Any

from dash_app.timeutil import iso_utc

UP, DOWN, CATCHING_UP = "up", "down", "catching_up"
COUNTERS = ("polls", "borrows", "returns", "denials", "malformed")


@dataclass
class SourceHealth:
    """One source's state, the time of its last success, its last error, and what it has counted."""

    kind: str  # "flexlm", "lmstat", "rlmstat", "api", "demo"
    name: str  # the log path, PORT@HOST, ...
    state: str = UP
    last_ok: float | None = None
    last_error: str | None = None
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

    def failed(self, at: float, error: str) -> None:
        """Note a failure at `at`: the source is down since its first failure in a row."""
        with self._lock:
            if self.state != DOWN:
                self.down_since = at
            self.state, self.last_error = DOWN, error

    def as_dict(self) -> dict[str, Any]:
        """Return the JSON shape GET /sources lists."""
        with self._lock:
            return {
                "kind": self.kind,
                "name": self.name,
                "state": self.state,
                "last_ok": iso_utc(self.last_ok) if self.last_ok is not None else None,
                "last_error": self.last_error,
                "down_since": iso_utc(self.down_since) if self.down_since is not None else None,
                "counters": dict(self.counters),
                **self.extra,
            }
