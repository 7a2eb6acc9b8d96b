"""Licenses in use per series, walked through its events: each minute's peak, time-weighted mean and level at its end.

The level is walked forward through the raw events in time order from the `level_end` of the series' previous row
(0 before its first), each borrow adding one and each return taking one away; a return that would take it below 0
(its borrow came before the history) leaves it at 0. Events at one instant count together: `peak` looks at the level
after all of them. A minute or hour without a row held the level of the row before it throughout.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from typing import Any, TypeAlias

# An aggregate being summed: [count, overage_count, {users}, returns, {reason: count}], by (tool, bin).
Grouped: TypeAlias = dict[tuple[str, int], list[Any]]
# In use over one minute or hour: (peak, avg_in_use, level_end).
Levels: TypeAlias = tuple[int, float, int]
Query: TypeAlias = Callable[[str, Mapping[str, Any]], Iterable[Any]]  # partial(run, conn), or Store.read


def estimated_levels(start: int, count: int, returns: int) -> Levels:
    """Return in-use figures for a row stored without them: from its counts alone, as if its changes came mid-way."""
    end = max(0, start + count - returns)
    return max(start, end), (start + end) / 2, end


def level_before(query: Query, table: str, unit: str, tool: str, before: int) -> int:
    """Return the series' level at the end of its last row before `before` (0 if none); rows without one are estimated."""
    unknown: list[tuple[int, int]] = []
    level = 0
    # Newest first, stopping at the first row that knows its level: one row, unless rows predate the columns.
    for count, returns, end in query(
        f"SELECT count, returns, level_end FROM {table} WHERE tool = :tool AND {unit} < :before ORDER BY {unit} DESC",
        {"tool": tool, "before": before},
    ):
        if end is not None:
            level = end
            break
        unknown.append((count, returns))
    for count, returns in reversed(unknown):
        level = estimated_levels(level, count, returns)[2]
    return level


class LevelWalk:
    """One series' level walked through its events in time order, giving each minute with events its Levels."""

    __slots__ = ("level", "minute", "peak", "area", "at", "instant", "done")

    def __init__(self, level: int) -> None:
        self.level = level
        self.minute: int | None = None  # the minute being walked
        self.peak = 0
        self.area = 0.0  # level x seconds since the minute's start, up to `at`
        self.at = 0.0
        self.instant: float | None = None  # the time of the last event applied
        self.done: dict[int, Levels] = {}  # minute -> its figures, once walked past

    def add(self, ts: float, minute: int, step: int) -> None:
        """Apply one event: +1 a borrow, -1 a return, 0 a failure (which still gives its minute a row)."""
        if minute != self.minute:
            self.close()
            self.minute, self.peak, self.area, self.at = minute, self.level, 0.0, minute * 60.0
        if ts != self.instant:
            # The level after the previous instant is final now: it held from then until this event.
            if self.level > self.peak:
                self.peak = self.level
            self.area += self.level * (ts - self.at)
            self.at, self.instant = ts, ts
        if step:
            self.level = max(0, self.level + step)

    def close(self) -> None:
        """Finish the minute under way, its last level held to its end."""
        if self.minute is None:
            return
        if self.level > self.peak:
            self.peak = self.level
        self.area += self.level * (self.minute * 60 + 60 - self.at)
        self.done[self.minute] = (self.peak, self.area / 60, self.level)
        self.minute = None
