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
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, NamedTuple
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import numpy as np
import numpy.typing as npt
import pandas as pd

SESSION_COLUMNS = ("tool", "user", "host", "version", "source", "borrowed_at", "returned_at", "is_overage", "seq")
DENIAL_COLUMNS = ("ts", "tool", "user", "reason", "seq")
COVERAGE_PERCENTS = (50, 90, 95, 99)
TOP_USERS = 10
# Two costs closer than this (relative) are a tie, so float noise never picks a larger commit than an equal smaller one.
_TIE = 1e-9

Floats = npt.NDArray[np.float64]
Ints = npt.NDArray[np.int64]
Bools = npt.NDArray[np.bool_]


class Spec(NamedTuple):
    """A tool's inventory entry: pool size, committed licenses, their price per billing period, the price of an overage borrow."""

    total: int | None
    commit: int | None
    commit_price: float | None
    overage_price: float | None


NO_SPEC = Spec(None, None, None, None)


def specs_from_tools(tools: Iterable[Mapping[str, Any]]) -> dict[str, Spec]:
    """Return the specs of a tools-file inventory (`tool`, `total`, `commit_qty`, `commit_price`, `overage_price_per_license`)."""

    def number(entry: Mapping[str, Any], key: str) -> float | None:
        value = entry.get(key)
        return None if value is None else float(value)

    def count(entry: Mapping[str, Any], key: str) -> int | None:
        value = entry.get(key)
        return None if value is None else int(value)

    return {
        str(t["tool"]): Spec(
            count(t, "total"), count(t, "commit_qty"), number(t, "commit_price"), number(t, "overage_price_per_license")
        )
        for t in tools
    }


def empty_sessions() -> pd.DataFrame:
    """Return a sessions DataFrame with no rows and the expected columns."""
    return pd.DataFrame(
        {c: pd.Series([], dtype=float if c in ("borrowed_at", "returned_at") else object) for c in SESSION_COLUMNS}
    )


def empty_denials() -> pd.DataFrame:
    """Return a denials DataFrame with no rows and the expected columns."""
    return pd.DataFrame({c: pd.Series([], dtype=float if c == "ts" else object) for c in DENIAL_COLUMNS})


# ---------------------------------------------------------------------------------------------------------------------
# Shared preparation


@dataclass
class _Sessions:
    """The sessions of the period as arrays: tool codes into a sorted name list, times (open = inf), order and flags."""

    code: Ints
    borrowed: Floats
    returned: Floats
    seq: Ints
    overage: Bools
    user: Ints  # codes into `users`, which is sorted by name
    users: list[str]


def _check_period(start: float, end: float) -> None:
    """Refuse a period that is empty, reversed or not finite."""
    if not (math.isfinite(start) and math.isfinite(end)) or end <= start:
        raise ValueError(f"period: end ({end!r}) must be a finite time after start ({start!r})")


def _overlapping(sessions: pd.DataFrame, start: float, end: float) -> pd.DataFrame:
    """Return the sessions that overlap [start, end) by the module's definition."""
    b = sessions["borrowed_at"].to_numpy(dtype=np.float64, na_value=np.nan)
    r = sessions["returned_at"].to_numpy(dtype=np.float64, na_value=np.nan)
    keep = (b < end) & (np.isnan(r) | (r > start))
    return sessions if keep.all() else sessions.loc[keep]


class _Factorized(NamedTuple):
    """Codes of a column's values into `uniques` (each distinct value hashed once)."""

    codes: Ints
    uniques: list[Any]

    @classmethod
    def of(cls, values: pd.Series) -> _Factorized:
        codes, uniques = pd.factorize(values, use_na_sentinel=False)
        return cls(np.asarray(codes, dtype=np.int64), list(uniques))

    def into(self, names: list[str]) -> Ints:
        """Return the codes into `names`, which holds every value."""
        mapping = pd.Index(names).get_indexer(pd.Index(self.uniques, dtype=object))
        return np.asarray(mapping, dtype=np.int64)[self.codes]


def _prepare(sessions: pd.DataFrame, start: float, end: float, extra_tools: Iterable[str]) -> tuple[list[str], _Sessions]:
    """Return the sorted tool names (the period's sessions' plus `extra_tools`) and the period's sessions as arrays."""
    rows = _overlapping(sessions, start, end)
    tools = _Factorized.of(rows["tool"])
    names = sorted(set(tools.uniques) | set(extra_tools))
    user_codes, users = pd.factorize(rows["user"], sort=True, use_na_sentinel=False)
    returned = rows["returned_at"].to_numpy(dtype=np.float64, na_value=np.nan)
    data = _Sessions(
        code=tools.into(names),
        borrowed=rows["borrowed_at"].to_numpy(dtype=np.float64),
        returned=np.where(np.isnan(returned), np.inf, returned),
        seq=rows["seq"].to_numpy(dtype=np.int64),
        overage=rows["is_overage"].fillna(False).to_numpy(dtype=bool),
        user=np.asarray(user_codes, dtype=np.int64),
        users=[str(u) for u in users],
    )
    return names, data


def _select(s: _Sessions, mask: Bools) -> _Sessions:
    """Return the sessions where `mask` is true."""
    return _Sessions(s.code[mask], s.borrowed[mask], s.returned[mask], s.seq[mask], s.overage[mask], s.user[mask], s.users)


def _tool_sort(codes: Ints, order: Ints, n_tools: int) -> Ints:
    """Stable-sort `order` by tool code (a radix sort when the codes fit 16 bits)."""
    keys = codes[order]
    keys_small = keys.astype(np.int16) if n_tools < 2**15 else keys
    return order[np.argsort(keys_small, kind="stable")]


def _levels_before(s: _Sessions, n_tools: int) -> Ints:
    """Return, per session, the licenses of its tool held just before its start (see the module's definition)."""
    n = len(s.code)
    if n == 0:
        return np.zeros(0, dtype=np.int64)
    positive = s.returned > s.borrowed
    # Sessions in (tool, borrowed_at, seq) order; the store hands them over in (borrowed_at, seq) order already.
    b, q = s.borrowed, s.seq
    if bool(np.all((b[1:] > b[:-1]) | ((b[1:] == b[:-1]) & (q[1:] > q[:-1])))):
        order = np.arange(n, dtype=np.int64)
    else:
        order = np.argsort(q).astype(np.int64)
        order = order[np.argsort(b[order], kind="stable")]
    order = _tool_sort(s.code, order, n_tools)
    code_sorted = s.code[order]
    pos_sorted = positive[order].astype(np.int64)
    started = np.cumsum(pos_sorted) - pos_sorted
    seg = np.searchsorted(code_sorted, np.arange(n_tools + 1))
    started -= started[seg[code_sorted]]
    # Minus the sessions already returned at the start: those are all earlier in that order, being positive-length.
    ends_idx = np.flatnonzero(positive)
    ends_order = _tool_sort(s.code, ends_idx[np.argsort(s.returned[ends_idx])], n_tools)
    ends = s.returned[ends_order]
    ends_seg = np.searchsorted(s.code[ends_order], np.arange(n_tools + 1))
    borrowed_sorted = s.borrowed[order]
    returned_before = np.zeros(n, dtype=np.int64)
    for k in np.flatnonzero((seg[1:] > seg[:-1]) & (ends_seg[1:] > ends_seg[:-1])):
        lo, hi = seg[k], seg[k + 1]
        returned_before[lo:hi] = np.searchsorted(ends[ends_seg[k] : ends_seg[k + 1]], borrowed_sorted[lo:hi], side="right")
    level = np.empty(n, dtype=np.int64)
    level[order] = started - returned_before
    return level


@dataclass
class _Timeline:
    """Time per level for every tool: `hist[offsets[k]:offsets[k + 1]]` is tool k's seconds at level 0, 1, … peak."""

    hist: Floats
    offsets: Ints
    peak: Ints


def _timeline(s: _Sessions, n_tools: int, start: float, end: float) -> _Timeline:
    """Sort every tool's +1/-1 events once and add up the time each tool spends at each level."""
    if n_tools == 0:
        return _Timeline(hist=np.zeros(0), offsets=np.zeros(1, dtype=np.int64), peak=np.zeros(0, dtype=np.int64))
    lo = np.maximum(s.borrowed, start)
    hi = np.minimum(s.returned, end)
    held = lo < hi
    times = np.concatenate((lo[held], hi[held]))
    steps = np.concatenate((np.ones(int(held.sum()), dtype=np.int64), np.full(int(held.sum()), -1, dtype=np.int64)))
    codes = np.concatenate((s.code[held], s.code[held]))
    order = _tool_sort(codes, np.argsort(times).astype(np.int64), n_tools)
    times, codes = times[order], codes[order]
    # Each tool's steps add up to zero, so one running sum over the tool-sorted events is every tool's level.
    levels = np.cumsum(steps[order])
    last = np.ones(len(times), dtype=bool)
    last[:-1] = codes[1:] != codes[:-1]
    durations = np.empty(len(times))
    durations[:-1] = times[1:] - times[:-1]
    durations[last] = end - times[last]
    peak = np.zeros(n_tools, dtype=np.int64)
    positive = durations > 0
    np.maximum.at(peak, codes[positive], levels[positive])
    offsets = np.zeros(n_tools + 1, dtype=np.int64)
    np.cumsum(peak + 1, out=offsets[1:])
    hist = np.bincount(offsets[codes] + levels, weights=durations, minlength=int(offsets[-1])).astype(np.float64)
    # Level 0 also holds before each tool's first event: it is whatever the other levels leave of the period.
    positive_time = np.add.reduceat(hist, offsets[:-1]) - hist[offsets[:-1]]
    hist[offsets[:-1]] = (end - start) - positive_time
    return _Timeline(hist=hist, offsets=offsets, peak=peak)


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


# ---------------------------------------------------------------------------------------------------------------------
# Public functions


def capacity(
    sessions: pd.DataFrame, denials: pd.DataFrame, specs: Mapping[str, Spec], start: float, end: float
) -> list[dict[str, Any]]:
    """Return one capacity entry per tool with a session or a denial in the period or an inventory entry, by tool name."""
    _check_period(start, end)
    period = end - start
    ts = denials["ts"].to_numpy(dtype=np.float64, na_value=np.nan)
    in_period = (ts >= start) & (ts < end)
    denied = denials if in_period.all() else denials.loc[in_period]
    denied_tools = _Factorized.of(denied["tool"])
    names, s = _prepare(sessions, start, end, set(specs) | set(denied_tools.uniques))
    n_tools = len(names)
    timeline = _timeline(s, n_tools, start, end)

    in_period_start = s.borrowed >= start
    borrows = np.bincount(s.code[in_period_start], minlength=n_tools)
    overage_borrows = np.bincount(s.code[in_period_start & s.overage], minlength=n_tools)

    # License-seconds per (tool, user) pair; pairs are hashed once, then ranked by (tool, -seconds, user name).
    held = np.maximum(np.minimum(s.returned, end) - np.maximum(s.borrowed, start), 0.0)
    n_users = max(len(s.users), 1)
    pair_codes, pairs = pd.factorize(s.code * n_users + s.user)
    pairs = np.asarray(pairs, dtype=np.int64)
    pair_seconds = np.bincount(pair_codes, weights=held, minlength=len(pairs))
    pair_tool, pair_user = pairs // n_users, pairs % n_users
    distinct_users = np.bincount(pair_tool, minlength=n_tools)
    ranked = np.lexsort((pair_user, -pair_seconds, pair_tool))
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
    _check_period(start, end)
    if billing_days <= 0:
        raise ValueError(f"billing_days: must be positive, not {billing_days!r}")
    period = end - start
    names, s = _prepare(sessions, start, end, specs)
    n_tools = len(names)
    # Only the levels before starts inside the period matter; the sessions of tools without advice are never looked at.
    advised = np.array([_advice_reason(specs.get(t, NO_SPEC)) is None for t in names], dtype=bool)
    wanted = advised[s.code] if len(s.code) else np.zeros(0, dtype=bool)
    subset = _select(s, wanted)
    levels = _levels_before(subset, n_tools)
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


def _steps(sessions: pd.DataFrame, tool: str, start: float, end: float) -> tuple[Floats, Ints, Floats]:
    """Return the step function in_use of one tool over the period: segment starts, levels and durations."""
    _check_period(start, end)
    rows = _overlapping(sessions.loc[sessions["tool"] == tool], start, end)
    b = rows["borrowed_at"].to_numpy(dtype=np.float64)
    r = rows["returned_at"].to_numpy(dtype=np.float64, na_value=np.nan)
    lo = np.maximum(b, start)
    hi = np.where(np.isnan(r), end, np.minimum(r, end))
    held = lo < hi
    times = np.concatenate((lo[held], hi[held]))
    steps = np.concatenate((np.ones(int(held.sum()), dtype=np.int64), np.full(int(held.sum()), -1, dtype=np.int64)))
    order = np.argsort(times)
    times, levels = times[order], np.cumsum(steps[order])
    # The level after the last event at each instant holds until the next instant.
    last = np.ones(len(times), dtype=bool)
    last[:-1] = times[1:] != times[:-1]
    seg_starts = np.concatenate(([start], times[last]))
    seg_levels = np.concatenate((np.zeros(1, dtype=np.int64), levels[last]))
    durations = np.diff(np.append(seg_starts, end))
    return seg_starts, seg_levels, durations


def duration_curve(sessions: pd.DataFrame, tool: str, start: float, end: float) -> list[dict[str, Any]]:
    """Return the load-duration curve: for n = 0..peak, the share of the period's time with in_use >= n."""
    _starts, levels, durations = _steps(sessions, tool, start, end)
    positive = durations > 0
    peak = int(levels[positive].max()) if positive.any() else 0
    seconds = np.bincount(levels[positive], weights=durations[positive], minlength=peak + 1)
    at_least = np.cumsum(seconds[::-1])[::-1]
    return [{"licenses": n, "share": float(at_least[n] / at_least[0])} for n in range(peak + 1)]


def _hour_bounds(start: float, end: float, zone: str) -> tuple[Floats, Ints]:
    """Return the instants in [start, end) where the local hour changes, from `start`, and each one's weekday * 24 + hour."""
    try:
        tz = ZoneInfo(zone)
    except (ZoneInfoNotFoundError, ValueError) as exc:
        raise ValueError(f"zone: unknown time zone {zone!r}") from exc

    def offset(t: float) -> float:
        delta = pd.Timestamp(t, unit="s", tz="UTC").tz_convert(tz).utcoffset()
        return 0.0 if delta is None else delta.total_seconds()

    # Offsets are sampled every 15 min (tzdata never changes twice that fast), each change pinned by bisection to
    # its whole second.
    samples = np.append(np.arange(start, end, 900.0), end)
    local = pd.DatetimeIndex(pd.to_datetime(samples, unit="s", utc=True)).tz_convert(tz)
    offsets = (local.tz_localize(None) - pd.DatetimeIndex(pd.to_datetime(samples, unit="s"))).total_seconds().to_numpy()
    pieces: list[tuple[float, float]] = [(start, float(offsets[0]))]
    for i in np.flatnonzero(offsets[1:] != offsets[:-1]):
        lo, hi = math.floor(samples[i]), math.floor(samples[i + 1])
        before = offset(lo)
        while hi - lo > 1:
            mid = (lo + hi) // 2
            lo, hi = (mid, hi) if offset(mid) == before else (lo, mid)
        if start < hi < end:
            pieces.append((float(hi), offset(hi)))
    bounds: list[float] = []
    shifts: list[float] = []
    for j, (piece_start, off) in enumerate(pieces):
        piece_end = pieces[j + 1][0] if j + 1 < len(pieces) else end
        hours = np.arange(math.floor((piece_start + off) / 3600) + 1, math.ceil((piece_end + off) / 3600)) * 3600.0 - off
        bounds.append(piece_start)
        shifts.append(off)
        bounds.extend(hours[(hours > piece_start) & (hours < piece_end)].tolist())
        shifts.extend([off] * (len(bounds) - len(shifts)))
    instants = np.array(bounds)
    local_seconds = instants + np.array(shifts)
    days = np.floor(local_seconds / 86400)
    weekday = (days.astype(np.int64) + 3) % 7  # 1970-01-01 was a Thursday
    hour = np.floor((local_seconds - days * 86400) / 3600).astype(np.int64)
    return instants, weekday * 24 + hour


def hour_of_week(sessions: pd.DataFrame, tool: str, start: float, end: float, zone: str = "UTC") -> list[dict[str, Any]]:
    """Return the time-weighted mean and the peak of in_use for each local (weekday, hour), Monday 0 (None where no time)."""
    seg_starts, levels, _durations = _steps(sessions, tool, start, end)
    bounds, keys = _hour_bounds(start, end, zone)
    instants = np.union1d(seg_starts, bounds)
    level = levels[np.searchsorted(seg_starts, instants, side="right") - 1]
    key = keys[np.searchsorted(bounds, instants, side="right") - 1]
    durations = np.diff(np.append(instants, end))
    seconds = np.bincount(key, weights=durations, minlength=168)
    area = np.bincount(key, weights=durations * level, minlength=168)
    peak = np.full(168, -1, dtype=np.int64)
    positive = durations > 0
    np.maximum.at(peak, key[positive], level[positive])
    return [
        {
            "weekday": k // 24,
            "hour": k % 24,
            "mean": float(area[k] / seconds[k]) if peak[k] >= 0 else None,
            "peak": int(peak[k]) if peak[k] >= 0 else None,
        }
        for k in range(168)
    ]


def denials_over_time(denials: pd.DataFrame, tool: str, start: float, end: float, bin_seconds: float) -> list[dict[str, Any]]:
    """Return the tool's denials in the period counted per bin of `bin_seconds` from `start` (the last bin may be shorter)."""
    _check_period(start, end)
    if not (bin_seconds > 0 and math.isfinite(bin_seconds)):
        raise ValueError(f"bin_seconds: must be a positive number, not {bin_seconds!r}")
    ts = denials.loc[denials["tool"] == tool, "ts"].to_numpy(dtype=np.float64, na_value=np.nan)
    ts = ts[(ts >= start) & (ts < end)]
    n_bins = max(1, math.ceil((end - start) / bin_seconds))
    index = np.minimum(np.floor((ts - start) / bin_seconds).astype(np.int64), n_bins - 1)
    counts = np.bincount(index, minlength=n_bins)
    return [{"start": start + k * bin_seconds, "count": int(counts[k])} for k in range(n_bins)]
