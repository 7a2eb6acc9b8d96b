"""Adding events: one by one into a pending batch, or many at once, each into its log and its series' minute bin."""

import math
from collections.abc import Callable, Iterable
from datetime import datetime
from itertools import repeat
from typing import Any

from dash_app.buffer.core import Bin
from dash_app.buffer.event_log import EventLog
from dash_app.buffer.eviction import Eviction
from dash_app.events import BORROW, FAILURE, RETURN, Event
from dash_app.timeutil import MAX_CLOCK_SKEW_SECONDS, to_epoch

# Sizes at which the name caches start afresh: they only save memory and time, so forgetting is always safe,
# and a flood of distinct names (typos, scans) must not grow them without bound.
INTERN_LIMIT = 100_000
TOOL_KEY_LIMIT = 4096
# Events added one by one wait in a batch of at most this many until it is added in one loop, or a read comes.
PENDING_LIMIT = 512

_new_event = tuple.__new__  # builds an Event from a tuple without NamedTuple.__new__'s argument handling (hot path)


class Ingest(Eviction):
    """The buffer's writes; every read first adds what is pending and applies retention and the caps (`_settle`)."""

    def add_borrow(
        self, tool: str, user: str, is_overage: bool, borrow_id: str, timestamp: float | datetime | None = None
    ) -> bool:
        """Record a granted borrow; return False when it is already older than the retention window."""
        return self._add_one(timestamp, BORROW, tool, user, borrow_id, bool(is_overage), None)

    def add_return(
        self, borrow_id: str, user: str | None = None, timestamp: float | datetime | None = None, tool: str | None = None
    ) -> bool:
        """Record a return; tool and user default to those of the matching borrow, if it is retained."""
        return self._add_one(timestamp, RETURN, tool, user, borrow_id, None, None)

    def add_failure(self, tool: str, user: str, reason: str, timestamp: float | datetime | None = None) -> bool:
        """Record a borrow that could not be granted, with its reason."""
        return self._add_one(timestamp, FAILURE, tool, user, None, None, reason)

    def add_events(self, events: Iterable[Event]) -> int:
        """Add events in order, under one lock; return how many were kept.

        An event of an unknown kind or with a future timestamp raises ValueError; the events before it stay added.
        """
        with self._lock:
            now = self.clock()
            self._flush()
            return self._add_all(zip(repeat(now), events))

    def restore(self, events: Iterable[Event]) -> int:
        """Add stored events, oldest first, under one lock; skip those from the future (a clock that went back)."""
        with self._lock:
            now = self.clock()
            self._flush()
            latest = now + MAX_CLOCK_SKEW_SECONDS
            return self._add_all(zip(repeat(now), [e for e in events if e.ts <= latest]))

    def _add_one(
        self,
        timestamp: float | datetime | None,
        kind: str,
        tool: str | None,
        user: str | None,
        borrow_id: str | None,
        is_overage: bool | None,
        reason: str | None,
    ) -> bool:
        """Queue one event (the fields of dash_app.events' borrow_event, return_event or failure_event); False if too old."""
        with self._lock:
            now = self.clock()
            too_old = now - self.retention_seconds
            if type(timestamp) is float and too_old <= timestamp <= now + MAX_CLOCK_SKEW_SECONDS:
                ts = timestamp  # the common case, checked in one step (NaN fails the comparison)
            else:
                ts = to_epoch(timestamp, now)
                if ts < too_old:
                    return False
            pending = self._pending
            # Built without NamedTuple's argument handling, in Event's field order.
            pending.append((now, _new_event(Event, (ts, kind, tool, user, borrow_id, is_overage, reason, None, None))))
            if len(pending) >= PENDING_LIMIT:
                self._flush()
            return True

    def _flush(self) -> None:
        """Add the pending events, each as of the time it was added at."""
        if self._pending:
            pending, self._pending = self._pending, []
            self._add_all(pending)

    def _settle(self, now: float) -> None:
        """Add what is pending, apply retention and trim every log to its cap: the state every read sees."""
        self._flush()
        self._expire(now)
        self._trim()

    def _add_all(self, timed: Iterable[tuple[float, Event]]) -> int:
        """Add each event as of the time paired with it (retention applied first); return how many were kept."""
        adders: dict[str, Callable[[float, Event], None]] = {
            BORROW: self._add_borrow,
            RETURN: self._add_return,
            FAILURE: self._add_failure,
        }
        lowest = -math.inf
        latest = too_old = was = math.nan
        kept = 0
        try:
            for now, e in timed:
                if now != was:
                    was, latest, too_old = now, now + MAX_CLOCK_SKEW_SECONDS, now - self.retention_seconds
                    if too_old > self._oldest_bound:
                        self._expire(now)
                ts = e.ts
                if type(ts) is not float or not lowest < ts <= latest:
                    ts = to_epoch(ts, now)
                add = adders.get(e.kind)
                if add is None:
                    raise ValueError(f"unknown event type {e.kind!r}")
                if ts >= too_old:
                    add(ts, e)
                    kept += 1
        finally:
            self._version += kept
        return kept

    def _add_borrow(self, ts: float, e: Event) -> None:
        # One shared string per distinct tool/user name keeps a full buffer small; the event keeps the exact name,
        # its minute bin is the name's series.
        tool, key = self._tool_keys.get(e.tool) or self._tool_key(e.tool)
        user: Any = self._interned.get(e.user) or self._intern(e.user)  # a borrow's user is a name
        is_overage = True if e.is_overage else False
        event = _new_event(Event, (ts, BORROW, tool, user, e.borrow_id, is_overage, None, e.host, e.version))
        borrows = self._borrows
        self._log(borrows, event)
        self._open_borrows[e.borrow_id] = event
        b = self._touched_bin(key, ts)
        b.count += 1
        if is_overage:
            b.overage += 1
        users = b.users
        users[user] = users.get(user, 0) + 1
        b.bucket = None
        if len(borrows.items) - borrows.head > borrows.limit:
            self._evict(borrows, borrows.over_cap())

    def _add_return(self, ts: float, e: Event) -> None:
        borrow_id, user, tool = e.borrow_id, e.user, e.tool
        if tool is None or user is None:
            borrows = self._borrows
            if borrows.over_cap() > 0:
                self._evict(borrows, borrows.over_cap())  # the lookup must not find a borrow past the cap
            borrow = self._open_borrows.get(borrow_id)
            if borrow is not None:
                tool = borrow.tool if tool is None else tool
                user = borrow.user if user is None else user
        tool, key = self._tool_keys.get(tool) or self._tool_key(tool)
        user = self._interned.get(user) or self._intern(user)
        returns = self._returns
        self._log(returns, _new_event(Event, (ts, RETURN, tool, user, borrow_id, None, None, None, None)))
        if key is not None:
            self._touched_bin(key, ts).returns += 1
        if len(returns.items) - returns.head > returns.limit:
            self._evict(returns, returns.over_cap())

    def _add_failure(self, ts: float, e: Event) -> None:
        tool, key = self._tool_keys.get(e.tool) or self._tool_key(e.tool)
        user = self._intern(e.user)
        reason: Any = self._intern(e.reason)  # a failure's reason is a name
        failures = self._failures
        self._log(failures, _new_event(Event, (ts, FAILURE, tool, user, None, None, reason, None, None)))
        if key is not None:
            counts = self._bin(key, ts).failures
            counts[reason] = counts.get(reason, 0) + 1
            self._stamps[key] = self._next_stamp()
        if len(failures.items) - failures.head > failures.limit:
            self._evict(failures, failures.over_cap())

    def _log(self, log: EventLog, event: Event) -> None:
        """Put an event in its log, in time order."""
        items, ts = log.items, event[0]
        if not items or ts >= items[-1][0]:
            items.append(event)
        else:
            log.insert(event)
        if ts < self._oldest_bound:
            self._oldest_bound = ts

    def _touched_bin(self, key: str, ts: float) -> Bin:
        """Return `key`'s bin of `ts`'s minute, stamped as changed, for a borrow or return being added.

        Its level figures are worked out when read; a minute that cached in-use rows cover is noted to be redone.
        """
        minute = int(ts // 60)
        bins = self._bins.get(key)
        b = bins.get(minute) if bins is not None else None
        if b is None:
            b = self._bin(key, ts)
        if minute < self._sealed:
            self._mark(key, minute)
        self._stamps[key] = self._next_stamp()
        return b

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
