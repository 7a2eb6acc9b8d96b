"""Benchmark the capacity analytics: capacity + commit_advice for 200 tools, 1,000,000 sessions and 50,000 denials over 30 days.

The history comes from `dash_app.testing.synthetic.synthetic_history` (seeded; the specs are `estate_inventory(200)`).
Ours is timed on its first call in the process and as the best of three. The baseline, in the same process, is the
straightforward per-tool Python loop: one pass over every row to group the sessions and denials by tool, then for each
tool a sorted list of +1/-1 events walked level by level, a heap of return times walked in (borrowed_at, seq) order for
the level before each start, and every candidate commit's cost counted over those levels. It is timed on a subset of
the tools and scaled by their share of the sessions (the grouping pass is always timed whole); its figures are
checked against ours for that subset.

Run: python benchmarks/bench_capacity.py [--sessions N] [--denials N] [--baseline-tools N] [--service-only]
"""

from __future__ import annotations

import argparse
import heapq
import math
import time
from typing import Any

from dash_app.analytics import NO_SPEC, Spec, capacity, commit_advice
from dash_app.testing import p95, timings
from dash_app.testing.synthetic import synthetic_history


def through_the_service(history: Any) -> None:
    """Print the API's path: a real SQLite file holding the history, read and analysed by CapacityService, cold and again."""
    import json
    import tempfile
    from pathlib import Path

    from dash_app.analytics.runners import InProcessRunner
    from dash_app.analytics.service import CapacityService
    from dash_app.buffer import RealtimeMetricsBuffer
    from dash_app.config import Config
    from dash_app.licenses import LicensePool, load_inventory
    from dash_app.recording import EventRecorder
    from dash_app.store import Store
    from dash_app.testing import estate_inventory
    from dash_app.testing.synthetic import store_history

    _sessions, _denials, _specs, start, end = history
    with tempfile.TemporaryDirectory() as tmp:
        tools_file = Path(tmp) / "tools.json"
        tools_file.write_text(json.dumps(estate_inventory(200)))
        store = Store(str(Path(tmp) / "capacity.db"))
        # The rows the writer would have written, put in directly: writing 1,000,000 sessions through it is
        # bench_sessions.py's business.
        store_history(store, history)
        pool = LicensePool(load_inventory(str(tools_file)), EventRecorder(RealtimeMetricsBuffer()))
        config = Config(history_days=31)
        service = CapacityService(store, pool, config, clock=lambda: end)  # a file: analyses run in a process
        started = time.perf_counter()
        service.warm()
        service.report(end - 3600, end)  # waits for the process to read the history
        loading = time.perf_counter() - started
        started = time.perf_counter()
        report = service.report(start, end)
        cold = time.perf_counter() - started
        again = min(timings(lambda: service.report(start, end), 20))
        colds = []
        for _ in range(3):
            started = time.perf_counter()
            CapacityService(store, pool, config, clock=lambda: end, runner=service.runner).report(start, end)
            colds.append(time.perf_counter() - started)
        alone, beside = live_refresh_beside(
            lambda: CapacityService(store, pool, config, clock=lambda: end, runner=service.runner).report(start, end)
        )
        in_process = InProcessRunner(store)
        started = time.perf_counter()
        CapacityService(store, pool, config, clock=lambda: end, runner=in_process).report(start, end)
        in_process_cold = time.perf_counter() - started
        _, beside_in_process = live_refresh_beside(
            lambda: CapacityService(store, pool, config, clock=lambda: end, runner=InProcessRunner(store)).report(start, end)
        )
        service.stop()
        store.close()
    print(f"{'analysis process started: reads 1,000,000 sessions, 1 h query':<58} {loading:8.2f} s   (once, at start-up)")
    print(
        f"{'30 days, not cached (analysis process, copy current)':<58} {cold:8.2f} s   (target <= {TARGET:.0f} s; "
        f"{len(report.tools)} tools; best of 3 more: {min(colds):.2f} s)"
    )
    print(f"{'the same query again (cached on the data version)':<58} {again * 1000:8.2f} ms  (target <= 50 ms)")
    print(f"{'side by side: in this process, reading the store each time':<58} {in_process_cold:8.2f} s")
    print(
        f"{'live refresh (6 tools, full buffer), p95 alone':<58} {p95(alone) * 1000:8.1f} ms   "
        f"beside a cold analysis in its process: p95 {p95(beside) * 1000:.1f} ms, max {max(beside) * 1000:.1f} ms; "
        f"in this process: p95 {p95(beside_in_process) * 1000:.1f} ms, max {max(beside_in_process) * 1000:.1f} ms"
    )


def live_refresh_beside(analysis: Any) -> tuple[list[float], list[float]]:
    """Return the times of live dashboard refreshes alone, then while `analysis` runs in another thread."""
    import threading

    from dash_app import create_app
    from dash_app.callbacks.page import PageUpdater
    from dash_app.state import get_state
    from dash_app.testing import feed, full_buffer_events

    app = create_app({"demo": False, "db": ":memory:", "api_token": "bench-token-0123456789"})
    state = get_state(app)
    feed(state.buffer, full_buffer_events(time.time() - 1))
    updater = PageUpdater(state)
    seen: list[Any] = [None]

    def refresh() -> None:
        borrow = state.pool.borrow("GreenHills Multi IDE", "live")
        state.pool.return_license(borrow.id)
        _, seen[0] = updater.update("__all__", 21600, seen[0])

    refresh()
    alone = timings(refresh, 60)
    worker = threading.Thread(target=analysis)
    worker.start()
    beside = []
    while worker.is_alive():
        beside.extend(timings(refresh, 1))
    worker.join()
    state.stop()
    return alone, beside


TARGET = 3.0


def close(a: Any, b: Any) -> bool:
    """True when `a` and `b` are equal, floats to 1e-9 relative (the baseline adds them up in another order)."""
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(close(a[k], b[k]) for k in a)
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(close(x, y) for x, y in zip(a, b))
    if isinstance(a, float) and isinstance(b, float):
        return math.isclose(a, b, rel_tol=1e-9, abs_tol=1e-9)
    return bool(a == b) and type(a) is type(b)


def group_by_tool(history: Any) -> tuple[dict[str, list[tuple[Any, ...]]], dict[str, list[tuple[float, str]]]]:
    """The baseline's one pass over every row: sessions and denials per tool, as plain tuples."""
    s = history.sessions
    sessions: dict[str, list[tuple[Any, ...]]] = {}
    columns = (s["tool"], s["user"], s["borrowed_at"], s["returned_at"], s["is_overage"], s["seq"])
    for tool, user, b, r, overage, seq in zip(*(c.tolist() for c in columns)):
        sessions.setdefault(tool, []).append((user, b, r, overage, seq))
    denials: dict[str, list[tuple[float, str]]] = {}
    d = history.denials
    for ts, tool, user in zip(d["ts"].tolist(), d["tool"].tolist(), d["user"].tolist()):
        denials.setdefault(tool, []).append((ts, user))
    return sessions, denials


def baseline_tool(
    tool: str, rows: list[tuple[Any, ...]], denials: list[tuple[float, str]], spec: Spec, start: float, end: float
) -> tuple[dict[str, Any], dict[str, Any]]:
    """One tool's capacity entry and commit advice, the obvious way in plain Python."""
    period = end - start
    events: list[tuple[float, int]] = []
    seconds_by_user: dict[str, float] = {}
    borrows = overage_borrows = 0
    kept = []
    for user, b, r, overage, seq in rows:
        is_open = math.isnan(r)
        if not (b < end and (is_open or r > start)):
            continue
        kept.append((b, seq, math.inf if is_open else r))
        lo, hi = max(b, start), end if is_open else min(r, end)
        if lo < hi:
            events += [(lo, 1), (hi, -1)]
        seconds_by_user[user] = seconds_by_user.get(user, 0.0) + max(0.0, hi - lo)
        if b >= start:
            borrows += 1
            overage_borrows += bool(overage)
    events.sort()
    time_at: dict[int, float] = {}
    level, at = 0, start
    for t, step in events:
        if t > at:
            time_at[level] = time_at.get(level, 0.0) + (t - at)
            at = t
        level += step
    time_at[level] = time_at.get(level, 0.0) + (end - at)
    peak = max((lv for lv, secs in time_at.items() if secs > 0), default=0)

    def at_least(n: int) -> float:
        return sum((secs for lv, secs in time_at.items() if lv >= n), 0.0)

    coverage = {}
    for percent in (50, 90, 95, 99):
        cumulative = 0.0
        for lv in sorted(time_at):
            cumulative += time_at[lv]
            if cumulative * 100 >= percent * period:
                coverage[f"p{percent}"] = lv
                break
    coverage["p100"] = peak
    in_period = [(ts, user) for ts, user in denials if start <= ts < end]
    top = sorted(seconds_by_user.items(), key=lambda kv: (-kv[1], kv[0]))[:10]
    entry = {
        "tool": tool,
        "total": spec.total,
        "commit": spec.commit,
        "peak_in_use": peak,
        "avg_in_use": sum(lv * secs for lv, secs in time_at.items()) / period,
        "seconds_at_or_above_commit": None if spec.commit is None else at_least(spec.commit),
        "seconds_at_total": None if spec.total is None else at_least(spec.total),
        "coverage": coverage,
        "borrows": borrows,
        "overage_borrows": overage_borrows,
        "overage_cost": None if spec.overage_price is None else round(overage_borrows * spec.overage_price, 2),
        "denials": len(in_period),
        "denied_users": len({user for _, user in in_period}),
        "distinct_users": len(seconds_by_user),
        "top_users": [{"user": user, "license_hours": secs / 3600} for user, secs in top],
    }

    # The level just before each start: sessions in (borrowed_at, seq) order, a heap of the return times still to come.
    assert spec.total is not None and spec.commit and spec.commit_price is not None and spec.overage_price is not None
    held: list[float] = []
    levels = []
    for b, _seq, r in sorted(kept):
        while held and held[0] <= b:
            heapq.heappop(held)
        if b >= start:
            levels.append(len(held))
        if r > b:
            heapq.heappush(held, r)
    unit = spec.commit_price / spec.commit * period / (30 * 86400)
    costs = [c * unit + spec.overage_price * sum(1 for lv in levels if lv >= c) for c in range(spec.total + 1)]
    best = min(range(len(costs)), key=lambda c: (costs[c], c))
    now = spec.commit * unit + spec.overage_price * sum(1 for lv in levels if lv >= spec.commit)
    advice = {"tool": tool, "cost_now": round(now, 2), "best_commit": best, "best_cost": round(costs[best], 2)}
    return entry, advice


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--sessions", type=int, default=1_000_000, help="sessions (default 1,000,000)")
    parser.add_argument("--denials", type=int, default=50_000, help="denials (default 50,000)")
    parser.add_argument("--baseline-tools", type=int, default=20, help="tools the baseline is timed on (default 20)")
    parser.add_argument("--service-only", action="store_true", help="only the path through the store and the service")
    args = parser.parse_args()

    started = time.perf_counter()
    history = synthetic_history(days=30, tools=200, sessions=args.sessions, denials=args.denials, seed=1)
    generated = time.perf_counter() - started
    s, d, specs, start, end = history
    print(
        f"history: {len(s):,} sessions ({int(s['returned_at'].isna().sum()):,} open, "
        f"{int((s['borrowed_at'] < start).sum()):,} started before the period), {len(d):,} denials, "
        f"{len(specs)} tools, 30 days (generated in {generated:.1f} s)"
    )

    if args.service_only:
        through_the_service(history)
        return

    def ours() -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
        return capacity(s, d, specs, start, end), commit_advice(s, specs, start, end)

    started = time.perf_counter()
    entries, advice = ours()
    first = time.perf_counter() - started
    best = min(timings(ours, 3))
    best_capacity = min(timings(lambda: capacity(s, d, specs, start, end), 3))
    best_advice = min(timings(lambda: commit_advice(s, specs, start, end), 3))

    started = time.perf_counter()
    by_tool, denials_by_tool = group_by_tool(history)
    grouping = time.perf_counter() - started
    names = sorted(specs)
    subset = names[:: max(1, len(names) // args.baseline_tools)][: args.baseline_tools]
    started = time.perf_counter()
    expected = {
        tool: baseline_tool(tool, by_tool.get(tool, []), denials_by_tool.get(tool, []), specs.get(tool, NO_SPEC), start, end)
        for tool in subset
    }
    per_tool = time.perf_counter() - started
    share = sum(len(by_tool.get(tool, [])) for tool in subset) / max(len(s), 1)
    baseline = grouping + per_tool / share

    got_entries = {e["tool"]: e for e in entries}
    got_advice = {a["tool"]: a for a in advice}
    for tool, (entry, tool_advice) in expected.items():
        assert close(got_entries[tool], entry), tool
        assert {k: got_advice[tool][k] for k in tool_advice} == tool_advice, tool

    print(f"{'capacity + commit_advice, first call':<58} {first:8.2f} s   (target <= {TARGET:.0f} s)")
    print(f"{'capacity + commit_advice, best of 3':<58} {best:8.2f} s   (target <= {TARGET:.0f} s)")
    print(f"{'  capacity alone, best of 3':<58} {best_capacity:8.2f} s")
    print(f"{'  commit_advice alone, best of 3':<58} {best_advice:8.2f} s")
    print(
        f"{'baseline: per-tool Python loops, scaled':<58} {baseline:8.2f} s   "
        f"({len(subset)} of {len(names)} tools timed, {share:.1%} of the sessions: {per_tool:.2f} s; "
        f"grouping pass {grouping:.2f} s)"
    )
    print(f"{'speed-up against the baseline (best of 3)':<58} {baseline / best:8.1f} x")
    cheaper = [a for a in advice if a.get("best_commit") is not None and a["best_commit"] < a["commit"]]
    dearer = [a for a in advice if a.get("best_commit") is not None and a["best_commit"] > a["commit"]]
    saving = sum(a["saving"] for a in advice if a.get("saving") is not None)
    through_the_service(history)
    print(
        f"advice: {len(cheaper)} tools would commit fewer licenses, {len(dearer)} more; "
        f"total saving over the period {saving:,.2f}; peak at total on "
        f"{sum(1 for e in entries if e['total'] is not None and e['peak_in_use'] >= e['total'])} tools"
    )


if __name__ == "__main__":
    main()
