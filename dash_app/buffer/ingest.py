"""Adding events: one by one into a pending batch, or many at once, each into its log and its series' minute bin."""

import math
from collections.abc import Iterable
from datetime import datetime
from itertools import repeat
from typing import Any

from dash_app.buffer.core import Bin
from dash_app.buffer.event_log import EventLog, Raw
from dash_app.buffer.eviction import Eviction
from dash_app.events import BORROW, FAILURE, RETURN, Event
from dash_app.timeutil import MAX_CLOCK_SKEW_SECONDS, to_epoch

# Sizes at which the name caches start afresh: they only save memory and time, so forgetting is always safe,
# and a flood of distinct names (typos, scans) must not grow them without bound.
INTERN_LIMIT = 100_000
TOOL_KEY_LIMIT = 4096
# Events added one by one wait in a batch of at most this many until it is added in one loop, or a read comes.
PENDING_LIMIT = 512

Entry = tuple[Any, ...]  # (time added at, kind, ts, tool, user, borrow_id, is_overage, reason, host, version)


class Ingest(Eviction):
    """The buffer's writes; every read first adds what is pending and applies retention and the caps (`_settle`).

    An add one by one takes no lock: it checks its timestamp against the clock and appends a plain tuple to the
    pending list (atomic under the GIL). Whoever holds the lock next (a read, add_events, or the add that fills the
    batch) takes the pending entries from the front and adds each as of the time it was added at, so the state every
    read sees is the one the adds would have made one at a time under the lock, in the order they were queued.
    """

    # Each add checks the common case (a float timestamp inside the window) and queues its tuple inline: a call less
    # per event, on the path every event added one by one takes. Anything else goes through _queue, which checks it.

    def add_borrow(
        self, tool: str, user: str, is_overage: bool, borrow_id: str, timestamp: float | datetime | None = None
    ) -> bool:
        """Record a granted borrow; return False when it is already older than the retention window."""
        now = self.clock()
        if type(timestamp) is not float or not now - self.retention_seconds <= timestamp <= now + MAX_CLOCK_SKEW_SECONDS:
            return self._queue(now, timestamp, BORROW, tool, user, borrow_id, is_overage, None)
        self._pending.append((now, BORROW, timestamp, tool, user, borrow_id, is_overage, None, None, None))
        return len(self._pending) < PENDING_LIMIT or self._flush_full()

    def add_return(
        self, borrow_id: str, user: str | None = None, timestamp: float | datetime | None = None, tool: str | None = None
    ) -> bool:
        """Record a return; tool and user default to those of the matching borrow, if it is retained."""
        now = self.clock()
        if type(timestamp) is not float or not now - self.retention_seconds <= timestamp <= now + MAX_CLOCK_SKEW_SECONDS:
            return self._queue(now, timestamp, RETURN, tool, user, borrow_id, None, None)
        self._pending.append((now, RETURN, timestamp, tool, user, borrow_id, None, None, None, None))
        return len(self._pending) < PENDING_LIMIT or self._flush_full()

    def add_failure(self, tool: str, user: str, reason: str, timestamp: float | datetime | None = None) -> bool:
        """Record a borrow that could not be granted, with its reason."""
        now = self.clock()
        if type(timestamp) is not float or not now - self.retention_seconds <= timestamp <= now + MAX_CLOCK_SKEW_SECONDS:
            return self._queue(now, timestamp, FAILURE, tool, user, None, None, reason)
        self._pending.append((now, FAILURE, timestamp, tool, user, None, None, reason, None, None))
        return len(self._pending) < PENDING_LIMIT or self._flush_full()

    def _queue(
        self,
        now: float,
        timestamp: object,
        kind: str,
        tool: str | None,
        user: str | None,
        borrow_id: str | None,
        is_overage: bool | None,
        reason: str | None,
    ) -> bool:
        """Check and queue an add whose timestamp is not a float inside the window; False if too old (ValueError if bad)."""
        ts = self._checked(timestamp, now)
        if ts is None:
            return False
        pending = self._pending
        pending.append((now, kind, ts, tool, user, borrow_id, is_overage, reason, None, None))
        return len(pending) < PENDING_LIMIT or self._flush_full()

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

    def _checked(self, timestamp: object, now: float) -> float | None:
        """Return an add's timestamp as epoch seconds, or None when it is older than the retention (ValueError if bad)."""
        ts = to_epoch(timestamp, now)
        return None if ts < now - self.retention_seconds else ts

    def _flush_full(self) -> bool:
        """Add the full batch; True, for the add that filled it."""
        with self._lock:
            self._flush()
        return True

    def _flush(self) -> None:
        """Add the pending events, each as of the time it was added at (the caller holds the lock)."""
        pending = self._pending
        if pending:
            # Only the lock's holder takes from the front, so the first len(batch) entries are the ones taken; adds
            # queued meanwhile stay, after them, for the next flush.
            batch = pending[:]
            del pending[: len(batch)]
            self._add_entries(batch)

    def _settle(self, now: float) -> None:
        """Add what is pending, apply retention and trim every log to its cap: the state every read sees."""
        self._flush()
        self._expire(now)
        self._trim()

    def _add_all(self, timed: Iterable[tuple[float, Event]]) -> int:
        """Add each event as of the time paired with it (retention applied first); return how many were kept."""
        lowest = -math.inf
        latest = too_old = was = math.nan
        entries: list[Entry] = []
        try:
            for now, e in timed:
                if now != was:
                    was, latest, too_old = now, now + MAX_CLOCK_SKEW_SECONDS, now - self.retention_seconds
                ts = e.ts
                if type(ts) is not float or not lowest < ts <= latest:
                    ts = to_epoch(ts, now)
                kind = e.kind
                if kind != BORROW and kind != RETURN and kind != FAILURE:
                    raise ValueError(f"unknown event type {kind!r}")
                if ts >= too_old:
                    entries.append((now, kind, ts, e.tool, e.user, e.borrow_id, e.is_overage, e.reason, e.host, e.version))
        finally:
            self._add_entries(entries)  # the events before a bad one stay added
        return len(entries)

    def _add_entries(self, entries: list[Entry]) -> None:
        """Add entries in order, each into its log and its series' bin, retention applied as of each one's time.

        One loop with the borrow and return inline: this is where every event added one by one is paid for. Bins
        touched in the current minute are remembered in `hot` (series -> bin), stamped once; the caps are compared
        with list lengths, their bounds worked out again after anything that moves a log's head.
        """
        retention, intern, tool_key = self.retention_seconds, self._interned.get, self._tool_keys.get
        borrows, returns, opened = self._borrows, self._returns, self._open_borrows
        borrowed, returned = borrows.items, returns.items
        hot: dict[str, Bin] = {}
        self._hot = hot
        find = hot.get
        start = stop = -math.inf  # the minute the bins in `hot` are of: [start, stop)
        event: Raw
        was = math.nan
        b_full, b_over, r_over = borrows.head + borrows.cap, borrows.head + borrows.limit, returns.head + returns.limit
        try:
            for now, kind, ts, tool, user, borrow_id, is_overage, reason, host, version in entries:
                if now != was:
                    was = now
                    if now - retention > self._oldest_bound:
                        self._expire(now)
                        b_full, b_over = borrows.head + borrows.cap, borrows.head + borrows.limit
                        r_over = returns.head + returns.limit
                if not start <= ts < stop:
                    hot.clear()
                    start = ts // 60 * 60
                    stop = start + 60
                if kind == BORROW:
                    # One shared string per distinct tool/user name keeps a full buffer small; the event keeps the
                    # exact name, its minute bin is the name's series.
                    tool, key = tool_key(tool) or self._tool_key(tool)
                    who: Any = intern(user) or self._intern(user)  # a borrow's user is a name
                    is_overage = True if is_overage else False
                    event = (ts, BORROW, tool, who, borrow_id, is_overage, None, host, version)
                    if borrowed and ts >= borrowed[-1][0]:
                        borrowed.append(event)  # the common case of _log, inline
                    else:
                        self._log(borrows, event)
                    opened[borrow_id] = event
                    b = find(key) or self._touched_bin(key, ts)
                    b.count += 1
                    b.overage += is_overage
                    users = b.users
                    users[who] = users.get(who, 0) + 1
                    if len(borrowed) > b_over:
                        self._evict(borrows, borrows.over_cap())
                        b_full, b_over = borrows.head + borrows.cap, borrows.head + borrows.limit
                elif kind == RETURN:
                    if tool is None or user is None:
                        # Tool and user default to those of the borrow, if retained: the cap applies first (inline,
                        # as every return added by id alone comes here).
                        if len(borrowed) > b_full:
                            self._evict(borrows, borrows.over_cap())
                            b_full, b_over = borrows.head + borrows.cap, borrows.head + borrows.limit
                        lent = opened.get(borrow_id)
                        if lent is not None:
                            tool = lent[2] if tool is None else tool
                            user = lent[3] if user is None else user
                    tool, key = tool_key(tool) or self._tool_key(tool)
                    user = intern(user) or self._intern(user)
                    event = (ts, RETURN, tool, user, borrow_id, None, None, None, None)
                    if returned and ts >= returned[-1][0]:
                        returned.append(event)  # the common case of _log, inline
                    else:
                        self._log(returns, event)
                    if key is not None:
                        (find(key) or self._touched_bin(key, ts)).returns += 1
                    if len(returned) > r_over:
                        self._evict(returns, returns.over_cap())
                        r_over = returns.head + returns.limit
                else:
                    self._add_failure(ts, tool, user, reason, hot)
                # No bound to lower: an event appended after a log's last one is no older than that one, which is
                # retained (a log emptied by eviction is cleared), and _log lowers it for the rest.
        finally:
            self._version += len(entries)
            self._hot = {}

    def _add_failure(self, ts: float, name: Any, who: Any, why: Any, hot: dict[str, Bin]) -> None:
        """Add a failure to its log and its series' bin (the batch's bin of this minute, when `hot` has it)."""
        tool, key = self._tool_keys.get(name) or self._tool_key(name)
        user = self._interned.get(who) or self._intern(who)
        reason: Any = self._interned.get(why) or self._intern(why)  # a failure's reason is a name
        failures = self._failures
        self._log(failures, (ts, FAILURE, tool, user, None, None, reason, None, None))
        if key is not None:
            b = hot.get(key)
            if b is None:
                # Failures move no level and no bucket: the bin is stamped, not noted or reset.
                b = self._bin(key, ts)
                self._stamps[key] = self._next_stamp()
            self._failure_stamps[key] = self._stamps[key]
            counts = b.failures
            counts[reason] = counts.get(reason, 0) + 1
        if len(failures.items) - failures.head > failures.limit:
            self._evict(failures, failures.over_cap())

    def _log(self, log: EventLog, event: Raw) -> None:
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

        Its bucket goes and its level figures are worked out when read; a minute that cached in-use rows cover is
        noted to be redone. The bin is remembered in `_hot` while the batch stays in its minute, so the batch's later
        adds to it skip all that: no read comes between them, and eviction (which may drop bins) forgets `_hot`.
        """
        minute = int(ts // 60)
        bins = self._bins.get(key)
        b = bins.get(minute) if bins is not None else None
        if b is None:
            b = self._bin(key, ts)
        if minute < self._sealed:
            self._mark(key, minute)
        self._stamps[key] = self._next_stamp()
        b.bucket = None
        self._hot[key] = b
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
