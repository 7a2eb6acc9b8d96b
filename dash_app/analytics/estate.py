"""The estate across tools: true denials as arrays, the report's pressure columns and totals, and the hour-of-week heatmap.

Pure functions over the DataFrames capacity.py takes (no Flask, Dash or store); the definitions are those of
dash_app/pressure.py and docs/capacity.md.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import pandas as pd

from dash_app.analytics.levels import Bools, Floats, Ints, check_period, overlapping, tool_sort
from dash_app.analytics.profiles import hour_bounds
from dash_app.analytics.spec import NO_SPEC, Spec
from dash_app.pressure import Pressure, by_pressure

DAYS = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")
HOURS_OF_WEEK = 168


def true_denial_flags(ts: Floats, tools: Ints, users: Ints, gap: float) -> Bools:
    """Return which denials (times, tool codes, user codes) are true denials with retries within `gap` seconds folded.

    Each (tool, user) group in time order forms a chain: a counted denial's successor is the group's first denial at
    least `gap` later. The chains are followed for every group at once by pointer doubling (log of the longest chain
    steps), not one denial at a time.
    """
    n = len(ts)
    if n == 0:
        return np.zeros(0, dtype=bool)
    group = tools.astype(np.int64) * (int(users.max()) + 1) + users
    order = np.lexsort((ts, group))
    g, t = group[order], ts[order]
    first = np.ones(n, dtype=bool)
    first[1:] = g[1:] != g[:-1]
    rank = np.cumsum(first) - 1
    group_end = np.append(np.flatnonzero(first)[1:], n)[rank]
    index = np.arange(n, dtype=np.int64)
    # A first guess on one increasing key (group rank, time), then made exact with the test the reference uses.
    base = float(t.min())
    key = rank * ((float(t.max()) - base) + gap + 1.0) + (t - base)
    nxt = np.clip(np.searchsorted(key, key + gap, side="left"), index + 1, group_end)
    while True:
        back = (nxt > index + 1) & (t[nxt - 1] - t >= gap)
        if not back.any():
            break
        nxt[back] -= 1
    while True:
        on = np.flatnonzero(nxt < group_end)
        on = on[t[nxt[on]] - t[on] < gap]
        if not len(on):
            break
        nxt[on] += 1
    jump = np.append(np.where(nxt == group_end, n, nxt), n)  # n: the chain has ended
    reached = np.zeros(n + 1, dtype=bool)
    reached[:n] = first
    while True:
        targets = jump[np.flatnonzero(reached)]
        if (targets == n).all():
            break
        reached[targets] = True
        jump = jump[jump]
    flags = np.empty(n, dtype=bool)
    flags[order] = reached[:n]
    return flags


def denial_arrays(denials: pd.DataFrame, start: float, end: float) -> tuple[Floats, pd.Series, pd.Series]:
    """Return the times, tools and users of the denials inside [start, end)."""
    ts = denials["ts"].to_numpy(dtype=np.float64, na_value=np.nan)
    keep = (ts >= start) & (ts < end)
    if keep.all():
        return ts, denials["tool"], denials["user"]
    return ts[keep], denials["tool"][keep], denials["user"][keep]


def true_denials(denials: pd.DataFrame, start: float, end: float, gap: float) -> tuple[Floats, pd.Series, Bools]:
    """Return the period's denial times, their tools, and which of them are true denials."""
    ts, tools, users = denial_arrays(denials, start, end)
    tool_codes, _ = pd.factorize(tools, use_na_sentinel=False)
    user_codes, _ = pd.factorize(users, use_na_sentinel=False)
    flags = true_denial_flags(ts, np.asarray(tool_codes, np.int64), np.asarray(user_codes, np.int64), gap)
    return ts, tools, flags


def true_denials_per_tool(denials: pd.DataFrame, start: float, end: float, gap: float) -> dict[str, int]:
    """Return the true denials of each tool denied in the period (a tool without denials is absent)."""
    _ts, tools, flags = true_denials(denials, start, end, gap)
    counted = pd.Series(flags, copy=False).groupby(pd.Series(tools.to_numpy(), copy=False), sort=False).sum()
    return {str(tool): int(count) for tool, count in counted.items()}


def with_pressure(
    rows: list[dict[str, Any]], true_counts: Mapping[str, int], queued: Mapping[str, int], period: float
) -> list[dict[str, Any]]:
    """Return capacity rows with true_denials, share_at_total, peak_share, queued and pressure_rank, most pressed first."""
    pressures: dict[str, Pressure] = {}
    added = {}
    for row in rows:
        tool, total = row["tool"], row["total"]
        pooled = total is not None and total > 0
        share_at_total = (row["seconds_at_total"] or 0.0) / period if pooled else None
        peak_share = row["peak_in_use"] / total if pooled else None
        true, waiting = int(true_counts.get(tool, 0)), int(queued.get(tool, 0))
        added[tool] = {"true_denials": true, "share_at_total": share_at_total, "peak_share": peak_share, "queued": waiting}
        pressures[tool] = Pressure(share_at_total or 0.0, true, waiting, peak_share or 0.0)
    ranks = {tool: k + 1 for k, tool in enumerate(by_pressure(pressures))}
    out = [{**row, **added[row["tool"]], "pressure_rank": ranks[row["tool"]]} for row in rows]
    out.sort(key=lambda row: row["pressure_rank"])
    return out


def period_commit_cost(spec: Spec, period: float, billing_days: int) -> float:
    """Return what a tool's commit costs over `period` seconds: its price × the period's share of a billing period (0 without)."""
    if not spec.commit or spec.commit_price is None:
        return 0.0
    return float(spec.commit_price) * period / (billing_days * 86400)


def totals(rows: list[dict[str, Any]], specs: Mapping[str, Spec], start: float, end: float, billing_days: int) -> dict[str, Any]:
    """Return the period's totals over the report's rows: borrows, overage, commit cost, denials and license-hours."""
    period = end - start
    commit_cost = 0.0
    for row in rows:
        commit_cost += period_commit_cost(specs.get(row["tool"], NO_SPEC), period, billing_days)
    return {
        "borrows": sum(row["borrows"] for row in rows),
        "overage_borrows": sum(row["overage_borrows"] for row in rows),
        "overage_cost": round(sum(row["overage_cost"] or 0.0 for row in rows), 2),
        "commit_cost": round(commit_cost, 2),
        "denials": sum(row["denials"] for row in rows),
        "true_denials": sum(row.get("true_denials", 0) for row in rows),
        # avg_in_use is the period's license-seconds over its length.
        "license_hours": sum(row["avg_in_use"] for row in rows) * period / 3600.0,
    }


def _integral_by_hour(times: Floats, values: Floats, end: float, bounds: Floats, keys: Ints) -> Floats:
    """Return, per hour of week, the integral of the step function that is 0 before `times` (sorted) and `values` after each."""
    durations = np.diff(np.append(times, end))
    area = np.concatenate(([0.0], np.cumsum(values[:-1] * durations[:-1])))  # the integral up to each event
    edges = np.append(bounds, end)
    last = np.searchsorted(times, edges, side="right") - 1
    known = last >= 0
    at_edges = np.zeros(len(edges))
    at_edges[known] = area[last[known]] + values[last[known]] * (edges[known] - times[last[known]])
    return np.bincount(keys, weights=np.diff(at_edges), minlength=HOURS_OF_WEEK).astype(np.float64)


def _matrix(area: Floats, seconds: Floats, scale: float) -> list[list[float | None]]:
    out: list[list[float | None]] = []
    for day in range(7):
        k = day * 24 + np.arange(24)
        out.append([float(a / (t * scale)) if t > 0 and scale > 0 else None for a, t in zip(area[k], seconds[k])])
    return out


def heatmap(sessions: pd.DataFrame, specs: Mapping[str, Spec], start: float, end: float, zone: str = "UTC") -> dict[str, Any]:
    """Return the estate's hour-of-week matrices: mean licenses in use over the totals, and the share of tools at total.

    Over the inventory tools with a total of at least 1, time-weighted within each local (weekday, hour), Monday first.
    """
    check_period(start, end)
    bounds, keys = hour_bounds(start, end, zone)
    seconds = np.bincount(keys, weights=np.diff(np.append(bounds, end)), minlength=HOURS_OF_WEEK).astype(np.float64)
    inventory = sorted(tool for tool, spec in specs.items() if spec.total is not None and spec.total > 0)
    limits = np.array([specs[tool].total for tool in inventory], dtype=np.int64)
    rows = overlapping(sessions, start, end)
    code = np.asarray(pd.Index(inventory, dtype=object).get_indexer(rows["tool"]), dtype=np.int64)
    b = rows["borrowed_at"].to_numpy(dtype=np.float64)
    r = rows["returned_at"].to_numpy(dtype=np.float64, na_value=np.nan)
    lo, hi = np.maximum(b, start), np.where(np.isnan(r), end, np.minimum(r, end))
    held = (code >= 0) & (lo < hi)
    code, lo, hi = code[held], lo[held], hi[held]
    times = np.concatenate((lo, hi))
    steps = np.concatenate((np.ones(len(lo), dtype=np.int64), np.full(len(lo), -1, dtype=np.int64)))
    codes = np.concatenate((code, code))
    by_time = np.argsort(times).astype(np.int64)
    # At total: each tool's level from its own events (tool-sorted, so one running sum), +1/-1 where it crosses.
    by_tool = tool_sort(codes, by_time, len(inventory))
    level = np.cumsum(steps[by_tool])
    at = (level >= limits[codes[by_tool]]).astype(np.int64)
    crossing = np.empty(len(at), dtype=np.int64)
    crossing[by_tool] = at - np.concatenate(([0], np.where(codes[by_tool][1:] == codes[by_tool][:-1], at[:-1], 0)))
    sorted_times = times[by_time]
    in_use = _integral_by_hour(sorted_times, np.cumsum(steps[by_time]).astype(np.float64), end, bounds, keys)
    at_total = _integral_by_hour(sorted_times, np.cumsum(crossing[by_time]).astype(np.float64), end, bounds, keys)
    return {
        "days": list(DAYS),
        "hours": list(range(24)),
        "utilization": _matrix(in_use, seconds, float(limits.sum())),
        "at_total": _matrix(at_total, seconds, float(len(inventory))),
    }
