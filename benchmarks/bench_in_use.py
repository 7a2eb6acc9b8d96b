"""Benchmark licenses in use per bin (peak, mean, end) for 200 tools: the buffer's in_use_series and the stored history.

Run: python benchmarks/bench_in_use.py [--no-history] [--borrows-per-day N]
"""

import argparse
import itertools
import math
import random
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np

from dash_app.buffer import RealtimeMetricsBuffer
from dash_app.events import Event
from dash_app.store import Store
from dash_app.store.history import HistoryKeeper, bin_seconds_for, history_series, rebuild_from
from dash_app.testing import FakeClock, timings
from dash_app.timeutil import parse_iso

END = 1_800_000_030.0  # half a minute into a minute, as a live read usually is
TOOLS = [f"tool {n:03d}" for n in range(200)]
WINDOW = 21600
CPU = time.process_time  # the buffer's figures are CPU seconds, so other work on the machine moves them less


def traffic(end, seconds=WINDOW, borrows=100_000, seed=11):
    """Return (events in time order, count in use per tool at `end`): borrows evenly spread, each returned after 1-60 min."""
    rng = random.Random(seed)
    # A few busy tools and a long tail of quiet ones (the busiest about 20 times the quietest).
    picks = rng.choices(TOOLS, weights=[1 / (n + 10) for n in range(len(TOOLS))], k=borrows)
    events = []
    for i, tool in enumerate(picks):
        ts = end - seconds + (i + 0.5) * seconds / borrows
        events.append(Event(ts, "borrow", tool, f"user{rng.randrange(300)}", f"b{i}", False, None))
        back = ts + rng.uniform(60, 3600)
        # Returns that would land after `end` are open borrows now; the others wrap to the window's start, so the
        # buffer holds 100,000 of each kind and its caps are met.
        if back >= end:
            back -= seconds
        events.append(Event(back, "return", tool, None, f"b{i}", None, None))
    events.sort(key=lambda e: e.ts)
    level = {}
    for e in events:
        level[e.tool] = level.get(e.tool, 0) + (1 if e.kind == "borrow" else -1)
    return events, level


def level_columns(events):
    """Return the columns a NumPy design keeps up to date as events come: its names, and time, name code and +1/-1 per event."""
    names = sorted({e.tool for e in events})
    codes = {name: i for i, name in enumerate(names)}
    return (
        names,
        np.array([e.ts for e in events]),
        np.array([codes[e.tool] for e in events], dtype=np.int64),
        np.array([1 if e.kind == "borrow" else -1 for e in events], dtype=np.int64),
    )


def numpy_levels(columns, levels_now, now, window):
    """The competent baseline: every minute's peak, mean and end in NumPy over the event columns, no Python loop per event.

    Each series' events and a zero step at every minute's start are sorted by (series, time); a cumulative sum walks
    the level from the window's start (the count now less the window's net); peaks are the levels after each instant,
    means the clamped level times each step's duration, summed per minute with bincount.
    """
    names, ts, tool, step = columns
    first, current = math.ceil((now - window) / 60), math.floor(now / 60)
    span, start = current - first + 1, first * 60
    keep = ts >= start
    ts, tool, step = ts[keep], tool[keep], step[keep]
    seen = np.flatnonzero(np.bincount(tool, minlength=len(names)))
    tools = sorted({names[i] for i in seen.tolist()} | {name for name, level in levels_now.items() if level})
    codes = {name: i for i, name in enumerate(tools)}
    count = len(tools)
    tool = np.array([codes.get(name, -1) for name in names], dtype=np.int64)[tool]
    minute = (ts // 60).astype(np.int64) - first
    assert minute.max() < span, "no event is stamped past the current minute here"
    cell = tool * span + minute
    net = np.bincount(cell, weights=step, minlength=count * span).reshape(count, span).astype(np.int64)
    at_start = np.array([levels_now.get(t, 0) for t in tools], dtype=np.int64) - net.sum(axis=1)
    ends = at_start[:, None] + np.cumsum(net, axis=1)
    starts = ends - net
    # Points: every event, and a zero step at each minute's start (sorted before the events of that instant).
    p_tool = np.concatenate([np.repeat(np.arange(count), span), tool])
    p_ts = np.concatenate([np.tile(start + 60.0 * np.arange(span), count), ts])
    p_step = np.concatenate([np.zeros(count * span, dtype=np.int64), step])
    p_edge = np.concatenate([np.zeros(count * span, dtype=np.int8), np.ones(len(ts), dtype=np.int8)])
    order = np.lexsort((p_edge, p_ts, p_tool))
    p_tool, p_ts, p_step = p_tool[order], p_ts[order], p_step[order]
    running = np.cumsum(p_step)
    group = np.searchsorted(p_tool, np.arange(count))
    before = np.where(group > 0, running[group - 1], 0)
    level = np.maximum(at_start[p_tool] + running - before[p_tool], 0)
    p_cell = p_tool * span + (p_ts // 60).astype(np.int64) - first
    # Peaks: the level after the last event of each instant (and the minute's start level, below).
    same_next = np.zeros(len(p_ts), dtype=bool)
    same_next[:-1] = (p_tool[1:] == p_tool[:-1]) & (p_ts[1:] == p_ts[:-1])
    cell_first = np.flatnonzero(np.concatenate(([True], p_cell[1:] != p_cell[:-1])))
    peaks = np.maximum.reduceat(np.where(same_next, 0, level), cell_first)
    peaks = np.maximum(peaks.reshape(count, span), np.maximum(starts, 0))
    # Means: each point holds its level until the next point of its series (the last one until now).
    stops = np.minimum(start + 60.0 * (p_cell % span) + 60, now)
    following = np.append(p_ts[1:], now)
    following[np.flatnonzero(~np.append(p_tool[1:] == p_tool[:-1], False))] = now
    held = np.minimum(following, stops) - np.minimum(p_ts, stops)
    areas = np.bincount(p_cell, weights=level * held, minlength=count * span).reshape(count, span)
    lengths = np.minimum(start + 60.0 * np.arange(span) + 60, now) - (start + 60.0 * np.arange(span))
    assert lengths[-1] > 0, "now is not at a minute's very start here"
    means = areas / lengths
    minutes = (start + 60 * np.arange(span)).tolist()
    clamped = np.maximum(ends, 0)
    return {t: list(zip(minutes, peaks[i].tolist(), means[i].tolist(), clamped[i].tolist())) for i, t in enumerate(tools)}


def report(label, seconds, extra=""):
    print(f"{label:<58} {seconds * 1000:9.2f} ms{extra}")


def bench_buffer():
    events, level = traffic(END)
    clock = FakeClock(END)
    buffer = RealtimeMetricsBuffer(clock=clock)
    buffer.add_events(events)
    stats = buffer.get_stats_summary()
    print(f"buffer: {stats['borrow_count']:,} borrows, {stats['return_count']:,} returns, {len(TOOLS)} tools, 6 h window")
    assert stats["borrow_count"] == 100_000 and stats["return_count"] == 100_000

    start = CPU()
    series = buffer.in_use_series(WINDOW, level)
    first_call = CPU() - start
    assert len(series) == len(TOOLS) and all(len(rows) == 360 for rows in series.values())
    assert sum(len(rows) for rows in series.values()) == 72_000

    # Live: one more borrow (or return) lands in the open minute before each read, the pool's count follows.
    ids = itertools.count()
    rng = random.Random(3)
    held = []
    live = []

    def one_event_then_read():
        clock.advance(0.01)
        if held and rng.random() < 0.5:
            borrow_id, tool = held.pop()
            buffer.add_return(borrow_id)
            live.append(Event(clock.now, "return", tool, None))
            level[tool] -= 1
        else:
            tool = rng.choice(TOOLS)
            borrow_id = f"live{next(ids)}"
            buffer.add_borrow(tool, "live", False, borrow_id)
            live.append(Event(clock.now, "borrow", tool, "live"))
            held.append((borrow_id, tool))
            level[tool] = level.get(tool, 0) + 1
        return buffer.in_use_series(WINDOW, level)

    steady = timings(one_event_then_read, 300, CPU)

    # Each minute the window slides: the closed minute joins the cached rows, the oldest leaves.
    def next_minute():
        clock.advance(60)
        return buffer.in_use_series(WINDOW, level)

    rollover = timings(next_minute, 20, CPU)

    got = buffer.in_use_series(WINDOW, level)
    # What the buffer retains: the newest 100,000 of each kind inside the retention.
    cutoff = clock.now - WINDOW
    retained = []
    for kind in ("borrow", "return"):
        retained.extend([e for e in events + live if e.kind == kind and e.ts >= cutoff][-100_000:])
    columns = level_columns(retained)
    baseline = timings(lambda: numpy_levels(columns, level, clock.now, WINDOW), 5, CPU)
    _assert_same(got, numpy_levels(columns, level, clock.now, WINDOW))

    report("in_use_series, first call (every minute computed)", first_call)
    report(
        "in_use_series, steady state after one new event",
        statistics.median(steady),
        f"   p95 {sorted(steady)[int(len(steady) * 0.95)] * 1000:6.2f} ms   (target <= 15 ms)",
    )
    report("in_use_series, first read of a new minute", statistics.median(rollover))
    report("baseline: NumPy over the event columns, every read", statistics.median(baseline), "   (same answer)")
    print(f"{'speed-up, steady state against the baseline':<58} {statistics.median(baseline) / statistics.median(steady):9.1f} x")


def _assert_same(got, expected):
    assert set(got) == set(expected)
    for tool, rows in got.items():
        want = expected[tool]
        assert [(r.minute, r.peak, r.end) for r in rows] == [(w[0], w[1], w[3]) for w in want], tool
        assert all(abs(r.average - w[2]) < 1e-6 for r, w in zip(rows, want)), tool


def replay_history(store, window, now):
    """The baseline without stored levels: every raw event replayed from the first, the level walked into each bin."""
    size = bin_seconds_for(window)
    unit = 3600 if size >= 3600 else 60
    start = int((now - window) // size) * size
    stop_all = (int(now // unit) + 1) * unit
    levels, peaks, areas, at = {}, {}, {}, {}
    for ts, kind, tool in store.read("SELECT ts, kind, tool FROM events WHERE tool IS NOT NULL ORDER BY ts, rowid"):
        level = levels.get(tool, 0)
        if ts >= start:
            # Close the time since this tool's last event, bin by bin, at the level it held.
            t = at.get(tool, start)
            while t < ts:
                edge = min((t // size + 1) * size, ts)
                key = (tool, int(t // size) * size)
                areas[key] = areas.get(key, 0.0) + level * (edge - t)
                peaks[key] = max(peaks.get(key, 0), level)
                t = edge
            at[tool] = ts
        if kind != "failure":
            level = max(0, level + (1 if kind == "borrow" else -1))
            levels[tool] = level
            if ts >= start:
                key = (tool, int(ts // size) * size)
                peaks[key] = max(peaks.get(key, 0), level)
    for tool, level in levels.items():
        t = at.get(tool, start)
        while t < stop_all:
            edge = min((t // size + 1) * size, stop_all)
            key = (tool, int(t // size) * size)
            areas[key] = areas.get(key, 0.0) + level * (edge - t)
            peaks[key] = max(peaks.get(key, 0), level)
            t = edge
    return {key: (peak, areas.get(key, 0.0) / (min(key[1] + size, stop_all) - key[1])) for key, peak in peaks.items()}


def bench_history(borrows_per_day):
    events, _level = traffic(END, seconds=86400, borrows=borrows_per_day)
    with tempfile.TemporaryDirectory() as folder:
        store = Store(Path(folder) / "bench.db")
        HistoryKeeper(store, raw_keep_seconds=10**9, history_seconds=40 * 86400, clock=lambda: END)
        # 30 days of history: the same day of traffic laid down 30 times over, a day apart.
        rows = []
        for day in range(30):
            shift = (day - 29) * 86400
            rows.extend((e.ts + shift, e.kind, e.tool, e.user, e.borrow_id, e.is_overage, e.reason) for e in events)
        with store._conn_lock:
            store._conn.executemany(
                "INSERT INTO events (ts, kind, tool, user, borrow_id, is_overage, reason) VALUES (?, ?, ?, ?, ?, ?, ?)", rows
            )
        start = time.perf_counter()
        rebuild_from(store, END - 30 * 86400)
        fold = time.perf_counter() - start
        (minute_rows,) = store.read("SELECT count(*) FROM minute_stats")[0]
        (hour_rows,) = store.read("SELECT count(*) FROM hour_stats")[0]
        print(
            f"history: {len(rows):,} raw events over 30 days, {len(TOOLS)} tools: "
            f"{minute_rows:,} minute rows, {hour_rows:,} hour rows"
        )
        report("rebuild_from, all 30 days of raw events at once (setup)", fold)
        for label, window in (("24 h", 86400), ("7 d", 7 * 86400), ("30 d", 30 * 86400)):
            times = timings(lambda window=window: history_series(store, window, now=END), 5)
            size, series = history_series(store, window, now=END)
            report(f"history_series {label:>4} ({size // 60} min bins, {len(series)} tools)", statistics.median(times))
        start = time.perf_counter()
        expected = replay_history(store, 30 * 86400, END)
        baseline = time.perf_counter() - start
        _size, series = history_series(store, 30 * 86400, now=END)
        got = {(tool, int(parse_iso(p["timestamp"]))): (p["peak"], p["avg_in_use"]) for tool, ps in series.items() for p in ps}
        # The replay also has bins at level 0 throughout, which history_series leaves out when they have no rows.
        assert {k for k, v in got.items() if v[0]} == {k for k, v in expected.items() if v[0]}
        assert all(got[k][0] == expected[k][0] and abs(got[k][1] - expected[k][1]) < 1e-6 for k in got)
        report("baseline: 30 d replayed from every raw event", baseline)
        store.close()


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--no-history", action="store_true", help="skip the stored-history part")
    parser.add_argument("--borrows-per-day", type=int, default=20_000, help="history traffic (default 20,000)")
    args = parser.parse_args()
    bench_buffer()
    if not args.no_history:
        bench_history(args.borrows_per_day)


if __name__ == "__main__":
    main()
