"""The server-side buffer of raw license events and their per-tool minute bins."""

import math
import threading
import time
from bisect import bisect_left, insort_right
from collections.abc import Callable, Iterable
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


class _Bin:
    """Counters for one tool in one minute, with its bucket dict built lazily and then reused."""

    __slots__ = ("count", "overage", "users", "returns", "failures", "bucket")

    count: int
    overage: int
    users: dict[str, int]  # user -> borrows
    returns: int
    failures: dict[str, int]  # reason -> count
    bucket: Bucket | None

    def __init__(self) -> None:
        self.count = 0
        self.overage = 0
        self.users = {}
        self.returns = 0
        self.failures = {}
        self.bucket = None

    def is_empty(self) -> bool:
        return not (self.count or self.returns or self.failures)


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

    # ----------------------------------------------------------------- writes

    def add_borrow(
        self, tool: str, user: str, is_overage: bool, borrow_id: str, timestamp: float | datetime | None = None
    ) -> bool:
        """Record a granted borrow; return False when it is already older than the retention window."""
        return self.add_events((borrow_event(tool, user, is_overage, borrow_id, timestamp),)) == 1

    def add_return(
        self, borrow_id: str, user: str | None = None, timestamp: float | datetime | None = None, tool: str | None = None
    ) -> bool:
        """Record a return; tool and user default to those of the matching borrow, if it is retained."""
        return self.add_events((return_event(borrow_id, user, tool, timestamp),)) == 1

    def add_failure(self, tool: str, user: str, reason: str, timestamp: float | datetime | None = None) -> bool:
        """Record a borrow that could not be granted, with its reason."""
        return self.add_events((failure_event(tool, user, reason, timestamp),)) == 1

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
        all_bins = self._bins
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
                    event = _new_event(Event, (ts, BORROW, tool, user, borrow_id, is_overage, None))
                    if not borrowed or ts >= borrowed[-1][0]:
                        borrowed.append(event)
                    else:
                        borrows.insert(event)
                    if ts < self._oldest_bound:
                        self._oldest_bound = ts
                    opened[borrow_id] = event
                    bins = all_bins.get(key)
                    b = bins.get(int(ts // 60)) if bins is not None else None
                    if b is None:
                        b = self._bin(key, ts)
                    b.count += 1
                    if is_overage:
                        b.overage += 1
                    users = b.users
                    users[user] = users.get(user, 0) + 1
                    b.bucket = None
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
                    event = _new_event(Event, (ts, RETURN, tool, user, borrow_id, None, None))
                    if not returned or ts >= returned[-1][0]:
                        returned.append(event)
                    else:
                        returns.insert(event)
                    if ts < self._oldest_bound:
                        self._oldest_bound = ts
                    if key is not None:
                        bins = all_bins.get(key)
                        b = bins.get(int(ts // 60)) if bins is not None else None
                        if b is None:
                            b = self._bin(key, ts)
                        b.returns += 1
                    kept += 1
                    if len(returned) - returns.head > returns.limit:
                        self._evict(returns, returns.over_cap())
                elif kind == FAILURE:
                    if ts < too_old:
                        continue
                    tool, key = tool_keys.get(e.tool) or tool_key(e.tool)
                    user, reason = intern(e.user), intern(e.reason)
                    failures.insert(_new_event(Event, (ts, FAILURE, tool, user, None, None, reason)))
                    if ts < self._oldest_bound:
                        self._oldest_bound = ts
                    if key is not None:
                        counts = self._bin(key, ts).failures
                        counts[reason] = counts.get(reason, 0) + 1
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

    def aggregate_tool_metrics(self, window_seconds: float = 60) -> dict[str, list[Bucket]]:
        """Return `{tool: [bucket, ...]}` for the minutes that start at or after now - window."""
        with self._lock:
            now = self.clock()
            self._settle(now)
            window = min(window_seconds, self.retention_seconds)
            first = first_minute_at_or_after(now - window)
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

    def get_minute_flows(self, window_seconds: float = 1800) -> dict[str, list[MinuteFlow]]:
        """Return `{tool: [MinuteFlow, ...]}` including minutes with only returns or failures."""
        with self._lock:
            now = self.clock()
            self._settle(now)
            first = first_minute_at_or_after(now - min(window_seconds, self.retention_seconds))
            flows: dict[str, list[MinuteFlow]] = {}
            for tool, minutes in self._minutes.items():
                bins = self._bins[tool]
                rows = [
                    MinuteFlow(m * 60, bins[m].count, bins[m].overage, bins[m].returns, dict(bins[m].failures))
                    for m in minutes[bisect_left(minutes, first) :]
                ]
                if rows:
                    flows[tool] = rows
            return flows

    def caps(self) -> dict[str, int]:
        """Return the cap of each event kind."""
        return {BORROW: self._borrows.cap, RETURN: self._returns.cap, FAILURE: self._failures.cap}

    # --------------------------------------------------------------- internals

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
            for minute in minutes[:end]:
                b = bins[minute]
                if kind == BORROW:
                    if b.count:
                        b.count = b.overage = 0
                        b.users = {}
                        b.bucket = None
                elif kind == RETURN:
                    b.returns = 0
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
                _ts, _kind, tool, user, borrow_id, is_overage, _reason = event
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
            self._drop_bin_if_empty(key, minute * 60, b)

    def _forget_borrow(self, event: Event) -> None:
        user: Any  # a borrow's user is a name (see _add_events)
        ts, _kind, tool, user, borrow_id, is_overage, _reason = event
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
        self._drop_bin_if_empty(key, ts, b)
        self._version += 1

    def _forget_return(self, event: Event) -> None:
        ts, tool = event.ts, event.tool
        key = self._key(tool)
        if key is not None:
            b = self._existing_bin(key, ts)
            b.returns -= 1
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
            self._drop_bin_if_empty(key, ts, b)
        self._version += 1
