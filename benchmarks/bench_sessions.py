"""Reading the session history: 1,000,000 sessions and 50,000 denials over 30 days for 200 tools.

Everything is written through the store's own writer (`store.on_events` batches; host and version of the FlexLM-style
sessions as the pool submits them), then `load_sessions` + `load_denials` are timed for the last 7 and 30 days, cold (the
first read of a newly opened store) and repeated (median of five), beside a baseline in the same process that reads
every row and filters in Python. A one-tool read, and a week four weeks back, are timed too.

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

import pandas as pd

from dash_app.events import Event, borrow_event, failure_event, return_event
from dash_app.licenses.pool import _SAVE_DETAILS
from dash_app.store import Store
from dash_app.store.sessions import DENIAL_COLUMNS, SESSION_COLUMNS, load_denials, load_sessions

DAY = 86400.0
TOOLS = [f"Tool {i:03d}" for i in range(200)]
USERS = [f"user{i:04d}" for i in range(2000)]
REASONS = ("exhausted", "max_overage", "unknown_tool")
CHUNK = 2000  # events per on_events call, as a FlexLM catch-up records them


Details = tuple[str, str, str, float, bool, str, str]  # the pool's host-and-version statement's parameters


def history(sessions: int, denials: int, end: float, seed: int = 7) -> tuple[list[Event], list[Details]]:
    """Return (events in time order, host and version) of `sessions` sessions and `denials` denials over 30 days."""
    rng = random.Random(seed)
    start = end - 30 * DAY
    weights = [1 / (rank + 1) ** 0.8 for rank in range(len(TOOLS))]  # a few busy tools, a long tail
    tools = rng.choices(TOOLS, weights, k=sessions)
    events: list[Event] = []
    details: list[Details] = []
    for n, tool in enumerate(tools):
        user = rng.choice(USERS)
        borrowed_at = rng.uniform(start, end)
        duration = rng.lognormvariate(math.log(1800), 1.2)  # median 30 min, a tail of days
        flexlm = n % 5 < 2  # 40 % observed in a FlexLM log, with host and version
        borrow_id = f"flexlm|lic01|vendor|{tool}|ws{n % 500}|log:{n}" if flexlm else f"{n:032x}"
        is_overage = rng.random() < 0.1
        events.append(borrow_event(tool, user, is_overage, borrow_id, borrowed_at))
        if borrowed_at + duration < end:
            events.append(return_event(borrow_id, user, tool, borrowed_at + duration))
        if flexlm:
            details.append((borrow_id, tool, user, borrowed_at, is_overage, f"ws{n % 500}.lab", f"202{n % 5}.1"))
    for tool in rng.choices(TOOLS, weights, k=denials):
        events.append(failure_event(tool, rng.choice(USERS), rng.choice(REASONS), rng.uniform(start, end)))
    events.sort(key=lambda e: e.ts)
    return events, details


def write(path: str, events: list[Event], details: list[Details]) -> float:
    """Write the history through the store's writer thread; return the seconds it took."""
    store = Store(path)
    store.start()
    began = time.perf_counter()
    for i in range(0, len(events), CHUNK):
        store.on_events(events[i : i + CHUNK])
    for row in details:
        store.submit(_SAVE_DETAILS, row)  # as the pool does for a borrow with a host or version
    assert store.flush(timeout=3600), "the writer did not finish"
    took = time.perf_counter() - began
    store.stop()
    return took


def baseline_sessions(store: Store, start: float, end: float) -> pd.DataFrame:
    """Every session row, filtered in Python: what a reader without the index and query would do."""
    rows = store.read("SELECT tool, user, host, version, source, borrowed_at, returned_at, is_overage, rowid FROM borrows")
    kept = [r for r in rows if r[5] < end and (r[6] is None or r[6] > start)]
    return pd.DataFrame.from_records(kept, columns=list(SESSION_COLUMNS))


def baseline_denials(store: Store, start: float, end: float) -> pd.DataFrame:
    rows = store.read("SELECT ts, tool, user, reason, rowid FROM denials")
    return pd.DataFrame.from_records([r for r in rows if start <= r[0] < end], columns=list(DENIAL_COLUMNS))


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
            events, details = history(args.sessions, args.denials, end)
            took = time.perf_counter() - began
            print(f"generated {len(events):,} events and {len(details):,} hosts and versions in {took:.1f} s")
            took = write(path, events, details)
            del events, details
            print(f"written through the store's writer in {took:.1f} s ({os.path.getsize(path) / 2**20:.0f} MiB)")
        print()
        print(f"{'read':<34} {'rows':>9} {'cold':>8} {'repeated':>9} {'baseline':>9}")
        for days in (7, 30):
            start = end - days * DAY
            store = Store(path)  # a new store: new connections with empty page caches
            cold_s, sessions = timed(lambda: load_sessions(store, start, end))  # noqa: B023 - called at once
            cold_d, denials = timed(lambda: load_denials(store, start, end))  # noqa: B023
            warm_s = repeated(lambda: load_sessions(store, start, end))  # noqa: B023
            warm_d = repeated(lambda: load_denials(store, start, end))  # noqa: B023
            base_s, expected_s = timed(lambda: baseline_sessions(store, start, end))  # noqa: B023
            base_d, expected_d = timed(lambda: baseline_denials(store, start, end))  # noqa: B023
            assert sorted(sessions["seq"]) == sorted(expected_s["seq"]), "sessions differ from the baseline"
            assert sorted(denials["seq"]) == sorted(expected_d["seq"]), "denials differ from the baseline"
            print(f"{f'load_sessions {days} d':<34} {len(sessions):>9,} {cold_s:>7.3f}s {warm_s:>8.3f}s {base_s:>8.3f}s")
            print(f"{f'load_denials {days} d':<34} {len(denials):>9,} {cold_d:>7.3f}s {warm_d:>8.3f}s {base_d:>8.3f}s")
            total = cold_s + cold_d, warm_s + warm_d, base_s + base_d
            print(f"{f'  both, {days} d':<34} {'':>9} {total[0]:>7.3f}s {total[1]:>8.3f}s {total[2]:>8.3f}s")
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
