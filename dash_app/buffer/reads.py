"""The buffer's reads of raw events and minute bins: recent events, rates, counts, buckets, flows and series stamps."""

import math
from bisect import bisect_left
from collections.abc import Collection
from typing import Any

from dash_app.buffer.ingest import Ingest
from dash_app.buffer.rows import Bucket, MinuteFlow, WindowCounts
from dash_app.events import BORROW, FAILURE, RETURN, Event, public_event
from dash_app.timeutil import first_minute_at_or_after, iso_utc

# Up to this many series, failure_users reads only their minutes with failures; more, the window's failures once.
FEW_SERIES = 8


class Reads(Ingest):
    """Reads of the retained events and their bins; each sees the state after pending adds, retention and caps."""

    @property
    def version(self) -> int:
        """A number that changes whenever the retained events change."""
        with self._lock:
            self._settle(self.clock())
            return self._version

    def get_recent_events(
        self, seconds: float = 60, limit: int | None = None, tool: str | None = None
    ) -> dict[str, list[dict[str, Any]]]:
        """Return the events of the last `seconds`, oldest first, as the stream shows them (see recent_raw)."""
        borrows, returns, failures = self.recent_raw(seconds, limit, tool)
        return {
            "borrows": [public_event(e) for e in borrows],
            "returns": [public_event(e) for e in returns],
            "failures": [public_event(e) for e in failures],
        }

    def recent_raw(
        self, seconds: float = 60, limit: int | None = None, tool: str | None = None
    ) -> tuple[list[Event], list[Event], list[Event]]:
        """Return the borrows, returns and failures of the last `seconds`, oldest first; `limit` keeps the newest of each.

        With `tool`, only the events of that name or series (and `limit` counts those): a series that collects
        several names, such as the folded unknown tools, gives the events of all of them, each with its exact name.
        """
        with self._lock:
            now = self.clock()
            self._settle(now)
            cutoff = now - seconds
            logs = (self._borrows, self._returns, self._failures)
            if tool is None:
                borrows, returns, failures = (log.since(cutoff, limit) for log in logs)
            else:
                # Only a series that collects other names needs each event's name mapped; the rest compare as is.
                series_of = self._key if tool in self._merged else None
                borrows, returns, failures = (log.since_of(cutoff, tool, limit, series_of) for log in logs)
        new = tuple.__new__  # a stored event is a plain tuple in Event's field order
        return (
            [new(Event, e) for e in borrows],
            [new(Event, e) for e in returns],
            [new(Event, e) for e in failures],
        )

    def get_rates(self, seconds: float = 60) -> dict[str, float]:
        """Return per-minute counts over the last `seconds` and the overage share of those borrows."""
        with self._lock:
            now = self.clock()
            self._settle(now)
            cutoff = now - seconds
            borrows = self._borrows.since(cutoff)
            returns = len(self._returns.since(cutoff))
            failures = len(self._failures.since(cutoff))
        per_minute = 60.0 / seconds
        overage = sum(1 for e in borrows if e[5])  # is_overage
        return {
            "borrow_per_min": round(len(borrows) * per_minute, 1),
            "return_per_min": round(returns * per_minute, 1),
            "failure_per_min": round(failures * per_minute, 1),
            "overage_percent": round(overage / len(borrows) * 100, 1) if borrows else 0,
        }

    def get_stats_summary(self) -> dict[str, Any]:
        """Return counts of the retained events and the time of the oldest one."""
        with self._lock:
            self._settle(self.clock())
            borrows, returns, failures = len(self._borrows), len(self._returns), len(self._failures)
            fronts = [e[0] for e in (self._borrows.oldest(), self._returns.oldest(), self._failures.oldest()) if e]
        return {
            "total_events": borrows + returns + failures,
            "borrow_count": borrows,
            "return_count": returns,
            "failure_count": failures,
            "retention_hours": self.retention_seconds / 3600,
            "oldest_event": iso_utc(min(fronts)) if fronts else None,
        }

    def aggregate_tool_metrics(self, window_seconds: float = 60, tools: Collection[str] | None = None) -> dict[str, list[Bucket]]:
        """Return `{tool: [bucket, ...]}` for the minutes that start at or after now - window (of `tools` only, when given)."""
        with self._lock:
            now = self.clock()
            self._settle(now)
            window = min(window_seconds, self.retention_seconds)
            first = first_minute_at_or_after(now - window)
            if tools is not None:
                picked = {tool: self._buckets_from(tool, first) for tool in tools if tool in self._minutes}
                return {tool: buckets for tool, buckets in picked.items() if buckets}
            if self._aggregate_cache_version != self._version:
                self._aggregate_cache = {}
                self._aggregate_cache_version = self._version
            key = (window, first)
            cached = self._aggregate_cache.get(key)
            if cached is None:
                if len(self._aggregate_cache) >= 16:
                    self._aggregate_cache.clear()  # an idle buffer's windows slide a minute at a time; keep few
                cached = {}
                for tool in sorted(self._minutes):
                    buckets = self._buckets_from(tool, first)
                    if buckets:
                        cached[tool] = buckets
                self._aggregate_cache[key] = cached
            return {tool: list(buckets) for tool, buckets in cached.items()}

    def get_tool_history(self, tool: str, window_seconds: float = 1800) -> list[Bucket]:
        """Return one tool's buckets for the minutes that start at or after now - window."""
        with self._lock:
            now = self.clock()
            self._settle(now)
            window = min(window_seconds, self.retention_seconds)
            if tool not in self._minutes:
                return []
            return self._buckets_from(tool, first_minute_at_or_after(now - window))

    def get_minute_flows(self, window_seconds: float = 1800, tools: Collection[str] | None = None) -> dict[str, list[MinuteFlow]]:
        """Return `{tool: [MinuteFlow, ...]}` including minutes with only returns or failures (of `tools` only, when given)."""
        with self._lock:
            now = self.clock()
            self._settle(now)
            first = first_minute_at_or_after(now - min(window_seconds, self.retention_seconds))
            flows: dict[str, list[MinuteFlow]] = {}
            wanted = self._minutes.items() if tools is None else ((t, self._minutes[t]) for t in tools if t in self._minutes)
            for tool, minutes in wanted:
                bins = self._bins[tool]
                rows = [
                    MinuteFlow(m * 60, bins[m].count, bins[m].overage, bins[m].returns, dict(bins[m].failures))
                    for m in minutes[bisect_left(minutes, first) :]
                ]
                if rows:
                    flows[tool] = rows
            return flows

    def failure_users(self, window_seconds: float, tools: Collection[str]) -> dict[str, list[tuple[float, str]]]:
        """Return `{series: [(ts, user), ...]}` of the failures of `tools` in the window's minutes, oldest first.

        A series with no failures there is absent; a failure without a user has "". A few series are read minute by
        minute (only the minutes their bins say had failures); many, in one pass over the window's failures.
        """
        with self._lock:
            now = self.clock()
            self._settle(now)
            first = first_minute_at_or_after(now - min(window_seconds, self.retention_seconds))
            wanted = {tool: self._minutes[tool] for tool in tools if tool in self._minutes}
            found: dict[str, list[tuple[float, str]]] = {}
            if len(wanted) > FEW_SERIES:
                events = self._failures.in_range(first * 60, math.inf)
                self._collect_failures(events, wanted, found)
                return found
            for tool, minutes in wanted.items():
                bins = self._bins[tool]
                for m in minutes[bisect_left(minutes, first) :]:
                    if bins[m].failures:
                        self._collect_failures(self._failures.in_range(m * 60, m * 60 + 60), {tool: minutes}, found)
            return found

    def _collect_failures(self, events: list[Any], wanted: Collection[str], found: dict[str, list[tuple[float, str]]]) -> None:
        """Add the (ts, user) of each of `events` whose series is one of `wanted` to `found`, in their order."""
        # Only a series that collects other names needs each event's name mapped; the rest compare as is.
        mapped = self._key if any(series in self._merged for series in wanted) else None
        for event in events:
            name = event[2]
            series = name if mapped is None or (name in wanted and name not in self._merged) else mapped(name)
            if series in wanted:
                found.setdefault(series, []).append((event[0], event[3] or ""))

    def series_stamps(self) -> dict[str, int]:
        """Return {series: stamp} of every series with data; a series' stamp changes whenever any of its bins does.

        Expired events count as changes: retention is applied first, as on every read.
        """
        with self._lock:
            self._settle(self.clock())
            stamps = self._stamps
            return {tool: stamps.get(tool, 0) for tool in self._minutes}

    def failure_stamps(self) -> dict[str, int]:
        """Return {series: stamp} of every series with failures; it changes whenever one of its failures comes or goes."""
        with self._lock:
            self._settle(self.clock())
            stamps = self._failure_stamps
            for gone in [key for key in stamps if key not in self._minutes]:
                del stamps[gone]  # a series with no bins left has no failures: its entry goes with it
            return dict(stamps)

    def window_counts(self, window_seconds: float, tools: Collection[str]) -> dict[str, WindowCounts]:
        """Return `{series: WindowCounts}` of `tools` over the window's minutes (a series with no bins there is absent)."""
        with self._lock:
            now = self.clock()
            self._settle(now)
            first = first_minute_at_or_after(now - min(window_seconds, self.retention_seconds))
            found: dict[str, WindowCounts] = {}
            for tool in tools:
                minutes = self._minutes.get(tool)
                if not minutes:
                    continue
                bins = self._bins[tool]
                borrows = overage = returns = failures = 0
                failing: list[MinuteFlow] = []
                for m in minutes[bisect_left(minutes, first) :]:
                    b = bins[m]
                    borrows += b.count
                    overage += b.overage
                    returns += b.returns
                    if b.failures:
                        failures += sum(b.failures.values())
                        failing.append(MinuteFlow(m * 60, 0, 0, 0, dict(b.failures)))
                if borrows or returns or failures:
                    found[tool] = WindowCounts(borrows, overage, returns, failures, failing)
            return found

    def caps(self) -> dict[str, int]:
        """Return the cap of each event kind."""
        return {BORROW: self._borrows.cap, RETURN: self._returns.cap, FAILURE: self._failures.cap}
