"""A pool's pressure over a window and its true denials: how the estate's tools are ranked, live and over history.

Definitions (docs/capacity.md#pressure gives them with their formulas):

- A **true denial**: a user's denials of one tool are taken in time order; the first counts, and so does every later
  one at least `gap` seconds after the last one that counted. Retries within the gap (a user pressing the button
  again, a tool retrying) are the same unmet need, so they count once.
- A tool's **pressure** in a window orders by, in turn: the share of the window's time its pool was at its total,
  its true denials, its queued requests, and its peak in use as a share of its total. More of the first wins; the
  next one only breaks ties. A tool without a total has shares of 0.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import NamedTuple


class Pressure(NamedTuple):
    """One tool's pressure figures over a window; a greater tuple is more pressure."""

    share_at_total: float
    true_denials: int
    queued: int
    peak_share: float


NO_PRESSURE = Pressure(0.0, 0, 0, 0.0)
# --true-denial-minutes' default, and the gap in seconds wherever a caller names none.
TRUE_DENIAL_MINUTES = 10
DEFAULT_GAP = TRUE_DENIAL_MINUTES * 60.0


def counted_denials(times: Sequence[float], gap: float) -> list[bool]:
    """Return, for one user's denials of one tool in time order, which of them are true denials (see the module)."""
    flags: list[bool] = []
    last = None
    for ts in times:
        counts = last is None or ts - last >= gap
        flags.append(counts)
        if counts:
            last = ts
    return flags


def true_denials_by_tool(denials: Iterable[tuple[float, str, str]], gap: float) -> dict[str, int]:
    """Return the true denials per tool of (ts, tool, user) denials, in any order; a tool with none is absent."""
    times: dict[tuple[str, str], list[float]] = {}
    for ts, tool, user in denials:
        times.setdefault((tool, user), []).append(ts)
    out: dict[str, int] = {}
    for (tool, _user), seen in times.items():
        seen.sort()
        out[tool] = out.get(tool, 0) + sum(counted_denials(seen, gap))
    return out


def share(part: float, whole: float | None) -> float:
    """Return part / whole, or 0 when there is no whole (a tool outside the inventory, or a pool of 0)."""
    return part / whole if whole else 0.0


def by_pressure(pressures: dict[str, Pressure]) -> list[str]:
    """Return the tools most pressed first; equal pressure in name order, so the order never flickers."""
    # By name, then (a stable sort keeps that order among equals) by pressure, greatest first: two C-level sorts.
    return sorted(sorted(pressures), key=pressures.__getitem__, reverse=True)
