"""What one window says about each tool (borrows, denials, peak in use, pressure) and which tools the charts name."""

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple

from dash_app.buffer import Bucket, MinuteFlow
from dash_app.figures.in_use import Level
from dash_app.pressure import NO_PRESSURE, Pressure, by_pressure, counted_denials, share

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
    failing: Mapping[str, list[MinuteFlow]] | None = (
        None  # tool -> its bins with failures (their other counts 0), when computed with the data
    )
    bucket_sums: Mapping[str, Mapping[str, int]] | None = None  # "count" / "overage_count" -> {bin: sum over tools}
    # tool -> {peak in use: bins with that peak}, so the bins at a tool's total are counted without walking its levels
    peak_bins: Mapping[str, Mapping[int, int]] | None = None
    true_denials: Mapping[str, int] | None = None  # tool -> its true denials, when not in `sums` (the stored history's)


class ToolStats(NamedTuple):
    """One tool over one window: its activity counts and the most licenses it had in use at once."""

    borrows: int
    overage: int
    returns: int
    failures: int
    peak: int
    true_denials: int = 0  # its failures that are true denials (dash_app.pressure), where the users are known


EMPTY = ToolStats(0, 0, 0, 0, 0)


def tool_stats(status: Sequence[Mapping[str, Any]], data: WindowData) -> dict[str, ToolStats]:
    """Return {tool: ToolStats} for every tool of `status` and every tool with activity in the window."""
    stats: dict[str, ToolStats] = {}
    sums = data.sums or {}
    true = data.true_denials or {}
    for tool in {entry["tool"] for entry in status} | set(data.flows) | set(data.in_use) | set(sums):
        known = sums.get(tool)
        if known is None:
            known = series_stats(data.flows.get(tool, ()), data.in_use.get(tool, ()), true.get(tool, 0))
        stats[tool] = known
    for entry in status:
        # Held now counts too: a window that starts after a borrow still saw it held.
        current = stats[entry["tool"]]
        if entry["borrowed"] > current.peak:
            stats[entry["tool"]] = current._replace(peak=entry["borrowed"])
    return stats


def series_stats(flows: Sequence[MinuteFlow], in_use: Sequence[Level], true_denials: int = 0) -> ToolStats:
    """Return one series' counts over its flows and its highest peak in use."""
    return ToolStats(
        borrows=sum(f.borrows for f in flows),
        overage=sum(f.overage for f in flows),
        returns=sum(f.returns for f in flows),
        failures=sum(sum(f.failures.values()) for f in flows),
        peak=max((peak for _, peak, _ in in_use), default=0),
        true_denials=true_denials,
    )


def true_denial_count(failures: Iterable[tuple[float, str]], gap: float) -> int:
    """Return the true denials among one series' (ts, user) failures in time order."""
    by_user: dict[str, list[float]] = {}
    for ts, user in failures:
        by_user.setdefault(user, []).append(ts)
    return sum(sum(counted_denials(times, gap)) for times in by_user.values())


def peak_bins(in_use: Iterable[Level]) -> dict[int, int]:
    """Return {peak in use: how many bins had it} of one series' levels."""
    counts: dict[int, int] = {}
    for _, peak, _ in in_use:
        counts[peak] = counts.get(peak, 0) + 1
    return counts


def totals(stats: Mapping[str, ToolStats]) -> ToolStats:
    """Return the counts summed over tools (the peak summed too: an upper bound of the pool's peak)."""
    return ToolStats(*(sum(column) for column in zip(EMPTY, *stats.values())))


def pressures(
    status: Sequence[Mapping[str, Any]],
    data: WindowData,
    stats: Mapping[str, ToolStats],
    window: float,
    kept: dict[str, tuple[tuple[Any, ...], Pressure]] | None = None,
) -> dict[str, Pressure]:
    """Return {tool: Pressure} over the window for every tool of `stats`.

    The share of time at the total is counted in whole bins: the bins whose peak in use reached the total, times the
    bin's length, over the window. Queued is what the polled servers say now. `kept` ({tool: (its inputs, its
    Pressure)}, the caller's, for one window), when given, keeps each tool's Pressure while its inputs are the same.
    """
    entries = {entry["tool"]: entry for entry in status}
    bins = data.peak_bins or {}
    out: dict[str, Pressure] = {}
    for tool, s in stats.items():
        entry = entries.get(tool)
        total = entry["total"] if entry else None
        queued = entry.get("queued", 0) if entry else 0
        if not (total or s.true_denials or queued):
            out[tool] = NO_PRESSURE
            continue
        peaks = bins.get(tool, {})
        inputs = (total, queued, s, peaks, data.bin_seconds)
        found = kept.get(tool) if kept is not None else None
        if found is not None and found[0] == inputs:
            out[tool] = found[1]
            continue
        at_total = 0
        if total and s.peak >= total:  # a tool that never reached its total has no bin at it
            at_total = sum(n for peak, n in peaks.items() if peak >= total)
        out[tool] = Pressure(
            min(1.0, share(at_total * data.bin_seconds, window)), s.true_denials, queued or 0, share(s.peak, total)
        )
        if kept is not None:
            kept[tool] = (inputs, out[tool])
    return out


def top_tools(stats: Mapping[str, ToolStats], ranked: Sequence[str], limit: int = SHOWN_TOOLS) -> list[str]:
    """Return the `limit` tools the charts show by name: the first of `ranked` (most pressed first) with any activity.

    Tools with no activity and nothing in use are never shown by name.
    """
    shown = []
    for tool in ranked:
        s = stats.get(tool)
        if s is not None and (s.peak or s.borrows or s.failures):
            shown.append(tool)
            if len(shown) == limit:
                break
    return shown


def pressure_order(pressure: Mapping[str, Pressure], stats: Mapping[str, ToolStats]) -> list[str]:
    """Return the tools most pressed first (dash_app.pressure's order); those under none after, the busiest first."""
    pressed = {tool: p for tool, p in pressure.items() if p != NO_PRESSURE}
    # Tools with no total, no denials and no queue (outside the inventory, or idle) have no pressure to rank them by.
    rest = [tool for tool in pressure if tool not in pressed]
    rest.sort(key=lambda t: (-stats[t].peak, -stats[t].borrows, -stats[t].failures, t))
    return by_pressure(pressed) + rest
