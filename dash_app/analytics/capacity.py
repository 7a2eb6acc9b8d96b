"""Capacity and cost: licenses in use over a period, its coverage, overage and commit advice, from sessions and denials.

Pure functions over pandas DataFrames (no Flask, Dash or store). The definitions, for a tool T and a period [start, end):

- in_use(t) is the number of T's sessions held at t: a session covers [borrowed_at, returned_at) clipped to the period,
  an open one (returned_at NaN) runs to `end`, and one of zero length (or returned before it was borrowed) covers nothing.
- A session belongs to the period when borrowed_at < end and (returned_at is NaN or returned_at > start); every figure
  is taken over those sessions only, so a caller that filtered already gets the same answer as one that did not.
- The level "just before" a start at t counts the sessions held at t (those returned at t are not) plus those started
  at t that were recorded earlier (smaller `seq`); zero-length sessions count for nobody.
- A tool outside the inventory has no spec, or a Spec of Nones. Commit advice takes costs within a billionth of each
  other as equal (then the smaller commit wins), and rounds money to cents only in its output.

The sessions as arrays and their levels are computed in levels.py; one tool's curves over time are in profiles.py.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import pandas as pd

from dash_app.analytics.bytool import cut_period, origin
from dash_app.analytics.levels import Factorized, Floats, check_period, levels_before, prepare, select, time_per_level
from dash_app.analytics.spec import NO_SPEC, Spec

SESSION_COLUMNS = ("tool", "user", "host", "version", "source", "borrowed_at", "returned_at", "is_overage", "seq")
DENIAL_COLUMNS = ("ts", "tool", "user", "reason", "seq")
COVERAGE_PERCENTS = (50, 90, 95, 99)
TOP_USERS = 10
# Two costs closer than this (relative) are a tie, so float noise never picks a larger commit than an equal smaller one.
_TIE = 1e-9
# Up to this many (tool, user) pairs, their seconds are added up in one array with a place for each.
_DENSE_PAIRS = 4_000_000


def empty_sessions() -> pd.DataFrame:
    """Return a sessions DataFrame with no rows and the expected columns."""
    return pd.DataFrame(
        {c: pd.Series([], dtype=float if c in ("borrowed_at", "returned_at") else object) for c in SESSION_COLUMNS}
    )


def empty_denials() -> pd.DataFrame:
    """Return a denials DataFrame with no rows and the expected columns."""
    return pd.DataFrame({c: pd.Series([], dtype=float if c == "ts" else object) for c in DENIAL_COLUMNS})


def _coverage(seconds: Floats, period: float, peak: int) -> dict[str, int]:
    """For each percent X, the smallest n with in_use <= n for at least X % of the period (from seconds per level)."""
    cumulative = np.cumsum(seconds)
    out = {}
    for percent in COVERAGE_PERCENTS:
        # cum * 100 >= X * period rather than cum >= X / 100 * period: exact whenever the times are whole seconds.
        reached = cumulative * 100 >= percent * period
        out[f"p{percent}"] = int(np.argmax(reached)) if reached.any() else peak
    out["p100"] = peak
    return out


def capacity(
    sessions: pd.DataFrame, denials: pd.DataFrame, specs: Mapping[str, Spec], start: float, end: float
) -> list[dict[str, Any]]:
    """Return one capacity entry per tool with a session or a denial in the period or an inventory entry, by tool name."""
    check_period(start, end)
    period = end - start
    ts = denials["ts"].to_numpy(dtype=np.float64, na_value=np.nan)
    in_period = (ts >= start) & (ts < end)
    denied = denials if in_period.all() else denials.loc[in_period]
    denied_tools = Factorized.of(denied["tool"])
    found = origin(sessions, start, end)
    if found is not None:  # a mirror's frame: its index has the sessions sorted and the steps summed already
        cut = cut_period(found, start, end, set(specs) | set(denied_tools.uniques))
        names, s, timeline = cut.names, cut.sessions, cut.timeline
    else:
        names, s = prepare(sessions, start, end, set(specs) | set(denied_tools.uniques))
        timeline = None
    n_tools = len(names)
    timeline = timeline or time_per_level(s, n_tools, start, end)

    in_period_start = s.borrowed >= start
    borrows = np.bincount(s.code[in_period_start], minlength=n_tools)
    overage_borrows = np.bincount(s.code[in_period_start & s.overage], minlength=n_tools)

    # License-seconds per (tool, user) pair, then ranked by (tool, -seconds, user name).
    held = np.maximum(np.minimum(s.returned, end) - np.maximum(s.borrowed, start), 0.0)
    n_users = max(len(s.users), 1)
    pair_key = s.code * n_users + s.user
    if n_tools * n_users <= _DENSE_PAIRS:  # a counter per possible pair costs less than hashing every session's
        pairs = np.flatnonzero(np.bincount(pair_key, minlength=n_tools * n_users))
        pair_seconds = np.bincount(pair_key, weights=held, minlength=n_tools * n_users)[pairs]
    else:
        pair_codes, uniques = pd.factorize(pair_key, sort=True)
        pairs = np.asarray(uniques, dtype=np.int64)
        pair_seconds = np.bincount(pair_codes, weights=held, minlength=len(pairs))
    pair_tool, pair_user = pairs // n_users, pairs % n_users
    distinct_users = np.bincount(pair_tool, minlength=n_tools)
    # The pairs come in (tool, user) order, so two stable sorts rank them: by -seconds, then by tool.
    ranked = np.argsort(-pair_seconds, kind="stable")
    ranked = ranked[np.argsort(pair_tool[ranked], kind="stable")]
    ranked_seg = np.searchsorted(pair_tool[ranked], np.arange(n_tools + 1))

    denial_codes = denied_tools.into(names)
    denial_counts = np.bincount(denial_codes, minlength=n_tools)
    denied_pairs = pd.DataFrame({"tool": denial_codes, "user": denied["user"].to_numpy()}).drop_duplicates()
    denied_users = np.bincount(denied_pairs["tool"].to_numpy(dtype=np.int64), minlength=n_tools)

    out = []
    for k, tool in enumerate(names):
        spec = specs.get(tool, NO_SPEC)
        seconds = timeline.hist[timeline.offsets[k] : timeline.offsets[k + 1]]
        peak = int(timeline.peak[k])
        area = float(np.dot(seconds, np.arange(len(seconds), dtype=np.float64)))
        top = ranked[ranked_seg[k] : min(ranked_seg[k + 1], ranked_seg[k] + TOP_USERS)]
        top_users = [
            {"user": s.users[u], "license_hours": held_seconds / 3600.0}
            for u, held_seconds in zip(pair_user[top].tolist(), pair_seconds[top].tolist())
        ]
        price = spec.overage_price
        out.append(
            {
                "tool": tool,
                "total": spec.total,
                "commit": spec.commit,
                "peak_in_use": peak,
                "avg_in_use": area / period,
                "seconds_at_or_above_commit": None if spec.commit is None else float(seconds[max(spec.commit, 0) :].sum()),
                "seconds_at_total": None if spec.total is None else float(seconds[max(spec.total, 0) :].sum()),
                "coverage": _coverage(seconds, period, peak),
                "borrows": int(borrows[k]),
                "overage_borrows": int(overage_borrows[k]),
                "overage_cost": None if price is None else round(int(overage_borrows[k]) * float(price), 2),
                "denials": int(denial_counts[k]),
                "denied_users": int(denied_users[k]),
                "distinct_users": int(distinct_users[k]),
                "top_users": top_users,
            }
        )
    return out


def _advice_reason(spec: Spec) -> str | None:
    """Why no commit advice can be given for `spec`, or None when it can."""
    if spec.total is None:
        return "not in the inventory: no total to size a commit against"
    if spec.commit is None or spec.commit <= 0:
        return "no commit: the price of one committed license is unknown"
    if spec.commit_price is None or spec.overage_price is None:
        return "no commit price or overage price"
    return None


def commit_advice(
    sessions: pd.DataFrame, specs: Mapping[str, Spec], start: float, end: float, billing_days: int = 30
) -> list[dict[str, Any]]:
    """Return, per tool (inventory and sessions, by name), the period's cost at every commit 0..total and the cheapest."""
    check_period(start, end)
    if billing_days <= 0:
        raise ValueError(f"billing_days: must be positive, not {billing_days!r}")
    period = end - start
    found = origin(sessions, start, end)
    if found is not None:  # a mirror's frame: its index has every session's level before its start
        cut = cut_period(found, start, end, set(specs), timeline=False)
        names, s = cut.names, cut.sessions
    else:
        names, s = prepare(sessions, start, end, specs)
    n_tools = len(names)
    # Only the levels before starts inside the period matter; the sessions of tools without advice are never looked at.
    advised = np.array([_advice_reason(specs.get(t, NO_SPEC)) is None for t in names], dtype=bool)
    wanted = advised[s.code] if len(s.code) else np.zeros(0, dtype=bool)
    subset = select(s, wanted)
    levels = cut.level[wanted] if found is not None else levels_before(subset, n_tools)
    starts = subset.borrowed >= start
    start_codes, start_levels = subset.code[starts], levels[starts]
    order = np.argsort(start_codes, kind="stable")
    start_codes, start_levels = start_codes[order], start_levels[order]
    seg = np.searchsorted(start_codes, np.arange(n_tools + 1))

    out: list[dict[str, Any]] = []
    for k, tool in enumerate(names):
        spec = specs.get(tool, NO_SPEC)
        reason = _advice_reason(spec)
        if reason is not None:
            out.append({"tool": tool, "commit": spec.commit, "advice": None, "reason": reason})
            continue
        assert spec.total is not None and spec.commit and spec.commit_price is not None and spec.overage_price is not None
        total = max(int(spec.total), 0)
        tool_levels = start_levels[seg[k] : seg[k + 1]]
        # overage_borrows(c) = starts whose level before was >= c: a suffix sum of the histogram of those levels.
        histogram = np.bincount(np.minimum(tool_levels, total + 1), minlength=total + 2)
        at_least = np.cumsum(histogram[::-1])[::-1][: total + 1]
        unit = float(spec.commit_price) / spec.commit * period / (billing_days * 86400)
        overage_price = float(spec.overage_price)
        candidates = np.arange(total + 1, dtype=np.float64)
        costs = candidates * unit + overage_price * at_least
        lowest = float(costs.min())
        best = int(np.argmax(costs <= lowest + _TIE * max(1.0, abs(lowest))))
        cost_now = spec.commit * unit + overage_price * int(np.count_nonzero(tool_levels >= spec.commit))
        best_cost = float(costs[best])
        out.append(
            {
                "tool": tool,
                "commit": spec.commit,
                "cost_now": round(cost_now, 2),
                "best_commit": best,
                "best_cost": round(best_cost, 2),
                "saving": round(cost_now - best_cost, 2),
                "curve": [{"commit": c, "cost": round(float(cost), 2)} for c, cost in enumerate(costs.tolist())],
            }
        )
    return out
