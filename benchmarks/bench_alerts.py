"""Benchmark alert evaluation: 500 tools x 10 rules per tick, beside a vectorised NumPy/pandas reading of the raw events.

Run: python benchmarks/bench_alerts.py [--tools 500] [--ticks 50] [--hours 1]

The pool holds an estate of --tools tools (testing.estate_inventory) after --hours of traffic (one by default): every
tool borrowed up to about its commit, some to its total, a few thousand denials, checkouts held from minutes to a
day, overage borrows since the start of the month. Ten rules cover every kind (two of in_use_percent, denials,
held_longer_than and overage_cost; expires_within; source_down over 100 servers; not_persisting). Ours is evaluate()
over the tick's pool status and the facts kept by listeners (facts.py), and AlertEngine.on_tick, which adds the
alerts' state. The baseline is what a competent script over an export of the same events would do: the events as
columns (NumPy arrays, tools and borrow ids as integer codes, built once outside the timing), each rule a few
vectorised operations over them (in use per tool as a bincount of borrows minus one of returns, denials and overage
borrows as bincounts under a boolean mask, long checkouts as open borrows by a returned-flag array, expiry in days
from the tools' frame); its cost grows with the hours of events, ours with what the answer holds. Both must find the
same conditions, expiry included. Target: 5 ms per tick.
"""

from __future__ import annotations

import argparse
import random
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from dash_app.alerts.conditions import Facts, evaluate
from dash_app.alerts.engine import AlertEngine
from dash_app.alerts.facts import DenialWindow, OpenCheckouts, OverageLedger, period_start
from dash_app.alerts.rules import Rule, parse_rules
from dash_app.buffer import RealtimeMetricsBuffer
from dash_app.events import BORROW, FAILURE, RETURN, Event
from dash_app.licenses import LicensePool
from dash_app.licenses.inventory import parse_inventory
from dash_app.recording import EventRecorder
from dash_app.testing import estate_inventory

TARGET_MS = 5.0
RULES = {
    "rules": [
        {"name": "near-full", "kind": "in_use_percent", "tool": "*", "above": 90, "for_seconds": 300},
        {"name": "busy", "kind": "in_use_percent", "tool": "*", "above": 75, "for_seconds": 60},
        {"name": "denials", "kind": "denials", "tool": "*", "count": 5, "within_seconds": 600},
        {"name": "denial-burst", "kind": "denials", "tool": "*", "count": 3, "within_seconds": 60},
        {"name": "long-held", "kind": "held_longer_than", "tool": "*", "seconds": 43200},
        {"name": "very-long-held", "kind": "held_longer_than", "tool": "*", "seconds": 72000},
        {"name": "overage-day", "kind": "overage_cost", "tool": "*", "above": 500, "period": "day"},
        {"name": "overage-month", "kind": "overage_cost", "tool": "*", "above": 10000, "period": "month"},
        {"name": "expiring", "kind": "expires_within", "days": 14},
        {"name": "server-down", "kind": "source_down", "for_seconds": 120},
        {"name": "disk", "kind": "not_persisting", "for_seconds": 60},
    ][:10]
}


def estate(tools: int, now: float, hours: int = 1) -> tuple[LicensePool, list[Event], Facts]:
    """Return a pool after `hours` of traffic, the raw events recorded, and the listeners' facts."""
    rng = random.Random(5)
    inventory = estate_inventory(tools)
    pool_events: list[Event] = []

    class Keep:
        def on_events(self, events: Any) -> None:
            pool_events.extend(events)

    rules = parse_rules(RULES, lambda url: None)
    denials = DenialWindow(600)
    checkouts = OpenCheckouts()
    recorder = EventRecorder(RealtimeMetricsBuffer(max_borrows=1_000_000, max_returns=1_000_000, max_failures=100_000))
    pool = LicensePool(parse_inventory(inventory), recorder)
    overage = OverageLedger([r.params["period"] for r in rules.rules if r.kind == "overage_cost"], lambda start: {}, now)
    for listener in (Keep(), denials, checkouts, overage):
        recorder.add_listener(listener)
    for n, spec in enumerate(inventory):
        tool = spec["tool"]
        target = spec["commit_qty"] + (spec["max_overage"] if n % 7 == 0 else 0)
        held = []
        for k in range(target):
            # Long holders now and then: a day, half a day, or minutes.
            age = rng.choice((86000, 50000, 3000, 600, 120)) if k == 0 else rng.uniform(60, 3500)
            held.append(pool.observe_borrow(tool, f"user{rng.randrange(300)}", now - age))
        for _ in range(rng.randrange(60) * hours):  # the borrows that came and went, about 30 an hour
            extra = pool.observe_borrow(tool, f"user{rng.randrange(300)}", now - rng.uniform(60, 3600 * hours - 100))
            pool.observe_return(extra.id, now - rng.uniform(0, 50))
        for _ in range(rng.choice((0, 0, 1, 2, 6))):
            pool.observe_failure(tool, f"user{rng.randrange(300)}", "exhausted", now - rng.uniform(0, 590))
    if tools > 3:
        pool.observe_expiry(inventory[3]["tool"], time.strftime("%Y-%m-%d", time.gmtime(now + 5 * 86400)))
    sources = [
        {"kind": "lmstat", "name": f"{27000 + n}@lic{n:03d}", "state": "down" if n == 42 else "up"}
        | {"down_since": "2026-01-01T00:00:00.000Z" if n == 42 else None, "last_error": None}
        for n in range(100)
    ]
    facts = Facts(now, pool.status(), True, denials, checkouts, overage, lambda: sources)
    return pool, pool_events, facts


KIND_CODES = {BORROW: 0, RETURN: 1, FAILURE: 2}


@dataclass
class Columns:
    """The raw events as the baseline holds them: one array a field, tools and borrow ids as integer codes."""

    ts: np.ndarray
    kind: np.ndarray  # codes of KIND_CODES
    tool: np.ndarray  # codes into `tools`
    borrow: np.ndarray  # codes into `borrow_ids` (-1: none)
    is_overage: np.ndarray
    tools: pd.Index  # tool names, in the order of the pool's status
    borrow_ids: pd.Index


def columns(events: list[Event], tool_names: list[str]) -> Columns:
    """Return the raw events as arrays (the export a script would read once and keep)."""
    tools = pd.Index(tool_names)
    borrow, borrow_ids = pd.factorize(pd.Series([e.borrow_id for e in events], dtype=object))
    return Columns(
        ts=np.fromiter((e.ts for e in events), float, len(events)),
        kind=np.fromiter((KIND_CODES[e.kind] for e in events), np.int8, len(events)),
        tool=tools.get_indexer([e.tool for e in events]),
        borrow=borrow,
        is_overage=np.fromiter((bool(e.is_overage) for e in events), bool, len(events)),
        tools=tools,
        borrow_ids=pd.Index(borrow_ids),
    )


def _per_tool(ev: Columns, mask: np.ndarray) -> np.ndarray:
    """Return how many of the events under `mask` each tool has."""
    return np.bincount(ev.tool[mask], minlength=len(ev.tools))


def _in_use(rule: Rule, ev: Columns, tools: pd.DataFrame, now: float) -> pd.Index:
    in_use = _per_tool(ev, ev.kind == KIND_CODES[BORROW]) - _per_tool(ev, ev.kind == KIND_CODES[RETURN])
    total = tools["total"].to_numpy()
    with np.errstate(divide="ignore", invalid="ignore"):
        return ev.tools[(total > 0) & (100.0 * in_use / total >= rule.params["above"])]


def _denials(rule: Rule, ev: Columns, tools: pd.DataFrame, now: float) -> pd.Index:
    counts = _per_tool(ev, (ev.kind == KIND_CODES[FAILURE]) & (ev.ts >= now - rule.params["within_seconds"]))
    return ev.tools[counts >= rule.params["count"]]


def _held(rule: Rule, ev: Columns, tools: pd.DataFrame, now: float) -> pd.Index:
    returned = np.zeros(len(ev.borrow_ids), bool)
    returned[ev.borrow[ev.kind == KIND_CODES[RETURN]]] = True
    borrows = (ev.kind == KIND_CODES[BORROW]) & (ev.ts < now - rule.params["seconds"])
    codes = ev.borrow[borrows]
    return ev.borrow_ids[codes[~returned[codes]]]


def _overage(rule: Rule, ev: Columns, tools: pd.DataFrame, now: float) -> pd.Index:
    start = period_start(rule.params["period"], now)
    counts = _per_tool(ev, (ev.kind == KIND_CODES[BORROW]) & ev.is_overage & (ev.ts >= start))
    cost = counts * tools["overage_price_per_license"].fillna(0).to_numpy()
    return ev.tools[cost > rule.params["above"]]


def _expiring(rule: Rule, ev: Columns, tools: pd.DataFrame, now: float) -> pd.Index:
    expiry = pd.to_datetime(tools["expiry"].where(tools["expiry"] != "permanent"), format="%Y-%m-%d", errors="coerce")
    today = pd.Timestamp(now, unit="s").normalize()
    return ev.tools[((expiry - today).dt.days <= rule.params["days"]).to_numpy()]


# Each kind's reading of the events' arrays and the tools' frame: the names (tools, borrow ids) it holds for.
BASELINE: dict[str, Callable[[Rule, Columns, pd.DataFrame, float], pd.Index]] = {
    "in_use_percent": _in_use,
    "denials": _denials,
    "held_longer_than": _held,
    "overage_cost": _overage,
    "expires_within": _expiring,
}


def baseline(rules: Any, ev: Columns, tools: pd.DataFrame, sources: pd.DataFrame, now: float, persisted: bool) -> set[str]:
    """Return the keys of the conditions that hold, each rule read from the events' arrays by vectorised operations."""
    keys: set[str] = set()
    for rule in rules:
        if rule.kind == "not_persisting":
            keys.update([] if persisted else [rule.name])
            continue
        if rule.kind == "source_down":
            found = pd.Index(sources.loc[sources["state"] == "down", "name"])
        else:
            found = BASELINE[rule.kind](rule, ev, tools, now)
        if rule.tool not in (None, "*"):
            found = found[found == rule.tool]
        keys.update(f"{rule.name}|{name}" for name in found)
    return keys


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--tools", type=int, default=500)
    parser.add_argument("--ticks", type=int, default=50)
    parser.add_argument("--hours", type=int, default=1, help="hours of traffic behind the estate (the baseline reads them all)")
    args = parser.parse_args()
    now = time.time()
    pool, events, facts = estate(args.tools, now, args.hours)
    config = parse_rules(RULES, lambda url: None)
    started = time.perf_counter()
    tools = pd.DataFrame(list(facts.tools))
    frame = columns(events, list(tools["tool"]))
    sources = pd.DataFrame(facts.sources())
    frames_ms = (time.perf_counter() - started) * 1000

    ours = {o.key for o in evaluate(config.rules, facts)}
    theirs = baseline(config.rules, frame, tools, sources, now, facts.persisted)
    if ours != theirs:
        raise SystemExit(f"ours and the baseline disagree: {sorted(ours ^ theirs)[:5]}")

    engine = AlertEngine(config, None, None, "http://127.0.0.1:8050", lambda n, tools, p: facts)
    tick_times, eval_times, base_times = [], [], []
    for n in range(args.ticks):  # interleaved, so that all three meet the machine in the same state
        started = time.perf_counter()
        engine.on_tick(now + n, facts.tools, True)
        tick_times.append(time.perf_counter() - started)
        started = time.perf_counter()
        evaluate(config.rules, facts)
        eval_times.append(time.perf_counter() - started)
        started = time.perf_counter()
        baseline(config.rules, frame, tools, sources, now, facts.persisted)
        base_times.append(time.perf_counter() - started)

    ours_ms, eval_ms = statistics.median(tick_times[1:]) * 1000, statistics.median(eval_times) * 1000
    base_ms = statistics.median(base_times) * 1000
    print(
        f"{args.tools} tools x {len(config.rules)} rules; {len(events):,} raw events; "
        f"{len(pool.active_borrows()):,} open checkouts; {len(ours)} conditions hold (the same in both); "
        f"{len(engine.firing())} alerts firing"
    )
    first, worst = tick_times[0] * 1000, max(tick_times[1:]) * 1000
    print(f"{'AlertEngine.on_tick (median)':<44} {ours_ms:8.2f} ms   (target <= {TARGET_MS:g} ms; worst {worst:.2f} ms)")
    print(f"{'  the first tick (creates every alert)':<44} {first:8.2f} ms")
    print(f"{'  evaluate() alone (median)':<44} {eval_ms:8.2f} ms")
    print(f"{'baseline: NumPy over the events (median)':<44} {base_ms:8.2f} ms")
    print(f"{'  building its frames (once, not counted)':<44} {frames_ms:8.2f} ms")
    print(f"{'speed-up over the baseline: evaluate()':<44} {base_ms / eval_ms:8.1f} x")
    print(f"{'speed-up over the baseline: on_tick':<44} {base_ms / ours_ms:8.1f} x")


if __name__ == "__main__":
    main()
