"""One tool's use over a period: its load-duration curve, its hour-of-week profile and its denials per bin."""

from __future__ import annotations

import math
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import numpy as np
import pandas as pd

from dash_app.analytics.levels import Floats, Ints, check_period, overlapping


def _steps(sessions: pd.DataFrame, tool: str, start: float, end: float) -> tuple[Floats, Ints, Floats]:
    """Return the step function in_use of one tool over the period: segment starts, levels and durations."""
    check_period(start, end)
    rows = overlapping(sessions.loc[sessions["tool"] == tool], start, end)
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


def hour_bounds(start: float, end: float, zone: str) -> tuple[Floats, Ints]:
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
    bounds, keys = hour_bounds(start, end, zone)
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
    check_period(start, end)
    if not (bin_seconds > 0 and math.isfinite(bin_seconds)):
        raise ValueError(f"bin_seconds: must be a positive number, not {bin_seconds!r}")
    ts = denials.loc[denials["tool"] == tool, "ts"].to_numpy(dtype=np.float64, na_value=np.nan)
    ts = ts[(ts >= start) & (ts < end)]
    n_bins = max(1, math.ceil((end - start) / bin_seconds))
    index = np.minimum(np.floor((ts - start) / bin_seconds).astype(np.int64), n_bins - 1)
    counts = np.bincount(index, minlength=n_bins)
    return [{"start": start + k * bin_seconds, "count": int(counts[k])} for k in range(n_bins)]
