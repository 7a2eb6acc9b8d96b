"""Licenses in use over a period from sessions held as NumPy arrays: the groundwork of every capacity figure.

The definitions (a session's span, the period's sessions, the level "just before" a start) are those of
dash_app/analytics/capacity.py.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, NamedTuple

import numpy as np
import numpy.typing as npt
import pandas as pd

Floats = npt.NDArray[np.float64]
Ints = npt.NDArray[np.int64]
Bools = npt.NDArray[np.bool_]


@dataclass
class Sessions:
    """The sessions of the period as arrays: tool codes into a sorted name list, times (open = inf), order and flags."""

    code: Ints
    borrowed: Floats
    returned: Floats
    seq: Ints
    overage: Bools
    user: Ints  # codes into `users`, which is sorted by name
    users: list[str]


def check_period(start: float, end: float) -> None:
    """Refuse a period that is empty, reversed or not finite."""
    if not (math.isfinite(start) and math.isfinite(end)) or end <= start:
        raise ValueError(f"period: end ({end!r}) must be a finite time after start ({start!r})")


def overlapping(sessions: pd.DataFrame, start: float, end: float) -> pd.DataFrame:
    """Return the sessions that overlap [start, end) by the module's definition."""
    b = sessions["borrowed_at"].to_numpy(dtype=np.float64, na_value=np.nan)
    r = sessions["returned_at"].to_numpy(dtype=np.float64, na_value=np.nan)
    keep = (b < end) & (np.isnan(r) | (r > start))
    return sessions if keep.all() else sessions.loc[keep]


class Factorized(NamedTuple):
    """Codes of a column's values into `uniques` (each distinct value hashed once)."""

    codes: Ints
    uniques: list[Any]

    @classmethod
    def of(cls, values: pd.Series) -> Factorized:
        codes, uniques = pd.factorize(values, use_na_sentinel=False)
        return cls(np.asarray(codes, dtype=np.int64), list(uniques))

    def into(self, names: list[str]) -> Ints:
        """Return the codes into `names`, which holds every value."""
        mapping = pd.Index(names).get_indexer(pd.Index(self.uniques, dtype=object))
        return np.asarray(mapping, dtype=np.int64)[self.codes]


def prepare(sessions: pd.DataFrame, start: float, end: float, extra_tools: Iterable[str]) -> tuple[list[str], Sessions]:
    """Return the sorted tool names (the period's sessions' plus `extra_tools`) and the period's sessions as arrays."""
    rows = overlapping(sessions, start, end)
    tools = Factorized.of(rows["tool"])
    names = sorted(set(tools.uniques) | set(extra_tools))
    user_codes, users = pd.factorize(rows["user"], sort=True, use_na_sentinel=False)
    returned = rows["returned_at"].to_numpy(dtype=np.float64, na_value=np.nan)
    data = Sessions(
        code=tools.into(names),
        borrowed=rows["borrowed_at"].to_numpy(dtype=np.float64),
        returned=np.where(np.isnan(returned), np.inf, returned),
        seq=rows["seq"].to_numpy(dtype=np.int64),
        overage=rows["is_overage"].fillna(False).to_numpy(dtype=bool),
        user=np.asarray(user_codes, dtype=np.int64),
        users=[str(u) for u in users],
    )
    return names, data


def select(s: Sessions, mask: Bools) -> Sessions:
    """Return the sessions where `mask` is true."""
    return Sessions(s.code[mask], s.borrowed[mask], s.returned[mask], s.seq[mask], s.overage[mask], s.user[mask], s.users)


def tool_sort(codes: Ints, order: Ints, n_tools: int) -> Ints:
    """Stable-sort `order` by tool code (a radix sort when the codes fit 16 bits)."""
    keys = codes[order]
    keys_small = keys.astype(np.int16) if n_tools < 2**15 else keys
    return order[np.argsort(keys_small, kind="stable")]


def levels_before(s: Sessions, n_tools: int) -> Ints:
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
    order = tool_sort(s.code, order, n_tools)
    code_sorted = s.code[order]
    pos_sorted = positive[order].astype(np.int64)
    started = np.cumsum(pos_sorted) - pos_sorted
    seg = np.searchsorted(code_sorted, np.arange(n_tools + 1))
    started -= started[seg[code_sorted]]
    # Minus the sessions already returned at the start: those are all earlier in that order, being positive-length.
    ends_idx = np.flatnonzero(positive)
    ends_order = tool_sort(s.code, ends_idx[np.argsort(s.returned[ends_idx])], n_tools)
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
class Timeline:
    """Time per level for every tool: `hist[offsets[k]:offsets[k + 1]]` is tool k's seconds at level 0, 1, … peak."""

    hist: Floats
    offsets: Ints
    peak: Ints


def time_per_level(s: Sessions, n_tools: int, start: float, end: float) -> Timeline:
    """Sort every tool's +1/-1 events once and add up the time each tool spends at each level."""
    if n_tools == 0:
        return Timeline(hist=np.zeros(0), offsets=np.zeros(1, dtype=np.int64), peak=np.zeros(0, dtype=np.int64))
    lo = np.maximum(s.borrowed, start)
    hi = np.minimum(s.returned, end)
    held = lo < hi
    times = np.concatenate((lo[held], hi[held]))
    steps = np.concatenate((np.ones(int(held.sum()), dtype=np.int64), np.full(int(held.sum()), -1, dtype=np.int64)))
    codes = np.concatenate((s.code[held], s.code[held]))
    order = tool_sort(codes, np.argsort(times).astype(np.int64), n_tools)
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
    return Timeline(hist=hist, offsets=offsets, peak=peak)
