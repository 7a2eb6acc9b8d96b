"""The server-side buffer of raw license events and their per-tool minute bins."""

import itertools
import math
import threading
import time
from bisect import bisect_left, insort_right
from collections.abc import Callable, Collection, Iterable, Mapping
from datetime import datetime
from operator import itemgetter
from typing import Any, NamedTuple, TypedDict

from dash_app.events import BORROW, FAILURE, RETURN, Event, borrow_event, failure_event, public_event, return_event
from dash_app.timeutil import MAX_CLOCK_SKEW_SECONDS, first_minute_at_or_after, iso_minute, iso_utc, to_epoch

DEFAULT_RETENTION_SECONDS = 21600
DEFAULT_MAX_BORROWS = 100_000
DEFAULT_MAX_RETURNS = 100_000
DEFAULT_MAX_FAILURES = 10_000
# Evictions of at least this many events clear whole minutes at once instead of undoing event by event.
BULK_EVICTION = 32
# Sizes at which the name caches start afresh: they only save memory and time, so forgetting is always safe,
# and a flood of distinct names (typos, scans) must not grow them without bound.
INTERN_LIMIT = 100_000
TOOL_KEY_LIMIT = 4096

# Raw events are Events (dash_app.events) with a float ts and shared name strings, sorted by ts.
_TS = itemgetter(0)
_new_event = tuple.__new__  # builds an Event from a tuple without NamedTuple.__new__'s argument handling (hot path)


class Bucket(TypedDict):
    """One tool's borrows in one minute, as readers get them: JSON-ready, shared, and never to be mutated."""

    timestamp: str  # the minute's start, `YYYY-MM-DDTHH:MM:00Z`
    count: int
    users: list[str]  # sorted, distinct
    overage_count: int


class MinuteFlow(NamedTuple):
    """One tool's activity in one minute; `minute` is the minute's start in epoch seconds."""

    minute: int
    borrows: int
    overage: int
    returns: int
    failures: dict[str, int]  # reason -> count


class InUseBin(NamedTuple):
    """Licenses of one tool in use during one minute; `minute` is the minute's start in epoch seconds."""

    minute: int
    peak: int  # the most in use at any instant of the minute, its start level included
    average: float  # the time-weighted mean over the minute (the current minute: over its part up to now)
    end: int  # in use at the minute's end, after all of its events


class _Bin:
    """Counters for one tool in one minute, with its bucket dict built lazily and then reused.

    The level figures describe the minute's net borrows relative to its start level (0): `prior` and `low` are the
    highest and lowest level reached at the instants before `last` (the latest event's time), and `moment` is the sum
    of each borrow's (+1) or return's (-1) offset into the minute, so the minute's area is net * 60 - moment.
    """

    __slots__ = ("count", "overage", "users", "returns", "failures", "bucket", "last", "prior", "low", "moment")

    count: int
    overage: int
    users: dict[str, int]  # user -> borrows
    returns: int
    failures: dict[str, int]  # reason -> count
    bucket: Bucket | None
    last: float
    prior: int
    low: int
    moment: float

    def __init__(self) -> None:
        self.count = 0
        self.overage = 0
        self.users = {}
        self.returns = 0
        self.failures = {}
        self.bucket = None
        self.last = -math.inf
        self.prior = 0
        self.low = 0
        self.moment = 0.0

    def is_empty(self) -> bool:
        return not (self.count or self.returns or self.failures)


def _refigure(b: _Bin, moves: list[tuple[float, int]]) -> None:
    """Set a bin's level figures from its borrows (+1) and returns (-1), given in time order."""
    level = prior = low = 0
    last = -math.inf
    moment = 0.0
    for ts, step in moves:
        if ts != last:
            # The level after the previous instant is final: a new instant begins.
            if level > prior:
                prior = level
            elif level < low:
                low = level
            last = ts
        level += step
        moment += step * (ts % 60)
    b.last, b.prior, b.low, b.moment = last, prior, low, moment


class _EventLog:
    """Events of one kind, sorted by time, with a moving head so eviction is O(1)."""

    __slots__ = ("kind", "items", "head", "cap", "limit")

    def __init__(self, kind: str, cap: int) -> None:
        self.kind = kind
        self.items: list[Event] = []
        self.head = 0
        self.cap = cap
        # Adds may run past the cap by a little; the excess is evicted in one go, and before every read.
        self.limit = cap + max(BULK_EVICTION, cap // 64)

    def over_cap(self) -> int:
        return len(self.items) - self.head - self.cap

    def __len__(self) -> int:
        return len(self.items) - self.head

    def insert(self, event: Event) -> None:
        items = self.items
        if not items or event[0] >= items[-1][0]:
            items.append(event)
        else:
            insort_right(items, event, lo=self.head, key=_TS)

    def oldest(self) -> Event | None:
        return self.items[self.head] if self.head < len(self.items) else None

    def pop_front(self, n: int) -> list[Event]:
        """Remove and return the n oldest events."""
        start = self.head
        chunk = self.items[start : start + n]
        self.head = start + n
        # Compact now and then so the list does not grow without bound.
        if self.head >= 4096 and self.head * 2 >= len(self.items):
            del self.items[: self.head]
            self.head = 0
        return chunk

    def count_before(self, cutoff: float) -> int:
        """Return how many events are older than `cutoff`."""
        return bisect_left(self.items, cutoff, lo=self.head, key=_TS) - self.head

    def since(self, cutoff: float, limit: int | None = None) -> list[Event]:
        start = bisect_left(self.items, cutoff, lo=self.head, key=_TS)
        if limit is not None:
            start = max(start, len(self.items) - limit)
        return self.items[start:]

    def since_of(
        self,
        cutoff: float,
        tool: str,
        limit: int | None = None,
        series_of: Callable[[str], str | None] | None = None,
    ) -> list[Event]:
        """Like since(), for one tool or (given `series_of`) series: scans back from the newest; a quiet one costs its window."""
        start = bisect_left(self.items, cutoff, lo=self.head, key=_TS)
        found: list[Event] = []
        items = self.items
        for i in range(len(items) - 1, start - 1, -1):
            event = items[i]
            name = event.tool
            if name == tool or (series_of is not None and name is not None and series_of(name) == tool):
                found.append(event)
                if limit is not None and len(found) >= limit:
                    break
        found.reverse()
        return found

    def all(self) -> list[Event]:
        return self.items[self.head :]


class _Levels:
    """One series' closed minutes as last computed: rows from `first` on, with each row's level before clamping."""

    __slots__ = ("first", "start", "rows", "ends")

    def __init__(self, first: int, start: int, rows: list[InUseBin], ends: list[int]) -> None:
        self.first = first  # the minute index of rows[0]
        self.start = start  # the level at rows[0]'s start, before clamping
        self.rows = rows
        self.ends = ends  # the level at each row's end, before clamping

    def end(self) -> int:
        return self.ends[-1] if self.ends else self.start


class RealtimeMetricsBuffer:
    """Capped, time-limited store of borrow, return and failure events, aggregated per tool and minute.

    Every public method is thread-safe. Aggregates are kept up to date on each add and eviction,
    so reads never rescan raw events; returned buckets are shared and must be treated as read-only.
    `series_of` maps a tool name to the series its minute bins are kept under (the name itself by default); it
    must give the same answer for a name every time. Raw events always keep the exact name.
    """

    def __init__(
        self,
        retention_seconds: float = DEFAULT_RETENTION_SECONDS,
        max_borrows: int = DEFAULT_MAX_BORROWS,
        max_returns: int = DEFAULT_MAX_RETURNS,
        max_failures: int = DEFAULT_MAX_FAILURES,
        clock: Callable[[], float] = time.time,
        series_of: Callable[[str], str] | None = None,
    ) -> None:
        if retention_seconds <= 0:
            raise ValueError("retention_seconds must be positive")
        for name, cap in (("max_borrows", max_borrows), ("max_returns", max_returns), ("max_failures", max_failures)):
            if cap < 0:
                raise ValueError(f"{name} must not be negative")
        self.retention_seconds = retention_seconds
        self.clock = clock
        self._lock = threading.Lock()
        self._borrows = _EventLog(BORROW, max_borrows)
        self._returns = _EventLog(RETURN, max_returns)
        self._failures = _EventLog(FAILURE, max_failures)
        self._forget: dict[str, Callable[[Event], None]] = {
            BORROW: self._forget_borrow,
            RETURN: self._forget_return,
            FAILURE: self._forget_failure,
        }
        self._bins: dict[str, dict[int, _Bin]] = {}  # series -> {minute: _Bin}; a series is a tool name unless folded
        # series -> the number of its latest change (an add, eviction or expiry in one of its bins), so readers can
        # rebuild only the series that changed since they last looked (series_stamps).
        self._stamps: dict[str, int] = {}
        self._next_stamp = itertools.count(1).__next__
        self._minutes: dict[str, list[int]] = {}  # series -> sorted list of minute indexes present in _bins[series]
        # borrow id -> the retained borrow event; keyed like Event.borrow_id, though a borrow always has one
        self._open_borrows: dict[str | None, Event] = {}
        self._interned: dict[str | None, str] = {}  # None is looked up (a return's missing user), never stored
        self._series_of = series_of
        # tool name -> (shared name, series), a bounded cache; None stays None (a return of an unknown borrow).
        self._tool_keys: dict[str | None, tuple[Any, Any]] = {None: (None, None)}
        self._merged: set[str] = set()  # series that collect names other than their own
        self._oldest_bound = math.inf  # no retained event is older than this; lets most calls skip expiry
        self._version = 0
        self._aggregate_cache: dict[tuple[float, int], dict[str, list[Bucket]]] = {}
        self._aggregate_cache_version = -1
        # in_use_series keeps each series' closed minutes (_Levels) up to the minute `_sealed` at most; a change to a
        # bin before it, and any add the bin's figures cannot follow in order, is noted in `_stale` (series ->
        # minutes) and settled on the next read: the bin's figures redone from its events, the cached rows cut.
        self._levels: dict[str, _Levels] = {}
        self._sealed = -1
        self._stale: dict[str, set[int]] = {}
        self._stale_pruned = -1  # the retention's first minute when `_stale` was last pruned
        self._moves_memo: dict[int, dict[str, list[tuple[float, int]]]] = {}  # minute -> moves by series, in one read

    # ----------------------------------------------------------------- writes

    def add_borrow(
        self, tool: str, user: str, is_overage: bool, borrow_id: str, timestamp: float | datetime | None = None
    ) -> bool:
        """Record a granted borrow; return False when it is already older than the retention window."""
        return self.add_events((borrow_event(tool, user, is_overage, borrow_id, to_epoch(timestamp, self.clock())),)) == 1

    def add_return(
        self, borrow_id: str, user: str | None = None, timestamp: float | datetime | None = None, tool: str | None = None
    ) -> bool:
        """Record a return; tool and user default to those of the matching borrow, if it is retained."""
        return self.add_events((return_event(borrow_id, user, tool, to_epoch(timestamp, self.clock())),)) == 1

    def add_failure(self, tool: str, user: str, reason: str, timestamp: float | datetime | None = None) -> bool:
        """Record a borrow that could not be granted, with its reason."""
        return self.add_events((failure_event(tool, user, reason, to_epoch(timestamp, self.clock())),)) == 1

    def add_events(self, events: Iterable[Event]) -> int:
        """Add events in order, under one lock; return how many were kept.

        An event of an unknown kind or with a future timestamp raises ValueError; the events before it stay added.
        """
        with self._lock:
            now = self.clock()
            self._expire(now)
            return self._add_events(now, events)

    def restore(self, events: Iterable[Event]) -> int:
        """Add stored events, oldest first, under one lock; skip those from the future (a clock that went back)."""
        with self._lock:
            now = self.clock()
            self._expire(now)
            latest = now + MAX_CLOCK_SKEW_SECONDS
            return self._add_events(now, [e for e in events if e.ts <= latest])

    def _add_events(self, now: float, events: Iterable[Event]) -> int:
        # Every add comes here, with the lock held. It runs per event on bulk ingestion, so the work is written
        # out inline with the lookups hoisted out of the loop.
        latest = now + MAX_CLOCK_SKEW_SECONDS
        lowest = -math.inf
        too_old = now - self.retention_seconds
        interned, intern = self._interned, self._intern
        tool_keys, tool_key = self._tool_keys, self._tool_key
        borrows, returns, failures = self._borrows, self._returns, self._failures
        borrowed, returned = borrows.items, returns.items  # lists kept in place by eviction
        opened = self._open_borrows
        stamps, stamp = self._stamps, self._next_stamp
        stepped = self._stepped_bin
        kept = 0
        # The Event type allows None names for every kind, but a borrow's user and a failure's reason are names: these
        # two are typed loosely rather than cast, which would cost a call per event.
        user: Any
        reason: Any
        try:
            for e in events:
                ts = e.ts
                if type(ts) is not float or not lowest < ts <= latest:
                    ts = to_epoch(ts, now)
                kind = e.kind
                if kind == BORROW:
                    if ts < too_old:
                        continue
                    tool, user, borrow_id = e.tool, e.user, e.borrow_id
                    # One shared string per distinct tool/user name keeps a full buffer small; the event keeps the
                    # exact name, its minute bin is the name's series.
                    tool, key = tool_keys.get(tool) or tool_key(tool)
                    user = interned.get(user) or intern(user)
                    is_overage = True if e.is_overage else False
                    event = _new_event(Event, (ts, BORROW, tool, user, borrow_id, is_overage, None, e.host, e.version))
                    if not borrowed or ts >= borrowed[-1][0]:
                        borrowed.append(event)
                    else:
                        borrows.insert(event)
                    if ts < self._oldest_bound:
                        self._oldest_bound = ts
                    opened[borrow_id] = event
                    b = stepped(key, ts, 1.0)
                    b.count += 1
                    if is_overage:
                        b.overage += 1
                    users = b.users
                    users[user] = users.get(user, 0) + 1
                    b.bucket = None
                    stamps[key] = stamp()
                    kept += 1
                    if len(borrowed) - borrows.head > borrows.limit:
                        self._evict(borrows, borrows.over_cap())
                elif kind == RETURN:
                    if ts < too_old:
                        continue
                    borrow_id, user, tool = e.borrow_id, e.user, e.tool
                    if tool is None or user is None:
                        if borrows.over_cap() > 0:
                            self._evict(borrows, borrows.over_cap())  # the lookup must not find a borrow past the cap
                        borrow = opened.get(borrow_id)
                        if borrow is not None:
                            if tool is None:
                                tool = borrow.tool
                            if user is None:
                                user = borrow.user
                    tool, key = tool_keys.get(tool) or tool_key(tool)
                    user = interned.get(user) or intern(user)
                    event = _new_event(Event, (ts, RETURN, tool, user, borrow_id, None, None, None, None))
                    if not returned or ts >= returned[-1][0]:
                        returned.append(event)
                    else:
                        returns.insert(event)
                    if ts < self._oldest_bound:
                        self._oldest_bound = ts
                    if key is not None:
                        b = stepped(key, ts, -1.0)
                        b.returns += 1
                        stamps[key] = stamp()
                    kept += 1
                    if len(returned) - returns.head > returns.limit:
                        self._evict(returns, returns.over_cap())
                elif kind == FAILURE:
                    if ts < too_old:
                        continue
                    tool, key = tool_keys.get(e.tool) or tool_key(e.tool)
                    user, reason = intern(e.user), intern(e.reason)
                    failures.insert(_new_event(Event, (ts, FAILURE, tool, user, None, None, reason, None, None)))
                    if ts < self._oldest_bound:
                        self._oldest_bound = ts
                    if key is not None:
                        counts = self._bin(key, ts).failures
                        counts[reason] = counts.get(reason, 0) + 1
                        stamps[key] = stamp()
                    kept += 1
                    if len(failures.items) - failures.head > failures.limit:
                        self._evict(failures, failures.over_cap())
                else:
                    raise ValueError(f"unknown event type {kind!r}")
        finally:
            self._version += kept
        return kept

    # ------------------------------------------------------------------ reads

    @property
    def version(self) -> int:
        """A number that changes whenever the retained events change."""
        with self._lock:
            self._settle(self.clock())
            return self._version

    def get_recent_events(
        self, seconds: float = 60, limit: int | None = None, tool: str | None = None
    ) -> dict[str, list[dict[str, Any]]]:
        """Return the events of the last `seconds`, oldest first; `limit` keeps only the newest of each kind.

        With `tool`, only the events of that name or series (and `limit` counts those): a series that collects
        several names, such as the folded unknown tools, gives the events of all of them, each with its exact name.
        """
        with self._lock:
            now = self.clock()
            self._settle(now)
            cutoff = now - seconds
            if tool is None:
                borrows = self._borrows.since(cutoff, limit)
                returns = self._returns.since(cutoff, limit)
                failures = self._failures.since(cutoff, limit)
            else:
                # Only a series that collects other names needs each event's name mapped; the rest compare as is.
                series_of = self._key if tool in self._merged else None
                borrows = self._borrows.since_of(cutoff, tool, limit, series_of)
                returns = self._returns.since_of(cutoff, tool, limit, series_of)
                failures = self._failures.since_of(cutoff, tool, limit, series_of)
        return {
            "borrows": [public_event(e) for e in borrows],
            "returns": [public_event(e) for e in returns],
            "failures": [public_event(e) for e in failures],
        }

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
        overage = sum(1 for e in borrows if e.is_overage)
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

    def in_use_series(
        self, window_seconds: float, levels_now: Mapping[str, int], tools: Collection[str] | None = None
    ) -> dict[str, list[InUseBin]]:
        """Return `{tool: [InUseBin, ...]}`: licenses in use in each minute of the window, rebuilt from `levels_now`.

        The level at time t is `levels_now[tool]` (in use now; 0 when missing) minus the net borrows (borrows -
        returns) of the tool's retained events after t; an event counts from its own instant on, and events at one
        instant count together. A minute's start level is the level before its first event; `peak` is the highest
        level at its start or after any of its instants, `average` the time-weighted mean over the minute (for the
        current minute, over its part up to now; at its very first instant, the level then), `end` the level after
        all its events. Levels below 0 (events lost to a cap) count as 0, in all three. The minutes are every minute
        from the first that starts at or after now - window (the window clipped to the retention) to the one holding
        now, oldest first, for every series (tool name or folded series, as in aggregate_tool_metrics) that has a
        borrow or return in or after the window's first minute, or a non-zero count in `levels_now`; a later minute
        (an event stamped a few seconds ahead) only moves the levels before it. With `tools`, only those series.
        The lists are new; their InUseBins are shared and immutable.
        """
        with self._lock:
            now = self.clock()
            self._settle(now)
            window = min(window_seconds, self.retention_seconds)
            first = first_minute_at_or_after(now - window)
            current = int(now // 60)
            self._settle_stale()
            if current > self._sealed:
                self._sealed = current
            # Cached rows of series without bins go: a flat series costs nothing to rebuild.
            for gone in [tool for tool in self._levels if tool not in self._bins]:
                del self._levels[gone]
            if first > current:
                return {}
            oldest = first_minute_at_or_after(now - self.retention_seconds)
            names = set(self._bins) | {tool for tool, level in levels_now.items() if level}
            if tools is not None:
                names &= set(tools)
            out: dict[str, list[InUseBin]] = {}
            try:
                for tool in sorted(names):
                    level_now = levels_now.get(tool, 0)
                    if not level_now and not self._moves_since(tool, first):
                        continue
                    out[tool] = self._tool_levels(tool, level_now, first, current, oldest, now)
            finally:
                self._moves_memo = {}
            return out

    def series_stamps(self) -> dict[str, int]:
        """Return {series: stamp} of every series with data; a series' stamp changes whenever any of its bins does.

        Expired events count as changes: retention is applied first, as on every read.
        """
        with self._lock:
            self._settle(self.clock())
            stamps = self._stamps
            return {tool: stamps.get(tool, 0) for tool in self._minutes}

    def caps(self) -> dict[str, int]:
        """Return the cap of each event kind."""
        return {BORROW: self._borrows.cap, RETURN: self._returns.cap, FAILURE: self._failures.cap}

    def _intern(self, text: str | None) -> str | None:
        # One shared string per distinct tool/user name keeps a full buffer small.
        shared = self._interned.get(text)
        if shared is not None or text is None:
            return shared
        if len(self._interned) > INTERN_LIMIT:
            self._interned.clear()  # bounded: interning only saves memory, it is not needed for correctness
        self._interned[text] = text
        return text

    def _tool_key(self, name: str | None) -> tuple[Any, Any]:
        # A cache miss, once per distinct tool name: share the name's string and remember its series.
        keys = self._tool_keys
        if len(keys) >= TOOL_KEY_LIMIT:
            keys.clear()  # distinct unknown names churn it; the known ones come back on their next event
            keys[None] = (None, None)
        if name is None:
            return (None, None)
        series = name if self._series_of is None else self._series_of(name)
        if series != name:
            self._merged.add(series)
        pair = keys[name] = (name, name if series == name else series)
        return pair

    def _key(self, tool: str | None) -> Any:
        """Return the bin key (series) of a stored event's tool: the same one its add used, as the mapping is fixed."""
        if tool is None or self._series_of is None:
            return tool
        return self._series_of(tool)

    def _stepped_bin(self, key: str, ts: float, sign: float) -> _Bin:
        """Return `key`'s bin of `ts`'s minute with its level figures moved by one event (+1 a borrow, -1 a return).

        The level figures follow an in-order add in a minute no cached row covers; anything else marks the minute,
        and its figures are redone from its events on the next in_use_series.
        """
        minute = int(ts // 60)
        bins = self._bins.get(key)
        b = bins.get(minute) if bins is not None else None
        if b is None:
            b = self._bin(key, ts)
        last = b.last
        if minute >= self._sealed and ts >= last:
            if ts > last:
                level = b.count - b.returns  # the level after the bin's previous instant
                if level > b.prior:
                    b.prior = level
                elif level < b.low:
                    b.low = level
                b.last = ts
            b.moment += sign * (ts % 60)
        else:
            self._mark(key, minute)
        return b

    def _bin(self, tool: str, ts: float) -> _Bin:
        minute = int(ts // 60)
        bins = self._bins.get(tool)
        if bins is None:
            bins = self._bins[tool] = {}
            self._minutes[tool] = []
        b = bins.get(minute)
        if b is None:
            b = bins[minute] = _Bin()
            minutes = self._minutes[tool]
            if not minutes or minute > minutes[-1]:
                minutes.append(minute)
            else:
                minutes.insert(bisect_left(minutes, minute), minute)
        return b

    def _existing_bin(self, tool: str, ts: float) -> _Bin:
        return self._bins[tool][int(ts // 60)]

    def _drop_bin_if_empty(self, tool: str, ts: float, b: _Bin) -> None:
        if not b.is_empty():
            return
        minute = int(ts // 60)
        del self._bins[tool][minute]
        minutes = self._minutes[tool]
        del minutes[bisect_left(minutes, minute)]
        if not minutes:
            del self._minutes[tool]
            del self._bins[tool]

    def _buckets_from(self, tool: str, first_minute: int) -> list[Bucket]:
        bins = self._bins[tool]
        minutes = self._minutes[tool]
        out: list[Bucket] = []
        for m in minutes[bisect_left(minutes, first_minute) :]:
            b = bins[m]
            if b.count:
                if b.bucket is None:
                    # A new dict per change: buckets handed out earlier stay as they were.
                    b.bucket = {
                        "timestamp": iso_minute(m),
                        "count": b.count,
                        "users": sorted(b.users),
                        "overage_count": b.overage,
                    }
                out.append(b.bucket)
        return out

    # ------------------------------------------------------------- in use

    def _mark(self, key: str, minute: int) -> None:
        """Note that `key`'s bin of `minute` changed in a way its level figures or the cached rows do not follow."""
        minutes = self._stale.get(key)
        if minutes is None:
            self._stale[key] = {minute}
        else:
            minutes.add(minute)

    def _moves_since(self, tool: str, first: int) -> bool:
        """Tell whether `tool` has a borrow or return in `first` or a later minute."""
        minutes = self._minutes.get(tool)
        if not minutes:
            return False
        bins = self._bins[tool]
        return any(bins[m].count or bins[m].returns for m in minutes[bisect_left(minutes, first) :])

    def _minute_moves(self, minute: int, keys: Collection[str] | None) -> dict[str, list[tuple[float, int]]]:
        """Return the borrows (+1) and returns (-1) of `minute` by series (those in `keys`, or all), in time order."""
        found: dict[str, list[tuple[float, int]]] = {}
        start, stop = minute * 60, minute * 60 + 60
        series: dict[str | None, Any] = {}  # tool name -> series, or "" for one not wanted (no series is "")
        for log, step in ((self._borrows, 1), (self._returns, -1)):
            items = log.items
            lo = bisect_left(items, start, lo=log.head, key=_TS)
            hi = bisect_left(items, stop, lo=lo, key=_TS)
            for event in items[lo:hi]:
                tool = event[2]
                key = series.get(tool)
                if key is None:
                    key = self._key(tool)
                    if key is None or (keys is not None and key not in keys):
                        key = ""
                    series[tool] = key
                if key:
                    moves = found.get(key)
                    if moves is None:
                        moves = found[key] = []
                    moves.append((event[0], step))
        for moves in found.values():
            moves.sort(key=_TS)  # stable: events at one instant keep their order, which does not matter
        return found

    def _settle_stale(self) -> None:
        """Redo the level figures of the bins noted stale, and cut each series' cached rows at its latest such minute."""
        if not self._stale:
            return
        stale, self._stale = self._stale, {}
        by_minute: dict[int, list[str]] = {}
        for key, minutes in stale.items():
            for minute in minutes:
                by_minute.setdefault(minute, []).append(key)
            cached = self._levels.get(key)
            if cached is not None:
                # A change in a minute moves the levels before it, never after: the rows after the latest changed
                # one stand. A change at or after the rows' end shows as a moved anchor in _tool_levels instead.
                upto = cached.first + len(cached.rows)
                latest = max((m for m in minutes if m < upto), default=None)
                cut = 0 if latest is None else latest + 1 - cached.first
                if cut >= len(cached.rows):
                    del self._levels[key]
                elif cut > 0:
                    cached.start = cached.ends[cut - 1]
                    del cached.rows[:cut]
                    del cached.ends[:cut]
                    cached.first += cut
        for minute, keys in by_minute.items():
            present = [key for key in keys if minute in self._bins.get(key, ())]
            if not present:
                continue
            moves = self._minute_moves(minute, set(present))
            for key in present:
                _refigure(self._bins[key][minute], moves.get(key, []))

    def _tool_levels(self, tool: str, level_now: int, first: int, current: int, oldest: int, now: float) -> list[InUseBin]:
        """Return one series' InUseBins from minute `first` to `current`, reusing and extending its cached closed rows."""
        bins = self._bins.get(tool, {})
        minutes = self._minutes.get(tool, [])
        # The level at the current minute's start: now's count minus the net of this and any later minute.
        anchor = level_now
        for m in minutes[bisect_left(minutes, current) :]:
            anchor -= bins[m].count - bins[m].returns
        cached = self._levels.get(tool)
        if cached is not None:
            upto = cached.first + len(cached.rows)
            if upto > current:
                cached = None  # the clock went back
            elif upto < current:
                rows, ends, start = self._walk_back(tool, upto, current, anchor)
                if start == cached.end():
                    cached.rows.extend(rows)
                    cached.ends.extend(ends)
                else:
                    cached = None  # every level moved (the count now disagrees with the events): start afresh
            elif cached.end() != anchor:
                cached = None
        if cached is None:
            rows, ends, start = self._walk_back(tool, first, current, anchor)
            cached = _Levels(first, start, rows, ends)
        elif first < cached.first:
            rows, ends, start = self._walk_back(tool, first, cached.first, cached.start)
            cached.rows[:0] = rows
            cached.ends[:0] = ends
            cached.first, cached.start = first, start
        if cached.first < oldest:
            # Rows older than the retention are never asked for again.
            cut = min(oldest - cached.first, len(cached.rows))
            if cut:
                cached.start = cached.ends[cut - 1]
                del cached.rows[:cut]
                del cached.ends[:cut]
                cached.first += cut
        self._levels[tool] = cached
        out = cached.rows[first - cached.first :]
        out.append(self._current_row(tool, bins.get(current), current, anchor, now))
        return out

    def _walk_back(self, tool: str, first: int, stop: int, level: int) -> tuple[list[InUseBin], list[int], int]:
        """Return rows and unclamped end levels of minutes first..stop-1 walking back from `level`, and first's start level."""
        bins = self._bins.get(tool, {})
        rows: list[InUseBin] = []
        ends: list[int] = []
        new = tuple.__new__
        for m in range(stop - 1, first - 1, -1):
            ends.append(level)
            b = bins.get(m)
            if b is None or not (b.count or b.returns):
                held = level if level > 0 else 0
                rows.append(new(InUseBin, (m * 60, held, float(held), held)))
                continue
            net = b.count - b.returns
            start = level - net
            top = start + (b.prior if b.prior > net else net)
            if top <= 0:
                rows.append(new(InUseBin, (m * 60, 0, 0.0, 0)))
            elif start + (b.low if b.low < net else net) >= 0:
                # area = net * 60 - moment, so the mean is start + net - moment / 60
                rows.append(new(InUseBin, (m * 60, top, level - b.moment / 60, level)))
            else:
                rows.append(self._exact_row(tool, m, start, m * 60 + 60))
            level = start
        rows.reverse()
        ends.reverse()
        return rows, ends, level

    def _current_row(self, tool: str, b: _Bin | None, minute: int, start: int, now: float) -> InUseBin:
        """Return the row of the minute holding now, its mean taken over its part up to now."""
        if b is None or not (b.count or b.returns):
            held = start if start > 0 else 0
            return InUseBin(minute * 60, held, float(held), held)
        net = b.count - b.returns
        top = start + (b.prior if b.prior > net else net)
        if top <= 0:
            return InUseBin(minute * 60, 0, 0.0, 0)
        elapsed = now - minute * 60
        if b.last <= now and elapsed > 0 and start + (b.low if b.low < net else net) >= 0:
            end = start + net
            return InUseBin(minute * 60, top, end - b.moment / elapsed, end)
        # Events stamped ahead of now, a level that dips below 0, or now at the minute's very start: walk its events.
        return self._exact_row(tool, minute, start, now)

    def _exact_row(self, tool: str, minute: int, start: int, until: float) -> InUseBin:
        """Return one minute's row from its events, levels below 0 counting as 0, the mean taken up to `until`."""
        # One read may walk many series through the same minute (a full recompute): its events are split once.
        by_series = self._moves_memo.get(minute)
        if by_series is None:
            by_series = self._moves_memo[minute] = self._minute_moves(minute, None)
        moves = by_series.get(tool, [])
        begin = minute * 60
        level = start
        peak = level if level > 0 else 0
        area = 0.0
        at: float = begin
        for ts, step in moves:
            if ts > at:
                held = level if level > 0 else 0
                if held > peak:
                    peak = held
                if at < until:
                    area += held * (min(ts, until) - at)
                at = ts
            level += step
        held = level if level > 0 else 0
        if held > peak:
            peak = held
        if at < until:
            area += held * (until - at)
        if until > begin:
            average = area / (until - begin)
        else:
            # No time has passed in the minute: its mean is the level at that instant.
            at_start = start + sum(step for ts, step in moves if ts <= begin)
            average = float(at_start if at_start > 0 else 0)
        return InUseBin(begin, peak, average, held)

    # --------------------------------------------------------------- internals

    def _settle(self, now: float) -> None:
        """Apply retention and trim every log to its cap: the state every read sees."""
        self._expire(now)
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

    def _evict(self, log: _EventLog, n: int) -> None:
        """Drop the n oldest events of `log`, keeping the bins exact.

        Every minute before the new oldest event has lost all its events of this kind, so those bins are cleared
        at once; only events of the new oldest event's own minute are undone one by one.
        """
        chunk = log.pop_front(n)
        forget = self._forget[log.kind]
        if n < BULK_EVICTION:
            for event in chunk:
                forget(event)
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
                if opened.get(event.borrow_id) is event:
                    del opened[event.borrow_id]
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
                if b.is_empty():
                    del bins[minute]
            minutes[:end] = [m for m in minutes[:end] if m in bins]
            if not minutes:
                del self._minutes[tool]
                del self._bins[tool]

    def _forget_in_minute(self, kind: str, minute: int, events: list[Event]) -> None:
        """Undo events that all fall in `minute`, settling each touched bin once rather than once per event."""
        bins = self._bins
        touched: dict[str, _Bin] = {}
        if kind == BORROW:
            opened = self._open_borrows
            key_of = self._key
            user: Any  # a borrow's user is a name (see _add_events)
            for event in events:
                _ts, _kind, tool, user, borrow_id, is_overage = event[:6]
                if opened.get(borrow_id) is event:
                    del opened[borrow_id]
                key = key_of(tool)
                b = touched.get(key)
                if b is None:
                    b = touched[key] = bins[key][minute]
                    b.bucket = None
                b.count -= 1
                if is_overage:
                    b.overage -= 1
                users = b.users
                left = users[user] - 1
                if left:
                    users[user] = left
                else:
                    del users[user]
        elif kind == RETURN:
            for event in events:
                key = self._key(event.tool)
                if key is not None:
                    b = touched.get(key)
                    if b is None:
                        b = touched[key] = bins[key][minute]
                    b.returns -= 1
        else:
            for event in events:
                self._forget_failure(event)
            return
        for key, b in touched.items():
            self._stamps[key] = self._next_stamp()
            self._mark(key, minute)
            self._drop_bin_if_empty(key, minute * 60, b)

    def _forget_borrow(self, event: Event) -> None:
        user: Any  # a borrow's user is a name (see _add_events)
        ts, _kind, tool, user, borrow_id, is_overage = event[:6]
        if self._open_borrows.get(borrow_id) is event:
            del self._open_borrows[borrow_id]
        key = self._key(tool)
        b = self._existing_bin(key, ts)
        b.count -= 1
        if is_overage:
            b.overage -= 1
        left = b.users[user] - 1
        if left:
            b.users[user] = left
        else:
            del b.users[user]
        b.bucket = None
        self._stamps[key] = self._next_stamp()
        self._mark(key, int(ts // 60))
        self._drop_bin_if_empty(key, ts, b)
        self._version += 1

    def _forget_return(self, event: Event) -> None:
        ts, tool = event.ts, event.tool
        key = self._key(tool)
        if key is not None:
            b = self._existing_bin(key, ts)
            b.returns -= 1
            self._stamps[key] = self._next_stamp()
            self._mark(key, int(ts // 60))
            self._drop_bin_if_empty(key, ts, b)
        self._version += 1

    def _forget_failure(self, event: Event) -> None:
        reason: Any  # a failure's reason is a name (see _add_events)
        ts, tool, reason = event.ts, event.tool, event.reason
        key = self._key(tool)
        if key is not None:
            b = self._existing_bin(key, ts)
            left = b.failures[reason] - 1
            if left:
                b.failures[reason] = left
            else:
                del b.failures[reason]
            self._stamps[key] = self._next_stamp()
            self._drop_bin_if_empty(key, ts, b)
        self._version += 1
