"""A log of raw events of one kind, sorted by time, with a moving head so dropping the oldest is O(1)."""

from bisect import bisect_left, insort_right
from collections.abc import Callable
from operator import itemgetter
from typing import Any

# Evictions of at least this many events clear whole minutes at once instead of undoing event by event.
BULK_EVICTION = 32

# Raw events are plain tuples in the field order of dash_app.events.Event (ts, kind, tool, user, borrow_id,
# is_overage, reason, host, version), with a float ts and shared name strings, sorted by ts. Plain tuples, not
# Events: CPython's collector stops tracking a tuple that holds only strings and numbers, never a NamedTuple, and
# 200,000 tracked events made every collection walk them all (two thirds of the cost of an add).
Raw = tuple[Any, ...]
TS = itemgetter(0)


class EventLog:
    """Events of one kind, sorted by time, with a moving head so eviction is O(1)."""

    __slots__ = ("kind", "items", "head", "cap", "limit", "bulk")

    def __init__(self, kind: str, cap: int) -> None:
        self.kind = kind
        self.items: list[Raw] = []
        self.head = 0
        self.cap = cap
        self.bulk = BULK_EVICTION  # read when the log is made, so a test can lower it for one buffer
        # Adds may run past the cap by a little; the excess is evicted in one go, and before every read.
        self.limit = cap + max(self.bulk, cap // 64)

    def over_cap(self) -> int:
        return len(self.items) - self.head - self.cap

    def __len__(self) -> int:
        return len(self.items) - self.head

    def insert(self, event: Raw) -> None:
        items = self.items
        if not items or event[0] >= items[-1][0]:
            items.append(event)
        else:
            insort_right(items, event, lo=self.head, key=TS)

    def oldest(self) -> Raw | None:
        return self.items[self.head] if self.head < len(self.items) else None

    def pop_front(self, n: int) -> list[Raw]:
        """Remove and return the n oldest events."""
        start = self.head
        chunk = self.items[start : start + n]
        self.head = start + n
        # Compact now and then so the list does not grow without bound, and always once nothing is left: the adds
        # take a non-empty list's last item for a retained event.
        if self.head == len(self.items) or (self.head >= 4096 and self.head * 2 >= len(self.items)):
            del self.items[: self.head]
            self.head = 0
        return chunk

    def count_before(self, cutoff: float) -> int:
        """Return how many events are older than `cutoff`."""
        return bisect_left(self.items, cutoff, lo=self.head, key=TS) - self.head

    def in_range(self, start: float, stop: float) -> list[Raw]:
        """Return the events from `start` (inclusive) to `stop` (exclusive)."""
        lo = bisect_left(self.items, start, lo=self.head, key=TS)
        return self.items[lo : bisect_left(self.items, stop, lo=lo, key=TS)]

    def since(self, cutoff: float, limit: int | None = None) -> list[Raw]:
        start = bisect_left(self.items, cutoff, lo=self.head, key=TS)
        if limit is not None:
            start = max(start, len(self.items) - limit)
        return self.items[start:]

    def since_of(
        self,
        cutoff: float,
        tool: str,
        limit: int | None = None,
        series_of: Callable[[str], str | None] | None = None,
    ) -> list[Raw]:
        """Like since(), for one tool or (given `series_of`) series: scans back from the newest; a quiet one costs its window."""
        start = bisect_left(self.items, cutoff, lo=self.head, key=TS)
        found: list[Raw] = []
        items = self.items
        for i in range(len(items) - 1, start - 1, -1):
            event = items[i]
            name = event[2]
            if name == tool or (series_of is not None and name is not None and series_of(name) == tool):
                found.append(event)
                if limit is not None and len(found) >= limit:
                    break
        found.reverse()
        return found
