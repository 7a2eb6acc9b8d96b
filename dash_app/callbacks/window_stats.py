"""What one window says about each tool (borrows, denials, peak in use) and which tools the charts show by name."""

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple

from dash_app.buffer import Bucket, MinuteFlow
from dash_app.figures.in_use import Level

# Charts show this many tools by name; the rest share one "Other tools" series. The palette has as many colours.
SHOWN_TOOLS = 10


@dataclass(frozen=True)
class WindowData:
    """A window's data, from the buffer (1-minute bins) or the stored history (longer bins)."""

    bin_seconds: int
    buckets: Mapping[str, list[Bucket]]  # tool -> bins with borrows
    flows: Mapping[str, list[MinuteFlow]]  # tool -> bins with any activity (empty when `sums` and `failing` are given)
    in_use: Mapping[str, list[Level]]  # tool -> bins where licenses were in use
    sums: Mapping[str, "ToolStats"] | None = None  # tool -> its window's counts, when computed with the data
    failing: Mapping[str, list[MinuteFlow]] | None = None  # tool -> its bins with failures, when computed with the data
    bucket_sums: Mapping[str, Mapping[str, int]] | None = None  # "count" / "overage_count" -> {bin: sum over tools}


class ToolStats(NamedTuple):
    """One tool over one window: its activity counts and the most licenses it had in use at once."""

    borrows: int
    overage: int
    returns: int
    failures: int
    peak: int


EMPTY = ToolStats(0, 0, 0, 0, 0)


def tool_stats(status: Sequence[Mapping[str, Any]], data: WindowData) -> dict[str, ToolStats]:
    """Return {tool: ToolStats} for every tool of `status` and every tool with activity in the window."""
    stats: dict[str, ToolStats] = {}
    sums = data.sums or {}
    for tool in {entry["tool"] for entry in status} | set(data.flows) | set(data.in_use) | set(sums):
        known = sums.get(tool)
        stats[tool] = known if known is not None else series_stats(data.flows.get(tool, ()), data.in_use.get(tool, ()))
    for entry in status:
        # Held now counts too: a window that starts after a borrow still saw it held.
        current = stats[entry["tool"]]
        if entry["borrowed"] > current.peak:
            stats[entry["tool"]] = current._replace(peak=entry["borrowed"])
    return stats


def series_stats(flows: Sequence[MinuteFlow], in_use: Sequence[Level]) -> ToolStats:
    """Return one series' counts over its flows and its highest peak in use."""
    return ToolStats(
        borrows=sum(f.borrows for f in flows),
        overage=sum(f.overage for f in flows),
        returns=sum(f.returns for f in flows),
        failures=sum(sum(f.failures.values()) for f in flows),
        peak=max((peak for _, peak, _ in in_use), default=0),
    )


def totals(stats: Mapping[str, ToolStats]) -> ToolStats:
    """Return the counts summed over tools (the peak summed too: an upper bound of the pool's peak)."""
    return ToolStats(*(sum(column) for column in zip(EMPTY, *stats.values())))


def top_tools(stats: Mapping[str, ToolStats], order: Sequence[str], limit: int = SHOWN_TOOLS) -> list[str]:
    """Return the `limit` tools the charts show by name: the window's highest peak in use, then most borrows.

    Ties keep `order` (the inventory's), so the choice does not flicker between equal tools. Tools with no
    activity and nothing in use are never shown by name.
    """
    rank = {tool: index for index, tool in enumerate(order)}
    active = [t for t, s in stats.items() if s.peak or s.borrows or s.failures]
    active.sort(key=lambda t: (-stats[t].peak, -stats[t].borrows, -stats[t].failures, rank.get(t, len(rank)), t))
    return active[:limit]
