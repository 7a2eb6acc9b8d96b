"""Events held as NumPy columns, appended as they come: the data of the benchmarks' vectorised baselines."""

import threading
from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np
import numpy.typing as npt

from dash_app.events import BORROW, RETURN, Event
from dash_app.testing.traffic import TrafficEvent

Column = npt.NDArray[Any]

# The columns of each kind of event; names (tools, users, reasons) are held as codes into the lists beside them.
KINDS: dict[str, dict[str, type]] = {
    "borrow": {"ts": np.float64, "tool": np.int64, "user": np.int64, "overage": np.bool_},
    "return": {"ts": np.float64},
    "failure": {"ts": np.float64, "tool": np.int64, "user": np.int64, "reason": np.int64},
}


class Names:
    """Distinct names in the order first seen, and each one's code."""

    def __init__(self, names: Iterable[str] = ()) -> None:
        self.names: list[str] = []
        self.codes: dict[str, int] = {}
        for name in names:
            self.code(name)

    def code(self, name: str) -> int:
        """Return the code of `name`, giving it the next one when it is new."""
        code = self.codes.get(name)
        if code is None:
            code = self.codes[name] = len(self.names)
            self.names.append(name)
        return code


class EventColumns:
    """Every event as NumPy columns per kind, in time order, grown by doubling; windows are found by binary search."""

    def __init__(self, tools: Iterable[str] = ()) -> None:
        self.tools, self.users, self.reasons = Names(tools), Names(), Names()
        self.size = dict.fromkeys(KINDS, 0)
        self.data: dict[str, dict[str, Column]] = {
            kind: {name: np.zeros(1024, dtype) for name, dtype in columns.items()} for kind, columns in KINDS.items()
        }
        self.lock = threading.Lock()  # appends may come from one thread while another reads

    def _append(self, kind: str, row: dict[str, Any]) -> None:
        with self.lock:
            n = self.size[kind]
            columns = self.data[kind]
            if n == len(columns["ts"]):
                for name, column in columns.items():
                    columns[name] = np.concatenate((column, np.zeros(len(column), column.dtype)))
            for name, value in row.items():
                columns[name][n] = value
            self.size[kind] = n + 1

    def borrow(self, ts: float, tool: str, user: str, is_overage: bool) -> None:
        """Add a granted borrow."""
        self._append("borrow", {"ts": ts, "tool": self.tools.code(tool), "user": self.users.code(user), "overage": is_overage})

    def returned(self, ts: float) -> None:
        """Add a return."""
        self._append("return", {"ts": ts})

    def failure(self, ts: float, tool: str, user: str, reason: str) -> None:
        """Add a failed borrow."""
        row = {"ts": ts, "tool": self.tools.code(tool), "user": self.users.code(user), "reason": self.reasons.code(reason)}
        self._append("failure", row)

    def on_events(self, events: Sequence[Event]) -> None:
        """Add what a recorder records: a listener (EventRecorder.add_listener) keeps the columns up to date."""
        for event in events:
            if event.kind == BORROW:
                self.borrow(event.ts, event.tool or "", event.user or "", bool(event.is_overage))
            elif event.kind == RETURN:
                self.returned(event.ts)
            else:
                self.failure(event.ts, event.tool or "", event.user or "", event.reason or "")

    def feed(self, events: Iterable[TrafficEvent]) -> None:
        """Add the traffic generator's events, as `feed` adds them to a buffer."""
        for ts, kind, args in events:
            if kind == "borrow":
                tool, user, is_overage, _borrow_id = args
                self.borrow(ts, tool, user, is_overage)
            elif kind == "return":
                self.returned(ts)
            else:
                tool, user, reason = args
                self.failure(ts, tool, user, reason)

    def window(self, kind: str, start: float, end: float) -> dict[str, Column]:
        """Return the columns of `kind` for the events at times in [start, end) (views, not copies)."""
        with self.lock:
            n = self.size[kind]
            columns = dict(self.data[kind])
        lo, hi = np.searchsorted(columns["ts"][:n], (start, end))
        return {name: column[lo:hi] for name, column in columns.items()}
