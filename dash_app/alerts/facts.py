"""What alert rules read besides the tick's snapshot, kept up to date from the recorded events (a listener each):
denials per tool in a sliding window, open checkouts oldest first, and overage borrows since a calendar period began.

Each answers a tick's question in time proportional to what the answer holds, not to the events behind it, so 500
tools times 10 rules cost a few milliseconds per tick.
"""

from __future__ import annotations

import bisect
import threading
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from datetime import UTC, datetime, timedelta

from dash_app.events import BORROW, FAILURE, RETURN, Event


class DenialWindow:
    """Each tool's denial times over the last `keep_seconds`, for "N denials within S seconds" questions."""

    def __init__(self, keep_seconds: float) -> None:
        self.keep_seconds = keep_seconds
        self._times: dict[str, deque[float]] = {}
        self._lock = threading.Lock()

    def on_events(self, events: Iterable[Event]) -> None:
        """Note the denials among recorded events (an EventRecorder listener)."""
        with self._lock:
            for event in events:
                if event.kind == FAILURE and event.tool is not None:
                    times = self._times.setdefault(event.tool, deque())
                    if not times or event.ts >= times[-1]:
                        times.append(event.ts)
                    else:  # a late event (a log read behind): keep the times in order
                        ordered = list(times)
                        bisect.insort(ordered, event.ts)
                        self._times[event.tool] = deque(ordered)

    def load(self, denials: Iterable[tuple[float, str]]) -> None:
        """Take the stored denials (ts, tool) in time order, so a restart does not forget those of the window."""
        with self._lock:
            for ts, tool in denials:
                self._times.setdefault(tool, deque()).append(ts)

    def counts_since(self, since: float, now: float) -> dict[str, int]:
        """Return {tool: denials at or after `since`} for every tool that has any; forget what is older than kept."""
        horizon = now - self.keep_seconds
        out: dict[str, int] = {}
        with self._lock:
            for tool in list(self._times):
                times = self._times[tool]
                while times and times[0] < horizon:
                    times.popleft()
                if not times:
                    del self._times[tool]
                    continue
                if times[-1] >= since:
                    out[tool] = len(times) - bisect.bisect_left(times, since)
        return out


class OpenCheckouts:
    """Open borrows in order of their start, for "held longer than S" questions (one alert per checkout)."""

    def __init__(self, borrows: Iterable[tuple[float, str, str, str]] = ()) -> None:
        # (borrowed_at, id, tool, user), sorted; returned ones are dropped when a scan meets them.
        self._sorted: list[tuple[float, str, str, str]] = sorted(borrows)
        self._open = {entry[1] for entry in self._sorted}
        self._lock = threading.Lock()

    def on_events(self, events: Iterable[Event]) -> None:
        """Note borrows and returns among recorded events (an EventRecorder listener)."""
        with self._lock:
            for event in events:
                if event.kind == BORROW and event.borrow_id is not None:
                    entry = (float(event.ts), event.borrow_id, event.tool or "", event.user or "")
                    if not self._sorted or entry >= self._sorted[-1]:
                        self._sorted.append(entry)
                    else:
                        bisect.insort(self._sorted, entry)
                    self._open.add(event.borrow_id)
                elif event.kind == RETURN and event.borrow_id is not None:
                    self._open.discard(event.borrow_id)
            if len(self._sorted) > 2 * len(self._open) + 64:
                # Mostly returned entries behind an old open one: keep the list the size of what is open.
                self._sorted = [entry for entry in self._sorted if entry[1] in self._open]

    def started_before(self, cutoff: float) -> Iterator[tuple[float, str, str, str]]:
        """Yield the open checkouts that started before `cutoff`, oldest first."""
        with self._lock:
            found = []
            for entry in self._sorted:
                if entry[0] >= cutoff:
                    break
                if entry[1] in self._open:
                    found.append(entry)
        yield from found


def period_start(period: str, now: float) -> float:
    """Return the start of the calendar day, week (Monday) or month holding `now`, in UTC."""
    moment = datetime.fromtimestamp(now, UTC)
    day = moment.replace(hour=0, minute=0, second=0, microsecond=0)
    if period == "day":
        return day.timestamp()
    if period == "week":
        return (day - timedelta(days=day.weekday())).timestamp()
    return day.replace(day=1).timestamp()


class OverageLedger:
    """Overage borrows per tool since the current day, week and month began (UTC), for overage-cost rules."""

    def __init__(self, periods: Iterable[str], counts_since: Callable[[float], dict[str, int]], now: float) -> None:
        # counts_since(start) reads the stored overage borrows since `start` per tool: the start of each period.
        self._counts_since = counts_since
        self._periods: dict[str, tuple[float, dict[str, int]]] = {}
        self._lock = threading.Lock()
        for period in set(periods):
            start = period_start(period, now)
            self._periods[period] = (start, dict(counts_since(start)))

    def on_events(self, events: Iterable[Event]) -> None:
        """Count the overage borrows among recorded events (an EventRecorder listener)."""
        with self._lock:
            for event in events:
                if event.kind == BORROW and event.is_overage and event.tool is not None:
                    for start, counts in self._periods.values():
                        if event.ts >= start:
                            counts[event.tool] = counts.get(event.tool, 0) + 1

    def counts(self, period: str, now: float) -> dict[str, int]:
        """Return {tool: overage borrows} since `period` began; a new period starts from nothing."""
        with self._lock:
            start, counts = self._periods[period]
            if period_start(period, now) != start:
                # A new period: what the store holds since it began (borrows recorded since the rollover included).
                start = period_start(period, now)
                counts = dict(self._counts_since(start))
                self._periods[period] = (start, counts)
            return dict(counts)
