"""Dropping the oldest events, past retention or past a cap, and undoing them in the minute bins."""

import math
from bisect import bisect_left
from typing import Any

from dash_app.buffer.core import Bin
from dash_app.buffer.event_log import EventLog, Raw
from dash_app.buffer.minute_bins import MinuteBins
from dash_app.events import BORROW, FAILURE, RETURN


def _uncount_borrow(b: Bin, user: Any, is_overage: bool | None) -> None:
    """Take one borrow by `user` out of a bin's counters."""
    b.count -= 1
    if is_overage:
        b.overage -= 1
    users = b.users
    left = users[user] - 1
    if left:
        users[user] = left
    else:
        del users[user]
    b.bucket = None


class Eviction(MinuteBins):
    """Retention and caps: the oldest events leave their logs and the bins are kept exact."""

    def _trim(self) -> None:
        """Trim every log to its cap."""
        for log in (self._borrows, self._returns, self._failures):
            excess = log.over_cap()
            if excess > 0:
                self._evict(log, excess)

    def _expire(self, now: float) -> None:
        cutoff = now - self.retention_seconds
        if cutoff <= self._oldest_bound:
            return  # nothing retained is older than the bound, so nothing is due
        for log in (self._borrows, self._returns, self._failures):
            n = log.count_before(cutoff)
            if n:
                self._evict(log, n)
        fronts = [e[0] for e in (self._borrows.oldest(), self._returns.oldest(), self._failures.oldest()) if e]
        self._oldest_bound = min(fronts) if fronts else math.inf
        # Minutes before the retention are in no window: their notes would only pile up while nobody reads, so
        # they go, about once an hour (not on every add: the notes can be many).
        gone = int(cutoff // 60)
        if gone >= self._stale_pruned + 60:
            self._stale_pruned = gone
            for key in list(self._stale):
                minutes = {m for m in self._stale[key] if m >= gone}
                if minutes:
                    self._stale[key] = minutes
                else:
                    del self._stale[key]

    def _evict(self, log: EventLog, n: int) -> None:
        """Drop the n oldest events of `log`, keeping the bins exact.

        Every minute before the new oldest event has lost all its events of this kind, so those bins are cleared
        at once; only events of the new oldest event's own minute are undone one by one.
        """
        self._hot.clear()  # bins may go: the batch being added must look its bins up again
        chunk = log.pop_front(n)
        if n < log.bulk:
            for event in chunk:
                self._forget(event)
            return
        front = log.oldest()
        boundary = int(front[0] // 60) if front is not None else math.inf
        split = len(chunk)
        while split and int(chunk[split - 1][0] // 60) >= boundary:
            split -= 1
        if split < len(chunk):
            self._forget_in_minute(log.kind, int(boundary), chunk[split:])  # an int: a minute of an event in `chunk`
        if log.kind == BORROW:
            opened = self._open_borrows
            for event in chunk[:split]:
                if opened.get(event[4]) is event:
                    del opened[event[4]]
        self._clear_before(log.kind, boundary)
        self._version += 1

    def _clear_before(self, kind: str, boundary: float) -> None:
        for tool in list(self._minutes):
            minutes = self._minutes[tool]
            bins = self._bins[tool]
            end = len(minutes) if boundary == math.inf else bisect_left(minutes, boundary)
            if not end:
                continue
            self._stamps[tool] = self._next_stamp()
            for minute in minutes[:end]:
                b = bins[minute]
                if kind == BORROW:
                    if b.count:
                        b.count = b.overage = 0
                        b.users = {}
                        b.bucket = None
                        self._mark(tool, minute)
                elif kind == RETURN:
                    if b.returns:
                        b.returns = 0
                        self._mark(tool, minute)
                elif b.failures:
                    b.failures = {}
                    self._failure_stamps[tool] = self._stamps[tool]
                if b.is_empty():
                    del bins[minute]
            minutes[:end] = [m for m in minutes[:end] if m in bins]
            if not minutes:
                del self._minutes[tool]
                del self._bins[tool]

    def _forget_in_minute(self, kind: str, minute: int, events: list[Raw]) -> None:
        """Undo events that all fall in `minute`, settling each touched bin once rather than once per event."""
        if kind != BORROW and kind != RETURN:
            for event in events:
                self._forget(event)
            return
        bins = self._bins
        opened = self._open_borrows
        touched: dict[str, Bin] = {}
        for event in events:
            key = self._key(event[2])
            if key is None:
                continue  # a return of an unknown borrow is in no bin
            b = touched.get(key)
            if b is None:
                b = touched[key] = bins[key][minute]
            if kind == BORROW:
                if opened.get(event[4]) is event:
                    del opened[event[4]]
                _uncount_borrow(b, event[3], event[5])
            else:
                b.returns -= 1
        for key, b in touched.items():
            self._stamps[key] = self._next_stamp()
            self._mark(key, minute)
            self._drop_bin_if_empty(key, minute * 60, b)

    def _forget(self, event: Raw) -> None:
        """Undo one event in its bin."""
        self._version += 1
        ts, kind, tool = event[:3]
        if kind == BORROW and self._open_borrows.get(event[4]) is event:
            del self._open_borrows[event[4]]
        key = self._key(tool)
        if key is None:
            return
        b = self._existing_bin(key, ts)
        if kind == BORROW:
            _uncount_borrow(b, event[3], event[5])
        elif kind == RETURN:
            b.returns -= 1
        else:
            reason: Any = event[6]  # a failure's reason is a name
            left = b.failures[reason] - 1
            if left:
                b.failures[reason] = left
            else:
                del b.failures[reason]
        stamp = self._stamps[key] = self._next_stamp()
        if kind == FAILURE:
            self._failure_stamps[key] = stamp
        if kind in (BORROW, RETURN):
            self._mark(key, int(ts // 60))
        self._drop_bin_if_empty(key, ts, b)
