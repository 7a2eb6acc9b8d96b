"""The in-use chart's parts kept from one build to the next: the other tools' line, kept in parts so a live tick that
changes one tool redoes one part, and each shown tool's points while its levels stay the same."""

from collections.abc import Mapping, Sequence
from itertools import islice
from operator import is_
from typing import Any

from dash_app.figures.common import Frame
from dash_app.figures.in_use import Highest, Level, highest_points, highest_shares, merge_highest, next_share_points, share_points

# Tools per part (and parts per group): with 200 tools a tick redoes a part of 8 and merges a group of 8 parts and 4 groups.
PART_SIZE = 8


Member = tuple[str, int, object]  # (tool, total, the object that stands for its peaks)
Points = tuple[list[float], list[list[Any]]]  # a line's y values and customdata on a frame's axis_times


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
        if len(self._points) > 4 * PART_SIZE:
            self._points.clear()  # tools once shown and no longer: a few dozen at most
        self._points[tool] = (levels, total, bins.start, len(bins), made)
        return made

    def highest(
        self,
        order: Sequence[str],
        in_use: Mapping[str, Sequence[Level]],
        peaks: Mapping[str, object],
        rest: list[tuple[str, int]],
    ) -> Highest:
        """Return the Highest of `rest` ((tool, total) of the other tools), reusing the parts that did not change.

        `peaks` holds, per tool, an object that is the same exactly while its levels' peaks are.
        """
        rank = {tool: index for index, tool in enumerate(order)}
        parts: dict[int, list[Member]] = {}
        outside = 0  # tools only the buffer has come after the inventory's, in the order of `rest`
        for tool, total in rest:
            index = rank.get(tool)
            if index is None:
                index, outside = len(rank) + outside, outside + 1
            # Without a stand-in the levels list is its own: a new list always counts as a change.
            parts.setdefault(index // PART_SIZE, []).append((tool, total, peaks.get(tool, in_use.get(tool))))
        kept: dict[int, tuple[tuple[Member, ...], Highest]] = {}
        redone: set[int] = set()
        for number in sorted(parts):
            members = tuple(parts[number])
            found = self._parts.get(number)
            if found is None or not _same(found[0], members):
                found = (members, highest_shares(in_use, [(tool, total) for tool, total, _ in members]))
                redone.add(number)
            kept[number] = found
        # Parts are merged by groups of PART_SIZE, each group kept while none of its parts was redone or went.
        groups: dict[int, list[int]] = {}
        for number in kept:
            groups.setdefault(number // PART_SIZE, []).append(number)
        merged: dict[int, tuple[tuple[int, ...], Highest]] = {}
        for group, numbers in groups.items():
            found_group = self._groups.get(group)
            if found_group is None or found_group[0] != tuple(numbers) or redone.intersection(numbers):
                found_group = (tuple(numbers), merge_highest(kept[number][1] for number in numbers))
            merged[group] = found_group
        self._parts, self._groups = kept, merged
        return merge_highest(merged[group][1] for group in sorted(merged))

    def line(
        self,
        order: Sequence[str],
        in_use: Mapping[str, Sequence[Level]],
        peaks: Mapping[str, object],
        rest: list[tuple[str, int]],
        frame: Frame,
    ) -> Points:
        """Return the other tools' highest_points, the same lists as last time while no group was redone."""
        before = self._groups  # the groups of the last call, kept alive here, so `is` cannot meet a reused id
        best = self.highest(order, in_use, peaks, rest)
        bins = (frame.bins.start, len(frame.bins))
        same_groups = len(before) == len(self._groups) and all(before.get(g) is found for g, found in self._groups.items())
        if same_groups and self._line is not None and self._line[0] == bins:
            return self._line[1]
        made = highest_points(best, frame)
        self._line = (bins, made)
        return made
