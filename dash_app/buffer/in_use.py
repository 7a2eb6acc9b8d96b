"""Licenses in use per minute (peak, time-weighted mean, end) of each series, walked back from the count now."""

from bisect import bisect_left
from collections.abc import Collection, Mapping

from dash_app.buffer.core import Bin, Levels
from dash_app.buffer.ingest import Ingest
from dash_app.buffer.minute_bins import refigure
from dash_app.buffer.rows import InUseBin
from dash_app.timeutil import first_minute_at_or_after


class InUse(Ingest):
    """in_use_series and the cache of each series' closed minutes it extends."""

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
            self._moves_wanted = names if tools is not None else None
            try:
                for tool in sorted(names):
                    level_now = levels_now.get(tool, 0)
                    if not level_now and not self._moves_since(tool, first):
                        continue
                    out[tool] = self._tool_levels(tool, level_now, first, current, oldest, now)
            finally:
                self._moves_memo = {}
                self._moves_wanted = None
            return out

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
                    cached.cut(cut)
        for minute, keys in by_minute.items():
            present = [key for key in keys if minute in self._bins.get(key, ())]
            if not present:
                continue
            moves = self._minute_moves(minute, set(present))
            for key in present:
                refigure(self._bins[key][minute], moves.get(key, []))

    def _tool_levels(self, tool: str, level_now: int, first: int, current: int, oldest: int, now: float) -> list[InUseBin]:
        """Return one series' InUseBins from minute `first` to `current`, reusing and extending its cached closed rows."""
        bins = self._bins.get(tool, {})
        minutes = self._minutes.get(tool, [])
        # The level at the current minute's start: now's count minus the net of this and any later minute.
        anchor = level_now
        for m in minutes[bisect_left(minutes, current) :]:
            anchor -= bins[m].count - bins[m].returns
        cached = self._extended(tool, self._levels.get(tool), current, anchor)
        if cached is None:
            rows, ends, start = self._walk_back(tool, first, current, anchor)
            cached = Levels(first, start, rows, ends)
        elif first < cached.first:
            rows, ends, start = self._walk_back(tool, first, cached.first, cached.start)
            cached.rows[:0] = rows
            cached.ends[:0] = ends
            cached.first, cached.start = first, start
        if cached.first < oldest:
            # Rows older than the retention are never asked for again.
            cut = min(oldest - cached.first, len(cached.rows))
            if cut:
                cached.cut(cut)
        self._levels[tool] = cached
        out = cached.rows[first - cached.first :]
        out.append(self._current_row(tool, bins.get(current), current, anchor, now))
        return out

    def _extended(self, tool: str, cached: Levels | None, current: int, anchor: int) -> Levels | None:
        """Return the cached rows extended up to `current`, or None when they no longer agree with the count now."""
        if cached is None:
            return None
        upto = cached.first + len(cached.rows)
        if upto > current:
            return None  # the clock went back
        if upto < current:
            rows, ends, start = self._walk_back(tool, upto, current, anchor)
            if start != cached.end():
                return None  # every level moved (the count now disagrees with the events): start afresh
            cached.rows.extend(rows)
            cached.ends.extend(ends)
        elif cached.end() != anchor:
            return None
        return cached

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
            b = self._figured(tool, m, b)
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

    def _current_row(self, tool: str, b: Bin | None, minute: int, start: int, now: float) -> InUseBin:
        """Return the row of the minute holding now, its mean taken over its part up to now."""
        if b is None or not (b.count or b.returns):
            held = start if start > 0 else 0
            return InUseBin(minute * 60, held, float(held), held)
        b = self._figured(tool, minute, b)
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
        moves = self._memo_moves(tool, minute)
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
