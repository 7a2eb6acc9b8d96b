"""What to buy and what to drop: each inventory tool's demand (served sessions plus unmet demand) against its total.

Definitions (docs/capacity.md#recommendations gives them with their formulas), for a tool with a total T over [start, end):

- Unmet demand: each true denial adds a would-be session [ts, ts + m), m the median length of the tool's sessions
  that start in the period and are returned with a positive length (an hour when there are none).
- demand(t) = in_use(t) + the would-be sessions held at t; its p99 is the smallest L with demand <= L for at least
  99 % of the period (capacity's coverage, over demand).
- buy n = p99 - T when p99 > T (the smallest n >= 1 with T + n >= p99); denials_served = the true denials at whose
  instant demand (their own would-be session counted) is at most T + n.
- drop n = T - peak - 1 when there is no true denial and that is at least 1 (the largest n with peak < T - n);
  saving = the commit advice's saving when its best commit is below the current commit, else 0.
- keep otherwise, with the reason in words.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd

from dash_app.analytics.estate import true_denials
from dash_app.analytics.levels import (
    Bools,
    Factorized,
    Floats,
    Ints,
    Sessions,
    check_period,
    overlapping,
    time_per_level,
    tool_sort,
)
from dash_app.analytics.spec import NO_SPEC, Spec

PERCENT = 99
# The would-be session's length for a tool none of whose sessions in the period was returned.
NO_MEDIAN_SECONDS = 3600.0
ACTIONS = ("buy", "drop", "keep")


def median_lengths(s: Sessions, n_tools: int, start: float) -> Floats:
    """Return per tool the median length of its sessions started in the period and returned, of positive length."""
    length = s.returned - s.borrowed
    done = np.flatnonzero((s.borrowed >= start) & np.isfinite(s.returned) & (length > 0))
    order = tool_sort(s.code, done[np.argsort(length[done])].astype(np.int64), n_tools)
    codes, lengths = s.code[order], length[order]
    seg = np.searchsorted(codes, np.arange(n_tools + 1))
    counts = np.diff(seg)
    out = np.full(n_tools, NO_MEDIAN_SECONDS)
    some = counts > 0
    lo = seg[:-1][some] + (counts[some] - 1) // 2
    hi = seg[:-1][some] + counts[some] // 2
    out[some] = (lengths[lo] + lengths[hi]) / 2.0
    return out


def _held_at(borrowed: Floats, returned: Floats, at: Floats) -> Ints:
    """Return how many of the spans [borrowed, returned) hold each instant of `at`."""
    started = np.searchsorted(np.sort(borrowed), at, side="right")
    ended = np.searchsorted(np.sort(returned), at, side="right")
    return np.asarray(started - ended, dtype=np.int64)


class _Demand:
    """The period's served sessions and would-be sessions of every tool, and demand's p99 per tool of `asked`."""

    def __init__(
        self, s: Sessions, n_tools: int, wanted: Ints, wanted_at: Floats, asked: Bools, start: float, end: float
    ) -> None:
        self.s, self.start = s, start
        self.lengths = median_lengths(s, n_tools, start)
        self.wanted, self.wanted_at = wanted, wanted_at
        self.wanted_until = wanted_at + self.lengths[wanted]
        # Demand is worked out only for the tools asked about: the sessions of the others are left out of the sort.
        served, unmet = asked[s.code], asked[wanted]
        nothing = np.zeros(int(served.sum()) + int(unmet.sum()), dtype=np.int64)
        demand = Sessions(
            np.concatenate((s.code[served], wanted[unmet])),
            np.concatenate((s.borrowed[served], wanted_at[unmet])),
            np.concatenate((s.returned[served], self.wanted_until[unmet])),
            nothing,
            nothing.astype(bool),
            nothing,
            [],
        )
        timeline = time_per_level(demand, n_tools, start, end)
        period = end - start
        self.p99 = np.zeros(n_tools, dtype=np.int64)
        for k in np.flatnonzero(asked).tolist():
            cumulative = np.cumsum(timeline.hist[timeline.offsets[k] : timeline.offsets[k + 1]])
            reached = cumulative * 100 >= PERCENT * period
            self.p99[k] = int(np.argmax(reached)) if reached.any() else int(timeline.peak[k])
        self.n_tools = n_tools
        self._by_tool: tuple[Ints, Ints] | None = None  # sessions in tool order and each tool's slice: for buys only

    def levels_at_denials(self, k: int) -> Ints:
        """Return demand at each true denial of tool k, counting every session and would-be session held then."""
        if self._by_tool is None:
            order = tool_sort(self.s.code, np.arange(len(self.s.code), dtype=np.int64), self.n_tools)
            self._by_tool = order, np.searchsorted(self.s.code[order], np.arange(self.n_tools + 1))
        order, seg = self._by_tool
        rows = order[seg[k] : seg[k + 1]]
        rows = rows[self.s.returned[rows] > self.s.borrowed[rows]]  # one returned before its start holds nothing
        mine = self.wanted == k
        at = self.wanted_at[mine]
        return _held_at(self.s.borrowed[rows], self.s.returned[rows], at) + _held_at(at, self.wanted_until[mine], at)


def _served(sessions: pd.DataFrame, start: float, end: float, extra_tools: set[str]) -> tuple[list[str], Sessions]:
    """Return the sorted tool names and the period's sessions as arrays (tool codes and times only: no users needed)."""
    rows = overlapping(sessions, start, end)
    tools = Factorized.of(rows["tool"])
    names = sorted(set(tools.uniques) | extra_tools)
    returned = rows["returned_at"].to_numpy(dtype=np.float64, na_value=np.nan)
    n = len(rows)
    nothing = np.zeros(n, dtype=np.int64)
    data = Sessions(
        tools.into(names),
        rows["borrowed_at"].to_numpy(dtype=np.float64),
        np.where(np.isnan(returned), np.inf, returned),
        nothing,
        nothing.astype(bool),
        nothing,
        [],
    )
    return names, data


def _percent(share: float) -> str:
    return "less than 1 %" if 0 < share < 0.005 else f"{share * 100:.0f} %"


def _commit_words(advice: Mapping[str, Any] | None) -> str | None:
    if not advice or advice.get("best_commit") is None:
        return None
    if advice["best_commit"] == advice["commit"]:
        return "commit already the cheapest"
    return f"a commit of {advice['best_commit']} would cost {advice['saving']:.2f} less"


def _keep_reason(row: Mapping[str, Any], true_count: int, p99: int, period: float, advice: Mapping[str, Any] | None) -> str:
    """Why a tool of the inventory is kept as it is, in words."""
    total = row["total"]
    at_total = (row["seconds_at_total"] or 0.0) / period
    parts = ["never at total" if at_total == 0 else f"at total {_percent(at_total)} of the time"]
    if true_count:
        parts.append(f"{true_count} true denials, but demand's p{PERCENT} ({p99}) is within the total of {total}")
    else:
        parts.append(f"no denials, and the peak ({row['peak_in_use']}) leaves no license of {total} to drop")
    words = _commit_words(advice)
    if words:
        parts.append(words)
    return "; ".join(parts)


def _entry(tool: str, action: str, licenses: int, reason: str, saving: float = 0.0, served: int = 0) -> dict[str, Any]:
    return {"tool": tool, "action": action, "licenses": licenses, "reason": reason, "saving": saving, "denials_served": served}


def _effect(entry: Mapping[str, Any]) -> tuple[Any, ...]:
    """Biggest effect first: buys by denials served, then drops by saving, then keeps; ties by more licenses, then name."""
    return (ACTIONS.index(entry["action"]), -entry["denials_served"], -entry["saving"], -entry["licenses"], entry["tool"])


def recommendations(
    sessions: pd.DataFrame,
    denials: pd.DataFrame,
    specs: Mapping[str, Spec],
    start: float,
    end: float,
    gap: float,
    rows: Sequence[Mapping[str, Any]],
    advice: Sequence[Mapping[str, Any]],
) -> dict[str, Any]:
    """Return {"tools": [...], "totals": {...}}: buy, drop or keep for each capacity row (capacity()'s, of this period)."""
    check_period(start, end)
    period = end - start
    ts, denied_tools, flags = true_denials(denials, start, end, gap)
    names, s = _served(sessions, start, end, set(specs) | {row["tool"] for row in rows} | set(denied_tools.unique()))
    codes = np.asarray(pd.Index(names, dtype=object).get_indexer(denied_tools), dtype=np.int64)
    wanted = codes[flags]
    true_counts = np.bincount(wanted, minlength=len(names))
    code_of = {name: k for k, name in enumerate(names)}
    # Demand can pass a total only with unmet demand, or where the sessions alone passed it (a total lowered since).
    asked = np.zeros(len(names), dtype=bool)
    for row in rows:
        total = specs.get(row["tool"], NO_SPEC).total
        k = code_of[row["tool"]]
        asked[k] = total is not None and (true_counts[k] > 0 or row["peak_in_use"] > total)
    demand = _Demand(s, len(names), wanted, ts[flags], asked, start, end)
    advice_of = {entry["tool"]: entry for entry in advice}
    out = []
    for row in rows:
        tool, total = row["tool"], specs.get(row["tool"], NO_SPEC).total
        if total is None:
            out.append(_entry(tool, "keep", 0, "not in the inventory"))
            continue
        k = code_of[tool]
        p99, true_count, tip = int(demand.p99[k]), int(true_counts[k]), advice_of.get(tool)
        if p99 > total:
            n = p99 - total
            served = int(np.count_nonzero(demand.levels_at_denials(k) <= total + n))
            reason = f"demand's p{PERCENT} is {p99} of a total of {total}, with {true_count} true denials"
            out.append(_entry(tool, "buy", n, reason, served=served))
        elif true_count == 0 and total - row["peak_in_use"] - 1 >= 1:
            n = total - row["peak_in_use"] - 1
            lower = tip is not None and tip.get("best_commit") is not None and tip["best_commit"] < tip["commit"]
            saving = float(tip["saving"]) if lower and tip is not None else 0.0
            reason = f"no denials, and the peak is {row['peak_in_use']} of a total of {total}"
            out.append(_entry(tool, "drop", n, reason, saving=saving))
        else:
            out.append(_entry(tool, "keep", 0, _keep_reason(row, true_count, p99, period, tip)))
    out.sort(key=_effect)
    return {
        "tools": out,
        "totals": {
            "saving": round(sum(entry["saving"] for entry in out), 2),
            "licenses_to_buy": sum(entry["licenses"] for entry in out if entry["action"] == "buy"),
            "licenses_to_drop": sum(entry["licenses"] for entry in out if entry["action"] == "drop"),
        },
    }
