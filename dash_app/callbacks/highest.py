"""Parts of the overview kept from one build to the next: the in-use chart's other tools' line, kept in parts so a live
tick that changes one tool redoes one part, each shown tool's points while its levels stay the same, its bars while its
buckets do, and each tool's grid row and pressure while their inputs do (all of one window in a Kept)."""

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from itertools import islice
from operator import is_
from typing import Any

from dash_app.figures.common import Frame
from dash_app.figures.in_use import (
    Highest,
    Level,
    Points,
    highest_points,
    highest_shares,
    merge_highest,
    next_highest_points,
    next_share_points,
    share_points,
)
from dash_app.figures.timeseries import Buckets, bar_points, bin_sums
from dash_app.pressure import Pressure

# Tools per part, and parts per group: with 200 tools a tick redoes a part of 4 tools, then only the bins that part
# changed in its group of 16 parts and in the whole (4 groups).
PART_SIZE = 4
GROUP_PARTS = 16
# Shown tools' lines and bars kept at most (tools once shown and no longer: a few dozen at most).
KEPT = 64


Member = tuple[str, int, object]  # (tool, total, the object that stands for its peaks)


def _same(a: tuple[Member, ...], b: tuple[Member, ...]) -> bool:
    """Tell whether two parts hold the same tools and totals and the very same objects for their peaks."""
    return len(a) == len(b) and all(x[0] == y[0] and x[1] == y[1] and x[2] is y[2] for x, y in zip(a, b))


class OtherTools:
    """Each part's Highest, kept while its tools, their totals and their peaks (the same objects) stay the same.

    A tool's peaks are stood for by its WindowData.peak_bins mapping, which BufferWindows keeps as the same object
    while the tool's peaks do not change (its levels list is new whenever the current minute's average moves on).
    Parts are cut from a fixed order of the tools (the inventory's), so a change of the tools shown by name moves
    only the parts holding them.
    """

    def __init__(self) -> None:
        self._parts: dict[int, tuple[tuple[Member, ...], Highest]] = {}
        self._groups: dict[int, tuple[tuple[int, ...], Highest]] = {}  # group -> (its parts' numbers, their Highest)
        # shown tool -> (its levels, total, first bin, bins, its points): the levels kept alive, compared by identity
        self._points: dict[str, tuple[Sequence[Level], int, int, int, Points]] = {}
        self._line: tuple[tuple[int, int], Points] | None = None  # (the bins it is on, the other tools' line)
        self._best: Highest | None = None  # the last Highest of all the parts

    def points(self, tool: str, levels: Sequence[Level], total: int, frame: Frame) -> Points:
        """Return a shown tool's share_points: the same lists as last time while its levels, total and bins are.

        Levels that differ only in their last entry (the current minute's average carried on to now, every tick of a
        busy tool) redo that one point.
        """
        bins = frame.bins
        found = self._points.get(tool)
        if found is not None and found[1:4] == (total, bins.start, len(bins)):
            before = found[0]
            if before is levels:
                return found[4]
            if levels and len(before) == len(levels) and all(map(is_, islice(levels, len(levels) - 1), before)):
                made = next_share_points(found[4], levels[-1], total, frame)
                self._points[tool] = (levels, total, bins.start, len(bins), made)
                return made
        made = share_points(levels, total, frame)
        if len(self._points) > KEPT:
            self._points.clear()
        self._points[tool] = (levels, total, bins.start, len(bins), made)
        return made

    def highest(
        self,
        order: Sequence[str],
        in_use: Mapping[str, Sequence[Level]],
        peaks: Mapping[str, object],
        rest: list[tuple[str, int]],
    ) -> tuple[Highest, set[int] | None]:
        """Return the Highest of `rest` ((tool, total) of the other tools) and the bins it changed in since the last
        call (None: any may have), reusing the parts that did not change.

        `peaks` holds, per tool, an object that is the same exactly while its levels' peaks are. A redone part's
        changed bins are worked out again in its group and then in the whole, each from the Highest below it.
        """
        rank = {tool: index for index, tool in enumerate(order)}
        parts: dict[int, list[Member]] = {}
        outside = 0  # tools only the buffer has come after the inventory's, in the order of `rest`
        for tool, total in rest:
            index = rank.get(tool)
            if index is None:
                index, outside = len(rank) + outside, outside + 1
            # Without a stand-in the levels list is its own: a new list always counts as a change.
            stand_in = peaks.get(tool)
            parts.setdefault(index // PART_SIZE, []).append((tool, total, in_use.get(tool) if stand_in is None else stand_in))
        kept: dict[int, tuple[tuple[Member, ...], Highest]] = {}
        dirty: dict[int, set[int] | None] = {}  # group -> the bins its redone parts changed in (None: all)
        for number in sorted(parts):
            members = tuple(parts[number])
            found = self._parts.get(number)
            if found is None or not _same(found[0], members):
                made = highest_shares(in_use, [(tool, total) for tool, total, _ in members])
                _note(dirty, number // GROUP_PARTS, None if found is None else _changed_bins(found[1], made))
                found = (members, made)
            kept[number] = found
        for number in self._parts.keys() - kept.keys():
            dirty[number // GROUP_PARTS] = None
        groups: dict[int, list[int]] = {}
        for number in kept:
            groups.setdefault(number // GROUP_PARTS, []).append(number)
        merged: dict[int, tuple[tuple[int, ...], Highest]] = {}
        changed: set[int] | None = set() if groups.keys() == self._groups.keys() else None
        for group, numbers in groups.items():
            below = [kept[number][1] for number in numbers]
            found_group = self._groups.get(group)
            bins = dirty.get(group, set())
            if found_group is None or found_group[0] != tuple(numbers) or bins is None:
                found_group, changed = (tuple(numbers), merge_highest(below)), None
            elif bins:
                found_group = (found_group[0], _updated(found_group[1], bins, below))
                if changed is not None:
                    changed |= bins
            merged[group] = found_group
        below = [merged[group][1] for group in sorted(merged)]
        if self._best is None or changed is None:
            best, changed = merge_highest(below), None
        else:
            best = _updated(self._best, changed, below) if changed else self._best
            changed = {start for start in changed if best.get(start) != self._best.get(start)}
        self._parts, self._groups, self._best = kept, merged, best
        return best, changed

    def line(
        self,
        order: Sequence[str],
        in_use: Mapping[str, Sequence[Level]],
        peaks: Mapping[str, object],
        rest: list[tuple[str, int]],
        frame: Frame,
    ) -> Points:
        """Return the other tools' highest_points: last time's lists while no bin changed, else with its changed bins redone."""
        best, changed = self.highest(order, in_use, peaks, rest)
        bins = (frame.bins.start, len(frame.bins))
        if self._line is None or self._line[0] != bins or changed is None:
            made = highest_points(best, frame)
        elif changed:
            made = next_highest_points(self._line[1], best, changed, frame)
        else:
            return self._line[1]
        self._line = (bins, made)
        return made


def _changed_bins(before: Highest, after: Highest) -> set[int]:
    """Return the bins whose row differs between two Highest."""
    return {start for start, _ in set(before.items()).symmetric_difference(after.items())}


def _note(dirty: dict[int, set[int] | None], group: int, bins: set[int] | None) -> None:
    """Add `bins` (None: all) to what changed in `group`."""
    noted = dirty.get(group, set())
    if bins is None or noted is None:
        dirty[group] = None
    else:
        dirty[group] = noted | bins


def _updated(merged: Highest, bins: set[int], below: Sequence[Highest]) -> Highest:
    """Return a copy of `merged` (merge_highest of `below`) with `bins` worked out again from `below`."""
    out = dict(merged)
    for start in bins:
        best = None
        for part in below:
            row = part.get(start)
            if row is not None and (best is None or row[0] > best[0]):
                best = row  # the first part's on a tie, as merge_highest
        if best is None:
            out.pop(start, None)
        else:
            out[start] = best
    return out


class ToolBars:
    """Each shown tool's bars of one bucket key, the same lists as last time while its buckets (the same list) are;
    and the shown tools' sums per bin, the same while all their buckets are."""

    def __init__(self) -> None:
        # (tool, key) -> (its buckets, kept alive and compared by identity; the zone; its bar_points)
        self._bars: dict[tuple[str, str], tuple[object, str, tuple[list[str], list[int]]]] = {}
        # key -> (the shown tools, their buckets kept alive and compared by identity, bin_sums)
        self._sums: dict[str, tuple[tuple[str, ...], list[object], Mapping[str, int]]] = {}

    def sums(self, shown: Sequence[str], buckets_by_tool: Buckets, key: str) -> Mapping[str, int]:
        """Return timeseries.bin_sums of the `shown` tools' buckets, of `key`."""
        lists: list[object] = [buckets_by_tool.get(tool, ()) for tool in shown]
        found = self._sums.get(key)
        if found is not None and found[0] == tuple(shown) and all(a is b for a, b in zip(found[1], lists)):
            return found[2]
        made = bin_sums(buckets_by_tool, shown, key)
        self._sums[key] = (tuple(shown), lists, made)
        return made

    def points(self, tool: str, buckets: Sequence[Mapping[str, Any]], key: str, frame: Frame) -> tuple[list[str], list[int]]:
        """Return `tool`'s bar_points of `key`."""
        found = self._bars.get((tool, key))
        if found is not None and found[0] is buckets and found[1] == frame.zone:
            return found[2]
        made = bar_points(buckets, key, frame)
        if len(self._bars) > KEPT:
            self._bars.clear()
        self._bars[(tool, key)] = (buckets, frame.zone, made)
        return made


@dataclass
class Kept:
    """What the overview of one window keeps from one build to the next."""

    others: OtherTools = field(default_factory=OtherTools)
    bars: ToolBars = field(default_factory=ToolBars)
    rows: dict[str, tuple[tuple[Any, ...], dict[str, Any]]] = field(default_factory=dict)  # tables.tool_rows' `kept`
    pressures: dict[str, tuple[tuple[Any, ...], Pressure]] = field(default_factory=dict)  # window_stats.pressures'
