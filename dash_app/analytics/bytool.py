"""Every stored session sorted by tool, with what any period's capacity figures need computed ahead: a period is then
masks and bincounts over these arrays, with no sort and no hashing of names at query time.

Two things do not depend on the period (definitions in dash_app/analytics/capacity.py):
- the level just before a session's start: the sessions of its tool returned before the period count both as started
  earlier and as returned, so they cancel out;
- a tool's in_use as a step function of time: the steps (+1 at a positive-length session's start, -1 at its return)
  over the whole history, with the level after each step and the time of the tool's next step.

The analysis process's HistoryMirror keeps a ByTool of its copy, rebuilt only for the tools whose rows changed, and
marks the session frames it hands out (`mark`), so capacity() and commit_advice() on such a frame take their figures
from it (`origin`): the same figures as from the frame's rows, in the same order of addition.
"""

from __future__ import annotations

import weakref
from dataclasses import dataclass, fields
from typing import Any

import numpy as np
import numpy.typing as npt
import pandas as pd

from dash_app.analytics.levels import Bools, Floats, Ints, Sessions, Timeline, levels_before

Int32s = npt.NDArray[np.int32]


@dataclass(frozen=True)
class ByTool:
    """Sessions in (tool, borrowed_at, seq) order with each one's level before its start, and each tool's steps."""

    code: Int32s  # tool: a code into `names` (the codes and levels are int32)
    borrowed: Floats
    returned: Floats  # inf while open
    seq: Ints
    overage: Bools
    user: Int32s  # a code into `names`
    level: Int32s  # licenses of its tool held just before its start
    step_code: Int32s  # the steps of positive-length sessions, in (tool, time) order
    step_time: Floats
    step_level: Int32s  # the tool's in_use after the step
    step_next: Floats  # the time of the tool's next step (inf after its last)
    names: Any  # object array of the text behind the codes (it only ever grows: codes stay valid)

    def without(self, codes: Ints) -> ByTool:
        """Return this index without the tools of `codes`."""
        keep, keep_steps = ~np.isin(self.code, codes), ~np.isin(self.step_code, codes)
        return _take(self, keep, keep_steps, self.names)


_SESSION_FIELDS = ("code", "borrowed", "returned", "seq", "overage", "user", "level")
_STEP_FIELDS = ("step_code", "step_time", "step_level", "step_next")


def _take(index: ByTool, rows: Any, steps: Any, names: Any) -> ByTool:
    values = {name: getattr(index, name)[rows] for name in _SESSION_FIELDS}
    values.update({name: getattr(index, name)[steps] for name in _STEP_FIELDS})
    return ByTool(**values, names=names)


def _dense(codes: Ints) -> tuple[Ints, int]:
    """Return `codes` renumbered 0..n-1 in the same order (small enough for a radix sort), and n."""
    if not len(codes):
        return codes.astype(np.int16), 0
    present = np.bincount(codes) > 0
    rank = np.cumsum(present) - 1
    n = int(present.sum())
    return rank[codes].astype(np.int16 if n < 2**15 else np.int64), n


def build(code: Ints, borrowed: Floats, returned: Floats, seq: Ints, overage: Bools, user: Ints, names: Any) -> ByTool:
    """Return the index of these sessions (returned_at NaN while open; any row order); `names` is the codes' text."""
    code, seq, user = (np.asarray(a, dtype=np.int64) for a in (code, seq, user))
    borrowed, returned = np.asarray(borrowed, dtype=np.float64), np.asarray(returned, dtype=np.float64)
    returned = np.where(np.isnan(returned), np.inf, returned)
    overage = np.asarray(overage, dtype=bool)
    dense, n_tools = _dense(code)
    order = np.argsort(seq, kind="stable")
    order = order[np.argsort(borrowed[order], kind="stable")]
    # Handed the rows in (borrowed_at, seq) order, levels_before sees so (it checks) and sorts only the return times.
    timed = Sessions(dense[order].astype(np.int64), borrowed[order], returned[order], seq[order], overage[order], user[order], [])
    by_tool = np.argsort(dense[order], kind="stable")
    level = levels_before(timed, n_tools)[by_tool]
    order = order[by_tool]
    s = Sessions(code[order], borrowed[order], returned[order], seq[order], overage[order], user[order], [])
    step_code, times, step_level, step_next = _steps(s, np.searchsorted(dense[order], np.arange(n_tools + 1)))
    # Codes and levels in 32 bits: the index is held beside the copy all the time (about 90 bytes a session).
    small = [a.astype(np.int32) for a in (s.code, s.user, level, step_code, step_level)]
    return ByTool(
        small[0], s.borrowed, s.returned, s.seq, s.overage, small[1], small[2], small[3], times, small[4], step_next, names
    )


def _steps(s: Sessions, seg: Ints) -> tuple[Ints, Floats, Ints, Floats]:
    """Return each tool's steps (codes, times, levels after, next times) from its rows `s[seg[k]:seg[k + 1]]`."""
    parts: list[tuple[Floats, Ints]] = []
    for lo, hi in zip(seg[:-1].tolist(), seg[1:].tolist()):
        b, r = s.borrowed[lo:hi], s.returned[lo:hi]
        positive = r > b
        closed = positive & np.isfinite(r)
        times = np.concatenate((b[positive], r[closed]))
        steps = np.concatenate((np.ones(int(positive.sum()), np.int64), np.full(int(closed.sum()), -1, np.int64)))
        # The starts are in order already: one tool's sort is mostly a merge of two runs.
        order = np.argsort(times, kind="stable")
        parts.append((times[order], np.cumsum(steps[order])))
    counts = [len(times) for times, _ in parts]
    if not counts:
        return np.zeros(0, np.int64), np.zeros(0), np.zeros(0, np.int64), np.zeros(0)
    times = np.concatenate([times for times, _ in parts])
    step_code = np.repeat(s.code[seg[:-1]], counts)
    step_next = np.full(len(times), np.inf)
    step_next[:-1] = times[1:]
    step_next[(np.cumsum(counts) - 1)[np.array(counts) > 0]] = np.inf  # a tool's last step: nothing follows it
    return step_code, times, np.concatenate([levels for _, levels in parts]), step_next


def merge(kept: ByTool, fresh: ByTool) -> ByTool:
    """Return one index of two with no tool in common (each tool's rows and steps keep their order)."""
    values = {
        f.name: np.concatenate((getattr(kept, f.name), getattr(fresh, f.name))) for f in fields(ByTool) if f.name != "names"
    }
    rows = np.argsort(values["code"], kind="stable")
    steps = np.argsort(values["step_code"], kind="stable")
    return _take(ByTool(**values, names=fresh.names), rows, steps, fresh.names)


@dataclass(frozen=True)
class Origin:
    """Where a sessions frame came from: an index, the period it was cut to, and its tools (None: every tool)."""

    index: ByTool
    start: float
    end: float
    tools: frozenset[str] | None


# Frames handed out by a mirror, by id, with a weak reference to check the id is still that frame's.
_MARKED: dict[int, tuple[weakref.ref[pd.DataFrame], Origin]] = {}


def mark(frame: pd.DataFrame, origin: Origin) -> pd.DataFrame:
    """Record that `frame` holds `origin`'s sessions; the frame must not be changed in place afterwards."""
    key = id(frame)
    _MARKED[key] = (weakref.ref(frame, lambda _ref: _MARKED.pop(key, None)), origin)
    return frame


def origin(frame: pd.DataFrame, start: float, end: float) -> Origin | None:
    """Return the origin of a marked frame when [start, end) lies within the period it was cut to, else None."""
    entry = _MARKED.get(id(frame))
    if entry is None or entry[0]() is not frame:
        return None
    found = entry[1]
    return found if found.start <= start and end <= found.end else None


@dataclass
class Period:
    """A period's sessions from an index, as capacity() takes them: tool codes into `names`, users sorted by name."""

    names: list[str]
    sessions: Sessions
    level: Int32s  # each session's level before its start
    timeline: Timeline | None  # None when not asked for


def cut_period(found: Origin, start: float, end: float, extra_tools: set[str], timeline: bool = True) -> Period:
    """Return the sessions overlapping [start, end) of the origin's tools, and (when asked) their time per level."""
    index, text = found.index, found.index.names
    cut = _cut(found, start, end)
    names = sorted({str(text[c]) for c in cut.tools} | extra_tools)
    position = np.full(len(text), -1, dtype=np.int64)
    position[cut.tools] = pd.Index(names).get_indexer(pd.Index(text[cut.tools], dtype=object))
    s = Sessions(position[cut.code], cut.borrowed, cut.returned, cut.seq, cut.overage, cut.user, cut.users)
    if not timeline:
        return Period(names, s, cut.level, None)
    step_position = np.where(cut.wanted[index.step_code], position[index.step_code], -1)
    return Period(names, s, cut.level, _timeline(index, step_position, len(names), start, end))


@dataclass(frozen=True)
class _Cut:
    """The rows of a period (tool codes still the index's) and what else does not depend on the tools asked for."""

    index: weakref.ref[ByTool]
    key: tuple[float, float, frozenset[str] | None]
    wanted: Bools  # per code: a tool of the origin's
    tools: Ints  # the codes of the tools with a session in the period
    code: Int32s
    borrowed: Floats
    returned: Floats
    seq: Ints
    overage: Bools
    user: Ints  # ranks of the period's users' names
    users: list[str]
    level: Int32s


_last_cut: list[_Cut] = []  # capacity() and commit_advice() of one frame cut it once


def _cut(found: Origin, start: float, end: float) -> _Cut:
    key = (start, end, found.tools)
    if _last_cut and _last_cut[0].index() is found.index and _last_cut[0].key == key:
        return _last_cut[0]
    index, text = found.index, found.index.names
    wanted = np.zeros(len(text), dtype=bool)
    codes_present = np.flatnonzero(np.bincount(index.code, minlength=len(text)) > 0)
    wanted[codes_present] = True if found.tools is None else [text[c] in found.tools for c in codes_present]
    keep = (index.borrowed < end) & (index.returned > start) & wanted[index.code]
    code = index.code[keep]
    user = index.user[keep]
    users = np.flatnonzero(np.bincount(user, minlength=len(text)) > 0)
    user_names = text[users]
    by_name = np.argsort(user_names.astype(str), kind="stable")
    user_rank = np.zeros(len(text), dtype=np.int64)
    user_rank[users[by_name]] = np.arange(len(users))
    cut = _Cut(
        index=weakref.ref(index),
        key=key,
        wanted=wanted,
        tools=np.flatnonzero(np.bincount(code, minlength=len(text)) > 0),
        code=code,
        borrowed=index.borrowed[keep],
        returned=index.returned[keep],
        seq=index.seq[keep],
        overage=index.overage[keep],
        user=user_rank[user],
        users=[str(u) for u in user_names[by_name]],
        level=index.level[keep],
    )
    _last_cut[:] = [cut]
    return cut


def _timeline(index: ByTool, position: Ints, n_tools: int, start: float, end: float) -> Timeline:
    """Time per level in [start, end) of each tool, in the order time_per_level adds it up (see levels.py)."""
    durations = np.minimum(index.step_next, end) - np.maximum(index.step_time, start)
    # Not the time at 0 before the period's first step: time_per_level has no step there (its level 0 is filled in).
    held = (durations > 0) & (position >= 0) & ((index.step_level > 0) | (index.step_time > start))
    k, levels, durations = position[held], index.step_level[held], durations[held]
    peak = np.zeros(n_tools, dtype=np.int64)
    if len(k):
        # The steps of one tool are together: the peak of each run of one tool code.
        runs = np.flatnonzero(np.r_[True, k[1:] != k[:-1]])
        peak[k[runs]] = np.maximum.reduceat(levels, runs)
    offsets = np.zeros(n_tools + 1, dtype=np.int64)
    np.cumsum(peak + 1, out=offsets[1:])
    hist = np.bincount(offsets[k] + levels, weights=durations, minlength=int(offsets[-1])).astype(np.float64)
    if n_tools:
        positive_time = np.add.reduceat(hist, offsets[:-1]) - hist[offsets[:-1]]
        hist[offsets[:-1]] = (end - start) - positive_time
    return Timeline(hist=hist, offsets=offsets, peak=peak)
