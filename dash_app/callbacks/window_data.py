"""A view's window of data: from the buffer, read again only for the series that changed, or from the stored history."""

from collections.abc import Iterable, Iterator, Mapping
from typing import TYPE_CHECKING, Any, NamedTuple

from dash_app.buffer import MinuteFlow, WindowCounts
from dash_app.callbacks.window_stats import ToolStats, WindowData, peak_bins, true_denial_count
from dash_app.figures.in_use import Level
from dash_app.pressure import DEFAULT_GAP
from dash_app.timeutil import parse_iso

if TYPE_CHECKING:
    from dash_app.buffer import RealtimeMetricsBuffer
    from dash_app.store.history import HistoryKeeper


def history_window(history: "HistoryKeeper", window: float, now: float) -> WindowData:
    """Return the WindowData of a long window from the stored aggregates."""
    size, series = history.series(window, now=now)
    buckets: dict[str, list[Any]] = {}
    flows: dict[str, list[MinuteFlow]] = {}
    in_use: dict[str, list[Level]] = {}
    for tool, points in series.items():
        with_borrows = [p for p in points if p["count"]]
        if with_borrows:
            buckets[tool] = with_borrows
        starts = [int(parse_iso(p["timestamp"])) for p in points]
        flows[tool] = [
            MinuteFlow(start, p["count"], p["overage_count"], p["returns"], p["failures"]) for start, p in zip(starts, points)
        ]
        levels = [(start, p["peak"], p["avg_in_use"]) for start, p in zip(starts, points) if p["peak"]]
        if levels:
            in_use[tool] = levels
    return WindowData(size, buckets, flows, in_use, peak_bins={tool: peak_bins(levels) for tool, levels in in_use.items()})


class _Series(NamedTuple):
    """One series' part of a buffer window, with what it was read at."""

    stamp: int  # the buffer's stamp of the series when read
    level: int  # in use then
    buckets: list | None
    failing: list  # its MinuteFlows with failures, failures alone (the others are only kept as counts, in stats)
    in_use: list  # (minute, peak, average) where something was in use
    peaks: dict[int, int]  # {peak: minutes with it} of in_use
    stats: ToolStats
    moving: bool  # its current minute had events: that minute's average moves on as time passes
    read_at: float  # when it was read
    failure_stamp: int  # the buffer's failure stamp of the series when its true denials were counted


NO_COUNTS = WindowCounts(0, 0, 0, 0, [])

# Bucket counts summed over all series per bin, so a chart's "other tools" is the sum less the shown ones.
SUMMED = ("count", "overage_count")


def _add_buckets(sums: dict[str, dict[str, int]], buckets: Iterable[Mapping[str, Any]] | None, sign: int) -> None:
    """Add (sign 1) or take away (sign -1) one series' buckets from the per-bin sums; bins at 0 are dropped."""
    for b in buckets or ():
        stamp = b["timestamp"]
        for key in SUMMED:
            if b[key]:
                column = sums[key]
                left = column.get(stamp, 0) + sign * b[key]
                if left:
                    column[stamp] = left
                else:
                    del column[stamp]


def _swap_buckets(sums: dict[str, dict[str, int]], old: list[Any] | None, new: list[Any] | None) -> None:
    """Take a series' old buckets out of the per-bin sums and put its new ones in, skipping the buckets both share.

    The buffer hands out the same bucket object while its minute does not change, so a live tick swaps one or two.
    """
    if old is new:
        return
    kept = {id(b) for b in new or ()}.intersection(id(b) for b in old or ())
    _add_buckets(sums, [b for b in old or () if id(b) not in kept], -1)
    _add_buckets(sums, [b for b in new or () if id(b) not in kept], 1)


def _carried(entry: _Series, now: float) -> list[Level]:
    """Return `entry`'s levels with its current minute's average carried on to `now` at its level, unchanged since."""
    start, peak, average = entry.in_use[-1]
    elapsed, added = entry.read_at - start, now - entry.read_at
    if added <= 0 or elapsed + added <= 0:
        return entry.in_use
    carried = (average * elapsed + entry.level * added) / (elapsed + added)
    levels = entry.in_use[:-1]
    levels.append((start, peak, carried))
    return levels


class CarriedLevels(Mapping[str, list[Level]]):
    """Each series' levels as of `now`: a busy series' current minute's average is carried on when first asked for.

    Most series are never asked for (the overview draws ten by name), so a tick copies a few level lists, not one
    per busy series. Asking twice gives the same list.
    """

    def __init__(self, entries: Mapping[str, _Series], now: float) -> None:
        self._entries = entries  # the series with levels
        self._now = now
        self._made: dict[str, list[Level]] = {}

    def __getitem__(self, tool: str) -> list[Level]:
        made = self._made.get(tool)
        if made is None:
            entry = self._entries[tool]
            made = self._made[tool] = _carried(entry, self._now) if entry.moving else entry.in_use
        return made

    def __iter__(self) -> Iterator[str]:
        return iter(self._entries)

    def __len__(self) -> int:
        return len(self._entries)


class BufferWindows:
    """Windows the buffer holds, kept per series and read again only for the series that changed.

    A series is read again when the buffer's stamp of it moved (an add, eviction or expiry in its bins) or its count
    in use changed, and its levels when its current minute had events (their average runs up to now); every series is
    read again when the window slides to a new minute. With 200 tools a live tick changes two or three of them, so a
    refresh reads a few series, not all.
    """

    def __init__(self, buffer: "RealtimeMetricsBuffer", denial_gap: float = DEFAULT_GAP) -> None:
        self.buffer = buffer
        self.denial_gap = denial_gap  # seconds within which a user's denials of a tool count once (true denials)
        # window -> (minute, {series: _Series}, {bucket key: {timestamp: sum over series}})
        self._cache: dict[float, tuple[int, dict[str, _Series], dict[str, dict[str, int]]]] = {}

    def get(self, window: float, now: float, levels_now: Mapping[str, int]) -> WindowData:
        """Return the WindowData of `window` (1-minute bins) with `levels_now` ({tool: in use now})."""
        stamps = self.buffer.series_stamps()
        minute = int(now // 60)
        cached = self._cache.get(window)
        if cached is not None and cached[0] == minute:
            kept, sums = cached[1], cached[2]
        else:
            # Borrows and overage per bin summed over all series, kept up to date by the changed series' differences.
            kept, sums = {}, {key: {} for key in SUMMED}
        names = set(stamps) | {tool for tool, level in levels_now.items() if level}
        per_series = {tool: entry for tool, entry in kept.items() if tool in names}
        for tool in kept.keys() - per_series.keys():
            _add_buckets(sums, kept[tool].buckets, -1)
        changed = [
            tool
            for tool in names
            if (entry := per_series.get(tool)) is None
            or entry.stamp != stamps.get(tool, 0)
            or entry.level != levels_now.get(tool, 0)
        ]
        if changed:
            buckets = self.buffer.aggregate_tool_metrics(window, tools=changed)
            counts = self.buffer.window_counts(window, changed)
            in_use = self.buffer.in_use_series(window, levels_now, tools=changed)
            # True denials are counted again only for series whose failures came or went since they were counted.
            failure_stamps = self.buffer.failure_stamps()
            recount = [
                tool
                for tool in changed
                if tool in counts
                and counts[tool].failures
                and ((old := per_series.get(tool)) is None or old.failure_stamp != failure_stamps.get(tool, 0))
            ]
            failures = self.buffer.failure_users(window, recount) if recount else {}
            for tool in changed:
                old = per_series.get(tool)
                bins = in_use.get(tool, ())
                levels = [(b.minute, b.peak, b.average) for b in bins if b.peak]
                last = bins[-1] if bins else None
                live = last is not None and last.minute == minute * 60 and not (last.peak == last.average == last.end)
                count = counts.get(tool, NO_COUNTS)
                parts: list[Any] = [buckets.get(tool), count.failing, levels]
                if old is not None:
                    # A part equal to the cached one keeps the cached object, so charts built from it can be reused.
                    parts = [before if before == after else after for before, after in zip(old[2:5], parts)]
                    _swap_buckets(sums, old.buckets, parts[0])
                else:
                    _add_buckets(sums, parts[0], 1)
                tool_buckets, failing, levels = parts
                if tool in recount:
                    true = true_denial_count(failures.get(tool, ()), self.denial_gap)
                elif old is not None and count.failures:
                    true = old.stats.true_denials  # its failures are the ones counted then
                else:
                    true = 0
                per_series[tool] = _Series(
                    stamps.get(tool, 0),
                    levels_now.get(tool, 0),
                    tool_buckets,
                    failing,
                    levels,
                    old.peaks if old is not None and levels is old.in_use else peak_bins(levels),
                    ToolStats(
                        count.borrows,
                        count.overage,
                        count.returns,
                        count.failures,
                        max((peak for _, peak, _ in levels), default=0),
                        true,
                    ),
                    live,
                    now,
                    failure_stamps.get(tool, 0),
                )
        self._cache[window] = (minute, per_series, sums)
        return WindowData(
            60,
            buckets={tool: entry.buckets for tool, entry in per_series.items() if entry.buckets},
            # Every minute's flows of 200 tools would be 70,000 objects for the collector to scan: only counts are kept.
            flows={},
            in_use=CarriedLevels({tool: entry for tool, entry in per_series.items() if entry.in_use}, now),
            sums={tool: entry.stats for tool, entry in per_series.items()},
            failing={tool: entry.failing for tool, entry in per_series.items() if entry.failing},
            bucket_sums=sums,
            peak_bins={tool: entry.peaks for tool, entry in per_series.items() if entry.in_use},
        )
