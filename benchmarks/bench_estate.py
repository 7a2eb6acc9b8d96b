"""Benchmark the estate analytics: true denials, recommendations, users, one user and the estate heatmap over 30 days
× 200 tools × 1,000,000 sessions and 50,000 denials.

The history comes from `dash_app.testing.synthetic.synthetic_history` (seeded). Ours (dash_app.analytics.estate,
recommend, users) is timed on its first call and as the best of three; beside it, in the same process and also best
of three, a competent vectorised baseline: pandas groupby to split the columns by tool (or by tool and user), then
NumPy per group (sorted +1/-1 events, cumsum, bincount, searchsorted; a true denial's successor found by searchsorted
per counted denial). Every baseline's figures are checked against ours. Then the same jobs through CapacityService
over a SQLite file (the API's path: the history copied column-wise, each job cold).

Run: python benchmarks/bench_estate.py [--sessions N] [--denials N] [--no-service]
"""

from __future__ import annotations

import argparse
import math
import time
from typing import Any

import numpy as np
import pandas as pd

from dash_app.analytics import estate, recommend
from dash_app.analytics import users as people
from dash_app.analytics.capacity import capacity, commit_advice
from dash_app.analytics.profiles import _hour_bounds
from dash_app.testing import timings
from dash_app.testing.synthetic import synthetic_history

GAP = 600.0
ZONE = "Europe/Berlin"
TARGET = 1.0


def base_true_flags(d: pd.DataFrame, gap: float) -> np.ndarray[Any, Any]:
    """Baseline true denials: per (tool, user) group, walk from each counted denial to the next by searchsorted."""
    ts = d["ts"].to_numpy(dtype=np.float64)
    flags = np.zeros(len(d), dtype=bool)
    for idx in d.groupby(["tool", "user"], sort=False).indices.values():
        order = idx[np.argsort(ts[idx], kind="stable")]
        t = ts[order]
        i = 0
        while i < len(t):
            flags[order[i]] = True
            j = max(int(np.searchsorted(t, t[i] + gap)), i + 1)
            while j > i + 1 and t[j - 1] - t[i] >= gap:
                j -= 1
            while j < len(t) and t[j] - t[i] < gap:
                j += 1
            i = j
    return flags


def _spans(b: np.ndarray[Any, Any], r: np.ndarray[Any, Any], start: float, end: float) -> tuple[Any, Any]:
    lo, hi = np.maximum(b, start), np.minimum(r, end)
    return lo[lo < hi], hi[lo < hi]


def _time_per_level(lo: np.ndarray[Any, Any], hi: np.ndarray[Any, Any], start: float, end: float) -> np.ndarray[Any, Any]:
    times = np.concatenate((lo, hi))
    order = np.argsort(times, kind="stable")
    steps = np.concatenate((np.ones(len(lo), dtype=np.int64), -np.ones(len(hi), dtype=np.int64)))[order]
    times, levels = times[order], np.cumsum(steps)
    seconds = np.bincount(levels, weights=np.diff(np.append(times, end)), minlength=1) if len(levels) else np.zeros(1)
    seconds[0] += (times[0] if len(times) else end) - start
    return seconds


def base_recommendations(history: Any, flags: Any, rows: list[dict[str, Any]], advice: list[dict[str, Any]]) -> dict[str, tuple]:
    """Baseline: per tool (pandas groupby), the demand's time per level from its sorted events, p99 and the probes."""
    s, d, specs, start, end = history
    period = end - start
    b_all = s["borrowed_at"].to_numpy(dtype=np.float64)
    r_all = s["returned_at"].to_numpy(dtype=np.float64, na_value=np.nan)
    r_all = np.where(np.isnan(r_all), np.inf, r_all)
    sessions_of = s.groupby("tool", sort=False).indices
    true_d = d[flags]
    true_of = true_d.groupby("tool", sort=False).indices
    true_ts = true_d["ts"].to_numpy(dtype=np.float64)
    advice_of = {a["tool"]: a for a in advice}
    empty = np.zeros(0, dtype=np.int64)
    out = {}
    for row in rows:
        tool, total = row["tool"], specs[row["tool"]].total if row["tool"] in specs else None
        if total is None:
            out[tool] = ("keep", 0, 0.0, 0)
            continue
        idx = sessions_of.get(tool, empty)
        b, r = b_all[idx], r_all[idx]
        keep = (b < end) & (r > start)
        b, r = b[keep], r[keep]
        lengths = (r - b)[(b >= start) & np.isfinite(r) & (r > b)]
        m = float(np.median(lengths)) if len(lengths) else 3600.0
        wanted = np.sort(true_ts[true_of.get(tool, empty)])
        lo, hi = _spans(np.concatenate((b, wanted)), np.concatenate((r, wanted + m)), start, end)
        seconds = _time_per_level(lo, hi, start, end)
        p99 = int(np.argmax(np.cumsum(seconds) * 100 >= 99 * period))
        if p99 > total:
            n = p99 - total
            pos = r > b
            starts, ends = np.sort(np.concatenate((b[pos], wanted))), np.sort(np.concatenate((r[pos], wanted + m)))
            level = np.searchsorted(starts, wanted, side="right") - np.searchsorted(ends, wanted, side="right")
            out[tool] = ("buy", n, 0.0, int(np.count_nonzero(level <= total + n)))
        elif not len(wanted) and total - row["peak_in_use"] - 1 >= 1:
            tip = advice_of.get(tool, {})
            lower = tip.get("best_commit") is not None and tip["best_commit"] < tip["commit"]
            out[tool] = ("drop", total - row["peak_in_use"] - 1, tip["saving"] if lower else 0.0, 0)
        else:
            out[tool] = ("keep", 0, 0.0, 0)
    return out


def base_users(history: Any, flags: Any, limit: int = 50) -> list[tuple[str, float, int, int, int]]:
    """Baseline: pandas groupby over (user, tool) of the held seconds, then by user; denials counted by groupby."""
    s, d, _specs, start, end = history
    b = s["borrowed_at"].to_numpy(dtype=np.float64)
    r = s["returned_at"].to_numpy(dtype=np.float64, na_value=np.nan)
    held = np.maximum(np.minimum(np.where(np.isnan(r), end, r), end) - np.maximum(b, start), 0.0)
    frame = pd.DataFrame({"user": s["user"], "held": held, "over": s["is_overage"].to_numpy(dtype=bool) & (b >= start)})
    per_user = frame.groupby("user", sort=False).agg(held=("held", "sum"), over=("over", "sum"))
    denied = d.groupby("user", sort=False).size()
    true = d[flags].groupby("user", sort=False).size()
    table = per_user.join(denied.rename("denials"), how="outer").join(true.rename("true"), how="outer").fillna(0)
    table = table.reset_index().sort_values(["held", "user"], ascending=[False, True]).head(limit)
    return [
        (u, h / 3600.0, int(dn), int(t), int(o))
        for u, h, dn, t, o in zip(table["user"], table["held"], table["denials"], table["true"], table["over"])
    ]


def base_heatmap(history: Any) -> dict[str, Any]:
    """Baseline: per inventory tool (pandas groupby), its step function cut at the local hours, summed by hour of week."""
    s, _d, specs, start, end = history
    bounds, keys = _hour_bounds(start, end, ZONE)
    b_all = s["borrowed_at"].to_numpy(dtype=np.float64)
    r_all = s["returned_at"].to_numpy(dtype=np.float64, na_value=np.nan)
    r_all = np.where(np.isnan(r_all), np.inf, r_all)
    sessions_of = s.groupby("tool", sort=False).indices
    seconds = np.bincount(keys, weights=np.diff(np.append(bounds, end)), minlength=168)
    used, full = np.zeros(168), np.zeros(168)
    inventory = [tool for tool, spec in specs.items() if spec.total]
    for tool in inventory:
        lo, hi = _spans(b_all[sessions_of[tool]], r_all[sessions_of[tool]], start, end)
        times = np.concatenate((lo, hi))
        order = np.argsort(times, kind="stable")
        levels = np.cumsum(np.concatenate((np.ones(len(lo)), -np.ones(len(hi))))[order])
        seg_starts, seg_levels = np.concatenate(([start], times[order])), np.concatenate(([0.0], levels))
        instants = np.union1d(seg_starts, bounds)
        level = seg_levels[np.searchsorted(seg_starts, instants, side="right") - 1]
        key = keys[np.searchsorted(bounds, instants, side="right") - 1]
        durations = np.diff(np.append(instants, end))
        used += np.bincount(key, weights=durations * level, minlength=168)
        full += np.bincount(key, weights=durations * (level >= specs[tool].total), minlength=168)
    total = sum(specs[tool].total or 0 for tool in inventory)
    return {"utilization": used / (seconds * total), "at_total": full / (seconds * len(inventory))}


def _line(name: str, seconds: float, note: str = "") -> None:
    print(f"{name:<62} {seconds * 1000:9.1f} ms {note}")


def compare(history: Any) -> None:
    """Time ours and the baselines in this process, and check the baselines' figures against ours."""
    s, d, specs, start, end = history
    rows = capacity(s, d, specs, start, end)
    advice = commit_advice(s, specs, start, end)
    jobs: dict[str, tuple[Any, Any]] = {
        "true denials per tool": (
            lambda: estate.true_denials_per_tool(d, start, end, GAP),
            lambda: base_true_flags(d, GAP),
        ),
        "recommendations": (
            lambda: recommend.recommendations(s, d, specs, start, end, GAP, rows, advice),
            lambda: base_recommendations(history, base_true_flags(d, GAP), rows, advice),
        ),
        "users (top 50)": (lambda: people.users(s, d, start, end, GAP), lambda: base_users(history, base_true_flags(d, GAP))),
        "estate heatmap": (lambda: estate.heatmap(s, specs, start, end, ZONE), lambda: base_heatmap(history)),
        "one user": (lambda: people.one_user(s, d, "user0003", start, end, GAP), None),
    }
    results = {}
    for name, (ours, base) in jobs.items():
        started = time.perf_counter()
        results[name] = ours()
        first = time.perf_counter() - started
        best = min(timings(ours, 3))
        if base is None:
            _line(f"{name}: ours, first / best of 3", best, f"(first {first * 1000:.0f} ms; target <= {TARGET:.0f} s)")
            continue
        results[name + " baseline"] = base()
        base_best = min(timings(base, 3))
        _line(
            f"{name}: ours, best of 3",
            best,
            f"(first {first * 1000:.0f} ms) | baseline {base_best * 1000:.1f} ms, {base_best / best:.1f} x",
        )
    check(history, results)


def check(history: Any, results: dict[str, Any]) -> None:
    """Assert the baselines' figures are ours."""
    _s, d, _specs, _start, _end = history
    flags = results["true denials per tool baseline"]
    assert results["true denials per tool"] == {t: int(n) for t, n in d[flags].groupby("tool").size().items()}
    got = {e["tool"]: (e["action"], e["licenses"], e["saving"], e["denials_served"]) for e in results["recommendations"]["tools"]}
    assert got == results["recommendations baseline"]
    ours_users = [
        (u["user"], u["license_hours"], u["denials"], u["true_denials"], u["overage_borrows"]) for u in results["users (top 50)"]
    ]
    base = results["users (top 50) baseline"]
    assert [u[0] for u in ours_users] == [u[0] for u in base]
    assert all(math.isclose(a[1], b[1], rel_tol=1e-9) and a[2:] == b[2:] for a, b in zip(ours_users, base))
    heat, base_heat = results["estate heatmap"], results["estate heatmap baseline"]
    for key in ("utilization", "at_total"):
        ours_matrix = np.array(heat[key], dtype=np.float64).ravel()
        assert np.allclose(ours_matrix, base_heat[key], rtol=1e-9, atol=1e-12, equal_nan=True), key
    actions = pd.Series([e["action"] for e in results["recommendations"]["tools"]]).value_counts().to_dict()
    print(f"checked: every baseline's figures are ours (recommendations: {actions})")


def through_the_service(history: Any) -> None:
    """Print each job's time through CapacityService over a SQLite file, in this process, cold (nothing cached)."""
    import json
    import tempfile
    from pathlib import Path

    from dash_app.analytics.runners import InProcessRunner
    from dash_app.analytics.service import CapacityService
    from dash_app.buffer import RealtimeMetricsBuffer
    from dash_app.licenses import LicensePool, load_inventory
    from dash_app.recording import EventRecorder
    from dash_app.store import Store
    from dash_app.testing import estate_inventory
    from dash_app.testing.synthetic import store_history

    _s, _d, _specs, start, end = history
    with tempfile.TemporaryDirectory() as tmp:
        tools_file = Path(tmp) / "tools.json"
        tools_file.write_text(json.dumps(estate_inventory(200)))
        store = Store(str(Path(tmp) / "estate.db"))
        store_history(store, history)
        pool = LicensePool(load_inventory(str(tools_file)), EventRecorder(RealtimeMetricsBuffer()))
        runner = InProcessRunner(store)

        def service() -> CapacityService:
            return CapacityService(store, pool, history_days=31, billing_days=30, clock=lambda: end, runner=runner)

        service().report(end - 3600, end)  # reads the history into the copy once
        warm = service()
        started = time.perf_counter()
        warm.report(start, end)
        _line("service: report (capacity, advice, pressure, totals), cold", time.perf_counter() - started)
        started = time.perf_counter()
        warm.recommendations(start, end)
        _line("service: recommendations (the report cached), cold", time.perf_counter() - started, f"(target <= {TARGET:.0f} s)")
        for name, call in (
            ("users", lambda fresh: fresh.users(start, end)),
            ("estate heatmap", lambda fresh: fresh.estate(start, end, ZONE)),
            ("one user", lambda fresh: fresh.user("user0003", start, end)),
        ):
            best = min(timings(lambda call=call: call(service()), 3))
            _line(f"service: {name}, cold, best of 3", best, f"(target <= {TARGET:.0f} s)")
        store.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--sessions", type=int, default=1_000_000, help="sessions (default 1,000,000)")
    parser.add_argument("--denials", type=int, default=50_000, help="denials (default 50,000)")
    parser.add_argument("--no-service", action="store_true", help="skip the path through the store and the service")
    args = parser.parse_args()
    started = time.perf_counter()
    history = synthetic_history(days=30, tools=200, sessions=args.sessions, denials=args.denials, seed=1)
    print(
        f"history: {len(history.sessions):,} sessions, {len(history.denials):,} denials, 200 tools, 30 days "
        f"(generated in {time.perf_counter() - started:.1f} s)"
    )
    compare(history)
    if not args.no_service:
        through_the_service(history)


if __name__ == "__main__":
    main()
