"""The per-series minute bins: finding, making and dropping them, their buckets, and noting the changes in-use reads must redo."""

import math
from bisect import bisect_left
from typing import Any

from dash_app.buffer.core import Bin, BufferCore
from dash_app.buffer.event_log import TS
from dash_app.buffer.rows import Bucket
from dash_app.timeutil import iso_minute

Moves = list[tuple[float, int]]  # (ts, +1 for a borrow or -1 for a return), in time order


def refigure(b: Bin, moves: Moves) -> None:
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
    b.figured = b.count + b.returns


class MinuteBins(BufferCore):
    """The bins of each series by minute, kept with the sorted list of their minutes."""

    def _bin(self, tool: str, ts: float) -> Bin:
        minute = int(ts // 60)
        bins = self._bins.get(tool)
        if bins is None:
            bins = self._bins[tool] = {}
            self._minutes[tool] = []
        b = bins.get(minute)
        if b is None:
            b = bins[minute] = Bin()
            minutes = self._minutes[tool]
            if not minutes or minute > minutes[-1]:
                minutes.append(minute)
            else:
                minutes.insert(bisect_left(minutes, minute), minute)
        return b

    def _existing_bin(self, tool: str, ts: float) -> Bin:
        return self._bins[tool][int(ts // 60)]

    def _drop_bin_if_empty(self, tool: str, ts: float, b: Bin) -> None:
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

    def _mark(self, key: str, minute: int) -> None:
        """Note that `key`'s bin of `minute` changed in a way the cached in-use rows do not follow."""
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

    def _minute_moves(self, minute: int, keys: set[str] | None) -> dict[str, Moves]:
        """Return the borrows (+1) and returns (-1) of `minute` by series (those in `keys`, or all), in time order."""
        found: dict[str, Moves] = {}
        start, stop = minute * 60, minute * 60 + 60
        series: dict[str | None, Any] = {}  # tool name -> series, or "" for one not wanted (no series is "")
        for log, step in ((self._borrows, 1), (self._returns, -1)):
            for event in log.in_range(start, stop):
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
            moves.sort(key=TS)  # stable: events at one instant keep their order, which does not matter
        return found

    def _memo_moves(self, tool: str, minute: int) -> Moves:
        """Return one series' moves in `minute`; one read may walk many series through one minute, so it splits it once.

        The split keeps only the series the read walks (`_moves_wanted`, or all when None).
        """
        by_series = self._moves_memo.get(minute)
        if by_series is None:
            by_series = self._moves_memo[minute] = self._minute_moves(minute, self._moves_wanted)
        return by_series.get(tool, [])

    def _figured(self, tool: str, minute: int, b: Bin) -> Bin:
        """Return `b` with its level figures worked out for the events it holds now."""
        if b.figured != b.count + b.returns:
            refigure(b, self._memo_moves(tool, minute))
        return b
