"""Reading the session history: 1,000,000 sessions and 50,000 denials over 30 days for 200 tools.

Everything is written through the store's own writer (`store.on_events` batches; host and version of the FlexLM-style
sessions as the pool submits them), then `load_sessions` + `load_denials` are timed for the last 7 and 30 days, cold (the
first read of a newly opened store) and repeated (median of five), beside a baseline in the same process that reads
from columnar NumPy arrays of every stored row kept in memory (as a process that kept them up to date would hold
them), filtered by a vectorised mask into the same DataFrame. A one-tool read, and a week four weeks back, are timed too.

Run: python benchmarks/bench_sessions.py [--sessions N] [--denials N] [--db PATH]
"""

from __future__ import annotations

import argparse
import math
import os
import random
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from dash_app.analytics.capacity import DENIAL_COLUMNS, SESSION_COLUMNS
from dash_app.events import Event, borrow_event, failure_event, return_event
from dash_app.store import Store
from dash_app.store.sessions import load_denials, load_sessions

DAY = 86400.0
TOOLS = [f"Tool {i:03d}" for i in range(200)]
USERS = [f"user{i:04d}" for i in range(2000)]
REASONS = ("exhausted", "max_overage", "unknown_tool")
CHUNK = 2000  # events per on_events call, as a FlexLM catch-up records them


def history(sessions: int, denials: int, end: float, seed: int = 7) -> list[Event]:
    """Return the events, in time order, of `sessions` sessions and `denials` denials over 30 days."""
    rng = random.Random(seed)
    start = end - 30 * DAY
    weights = [1 / (rank + 1) ** 0.8 for rank in range(len(TOOLS))]  # a few busy tools, a long tail
    tools = rng.choices(TOOLS, weights, k=sessions)
    events: list[Event] = []
    for n, tool in enumerate(tools):
        user = rng.choice(USERS)
        borrowed_at = rng.uniform(start, end)
        duration = rng.lognormvariate(math.log(1800), 1.2)  # median 30 min, a tail of days
        flexlm = n % 5 < 2  # 40 % observed in a FlexLM log, with host and version
        borrow_id = f"flexlm|lic01|vendor|{tool}|ws{n % 500}|log:{n}" if flexlm else f"{n:032x}"
        is_overage = rng.random() < 0.1
        host, version = (f"ws{n % 500}.lab", f"202{n % 5}.1") if flexlm else (None, None)
        events.append(borrow_event(tool, user, is_overage, borrow_id, borrowed_at, host, version))
        if borrowed_at + duration < end:
            events.append(return_event(borrow_id, user, tool, borrowed_at + duration))
    for tool in rng.choices(TOOLS, weights, k=denials):
        events.append(failure_event(tool, rng.choice(USERS), rng.choice(REASONS), rng.uniform(start, end)))
    events.sort(key=lambda e: e.ts)
    return events


def write(path: str, events: list[Event]) -> float:
    """Write the history through the store's writer thread; return the seconds it took."""
    store = Store(path)
    store.start()
    began = time.perf_counter()
    for i in range(0, len(events), CHUNK):
        store.on_events(events[i : i + CHUNK])
    assert store.flush(timeout=3600), "the writer did not finish"
    took = time.perf_counter() - began
    store.stop()
    return took


class Columns:
    """The baseline: every stored session and denial as NumPy columns in memory, read once (not timed)."""

    def __init__(self, store: Store) -> None:
        sessions = store.read(
            "SELECT tool, user, host, version, source, borrowed_at, returned_at, is_overage, rowid FROM borrows"
        )
        self.sessions = {
            name: np.array([row[i] for row in sessions], dtype=object if i < 5 else None)
            for i, name in enumerate(SESSION_COLUMNS)
        }
        returned = self.sessions["returned_at"]
        self.sessions["returned_at"] = np.array([np.nan if r is None else r for r in returned], dtype=np.float64)
        denials = store.read("SELECT ts, tool, user, reason, rowid FROM denials")
        self.denials = {
            name: np.array([row[i] for row in denials], dtype=None if name in ("ts", "seq") else object)
            for i, name in enumerate(DENIAL_COLUMNS)
        }

    def load_sessions(self, start: float, end: float) -> pd.DataFrame:
        """The sessions overlapping [start, end), by one vectorised mask over the columns."""
        s = self.sessions
        returned = s["returned_at"]
        keep = (s["borrowed_at"] < end) & (np.isnan(returned) | (returned > start))
        return pd.DataFrame({name: column[keep] for name, column in s.items()})

    def load_denials(self, start: float, end: float) -> pd.DataFrame:
        """The denials at times in [start, end), by one vectorised mask over the columns."""
        ts = self.denials["ts"]
        keep = (ts >= start) & (ts < end)
        return pd.DataFrame({name: column[keep] for name, column in self.denials.items()})


def timed(fn: Callable[[], Any]) -> tuple[float, Any]:
    began = time.perf_counter()
    result = fn()
    return time.perf_counter() - began, result


def repeated(fn: Callable[[], Any], times: int = 5) -> float:
    return statistics.median(timed(fn)[0] for _ in range(times))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sessions", type=int, default=1_000_000)
    parser.add_argument("--denials", type=int, default=50_000)
    parser.add_argument("--db", help="reuse this database when it exists (else write it there)")
    args = parser.parse_args()
    end = 1_800_000_000.0  # a fixed "now": the figures do not depend on the day it runs
    with tempfile.TemporaryDirectory() as tmp:
        path = args.db or str(Path(tmp) / "sessions.db")
        if not os.path.exists(path):
            began = time.perf_counter()
            events = history(args.sessions, args.denials, end)
            took = time.perf_counter() - began
            print(f"generated {len(events):,} events in {took:.1f} s")
            took = write(path, events)
            del events
            print(f"written through the store's writer in {took:.1f} s ({os.path.getsize(path) / 2**20:.0f} MiB)")
        print()
        baseline = Columns(Store(path))
        print("baseline: every stored row held as NumPy columns in memory, filtered by a vectorised mask (median of five)")
        print(f"{'read':<34} {'rows':>9} {'cold':>8} {'repeated':>9} {'baseline':>9} {'ours/base':>9}")
        for days in (7, 30):
            start = end - days * DAY
            store = Store(path)  # a new store: new connections with empty page caches
            cold_s, sessions = timed(lambda: load_sessions(store, start, end))  # noqa: B023 - called at once
            cold_d, denials = timed(lambda: load_denials(store, start, end))  # noqa: B023
            warm_s = repeated(lambda: load_sessions(store, start, end))  # noqa: B023
            warm_d = repeated(lambda: load_denials(store, start, end))  # noqa: B023
            expected_s, expected_d = baseline.load_sessions(start, end), baseline.load_denials(start, end)
            base_s = repeated(lambda: baseline.load_sessions(start, end))  # noqa: B023
            base_d = repeated(lambda: baseline.load_denials(start, end))  # noqa: B023
            assert sorted(sessions["seq"]) == sorted(expected_s["seq"]), "sessions differ from the baseline"
            assert sorted(denials["seq"]) == sorted(expected_d["seq"]), "denials differ from the baseline"
            print(
                f"{f'load_sessions {days} d':<34} {len(sessions):>9,} {cold_s:>7.3f}s {warm_s:>8.3f}s {base_s:>8.3f}s "
                f"{warm_s / base_s:>8.1f}x"
            )
            print(
                f"{f'load_denials {days} d':<34} {len(denials):>9,} {cold_d:>7.3f}s {warm_d:>8.3f}s {base_d:>8.3f}s "
                f"{warm_d / base_d:>8.1f}x"
            )
            total = cold_s + cold_d, warm_s + warm_d, base_s + base_d
            print(
                f"{f'  both, {days} d':<34} {'':>9} {total[0]:>7.3f}s {total[1]:>8.3f}s {total[2]:>8.3f}s "
                f"{total[1] / total[2]:>8.1f}x"
            )
            one = [TOOLS[0]]
            cold_one, frame = timed(lambda: load_sessions(store, start, end, tools=one))  # noqa: B023
            warm_one = repeated(lambda: load_sessions(store, start, end, tools=one))  # noqa: B023
            print(f"{f'load_sessions {days} d, busiest tool':<34} {len(frame):>9,} {cold_one:>7.3f}s {warm_one:>8.3f}s")
            tail = [TOOLS[-1]]
            cold_one, frame = timed(lambda: load_sessions(store, start, end, tools=tail))  # noqa: B023
            warm_one = repeated(lambda: load_sessions(store, start, end, tools=tail))  # noqa: B023
            print(f"{f'load_sessions {days} d, quietest tool':<34} {len(frame):>9,} {cold_one:>7.3f}s {warm_one:>8.3f}s")
            store.close()
        # A week a month back: the returned_at range runs from its start to now.
        store = Store(path)
        start, stop = end - 28 * DAY, end - 21 * DAY
        cold_s, sessions = timed(lambda: load_sessions(store, start, stop))
        warm_s = repeated(lambda: load_sessions(store, start, stop))
        print(f"{'load_sessions 7 d, 4 weeks back':<34} {len(sessions):>9,} {cold_s:>7.3f}s {warm_s:>8.3f}s")
        store.close()


if __name__ == "__main__":
    main()
