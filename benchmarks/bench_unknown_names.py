"""Memory and CPU per second as distinct unknown tool names grow, with names folded past --max-unknown-tools and not.

Each measurement runs in its own child process (the app's whole data path from build_state: pool, recorder,
buffer, SQLite writer with its 5 s history aggregation, Prometheus counters), so RSS figures are independent.

Run: python benchmarks/bench_unknown_names.py [--seconds 20] [--sizes 10000,100000,1000000]
"""

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

FOLDED = 50  # the default of --max-unknown-tools
NO_FOLDING = 10**9
BATCH = 10_000  # failures per recording_batch(), as a log source hands them over
LONG_WINDOWS = (86400, 7 * 86400, 30 * 86400)
BASELINE_TIMEOUT = 300  # seconds a baseline child may take before it is given up


def rss_mb():
    """Return this process's resident set size in MB, from /proc."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError("no VmRSS in /proc/self/status")


def peak_rss_mb():
    """Return this process's peak resident set size in MB."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError("no VmHWM in /proc/self/status")


# Not dash_app.testing.FakeClock: this clock runs on with wall time (the CPU intervals are measured in real seconds,
# with real ticks and aggregations), only shifted back; a FakeClock stands still until it is moved.
class ShiftedClock:
    """Wall time moved back so a run starts ten minutes into an hour: the whole flood and the measurement share it."""

    def __init__(self):
        now = time.time()
        self.shift = now % 3600 - 600

    def __call__(self):
        return time.time() - self.shift


def child(names, max_unknown_tools, seconds, db, every_hour=False):
    """Flood one app with `names` distinct unknown tool names and measure it; print one JSON line.

    `every_hour` redoes the hour rows of every tool on each aggregation, as before this change, not only those of
    the series with new events.
    """
    from dash_app import build_state
    from dash_app.callbacks.snapshots import Snapshots
    from dash_app.config import Config
    from dash_app.licenses import BorrowDenied
    from dash_app.store import history
    from dash_app.stream import StreamTicker

    if every_hour:
        only_touched = history.rebuild_hours_from
        history.rebuild_hours_from = lambda conn, first_minute, tools=None: only_touched(conn, first_minute)
    config = Config(db=db, demo=False, api_token="bench-token-0123456789", max_unknown_tools=max_unknown_tools)
    state = build_state(config)
    clock = ShiftedClock()
    # The same clock everywhere, so the flood, the buffer's window and the history's hours agree.
    state.buffer.clock = state.pool.clock = state.history.clock = clock
    state.start()  # the SQLite writer: batched writes, aggregation every 5 s, pruning
    pool = state.pool
    out = {"rss_idle": rss_mb()}

    began = time.perf_counter()
    start_ts = clock() - 590
    step = 580 / names
    for first in range(0, names, BATCH):
        with pool.recording_batch():
            for i in range(first, min(first + BATCH, names)):
                try:
                    pool.borrow(f"unknown tool {i:07d}", f"user {i:07d}", at=start_ts + i * step)
                except BorrowDenied:
                    pass
        # Like the FlexLM reader: wait for the writer, so its queue holds one batch, not the whole flood.
        state.store.flush(timeout=3600)
    out["record_s"] = time.perf_counter() - began
    state.store.run_tasks_now(timeout=3600)  # what the writer does within 5 s: fold into minute and hour rows
    out["aggregate_s"] = time.perf_counter() - began - out["record_s"]
    out["rss_recorded"] = rss_mb()
    (out["denials"],) = state.store.read("SELECT COUNT(*) FROM denials")[0]  # folded or not, every failure is kept

    # Open the long views as the dashboard does (one tab switching 24 h, 7 d, 30 d); their data stays cached.
    snapshots = Snapshots(state.buffer, pool, state.history)
    began = time.perf_counter()
    for window in LONG_WINDOWS:
        snapshots.get(None, window, clock())
    out["views_s"] = time.perf_counter() - began
    out["rss_views"] = rss_mb()
    (series,) = state.store.read("SELECT COUNT(DISTINCT tool) FROM hour_stats")[0]
    out["stored_series"] = series
    out["buffer_series"] = len(state.buffer.get_minute_flows(state.buffer.retention_seconds))

    ticker = StreamTicker(state.buffer, pool, interval=1.0)  # no clients: the snapshot every tick still is built

    def measure(label, tab_window=None):
        # One new unknown name's failure and one stream tick per second; the writer aggregates every 5 s meanwhile.
        cpu, wall = time.process_time(), time.monotonic()
        for k in range(seconds):
            try:
                pool.borrow(f"late {label} {k}", f"late user {k}")
            except BorrowDenied:
                pass
            ticker.tick()
            if tab_window is not None:
                snapshots.get(None, tab_window, clock())
            time.sleep(max(0.0, wall + k + 1 - time.monotonic()))
        out[label] = (time.process_time() - cpu) / (time.monotonic() - wall) * 100

    if seconds:
        measure("cpu")
        measure("cpu_tab", tab_window=86400)  # the same with one dashboard tab left open on the 24 h view
    out["rss_peak"] = peak_rss_mb()
    state.stop()
    print(json.dumps(out), flush=True)


def run_child(names, max_unknown_tools, seconds, timeout, every_hour=False):
    """Run one measurement in a fresh process with its own database; return its figures, or None past `timeout`."""
    with tempfile.TemporaryDirectory() as tmp:
        cmd = [
            sys.executable,
            __file__,
            "--child",
            "--names",
            str(names),
            "--max-unknown-tools",
            str(max_unknown_tools),
            "--seconds",
            str(seconds),
            "--db",
            os.path.join(tmp, "bench.db"),
        ] + (["--every-hour"] if every_hour else [])
        began = time.monotonic()
        try:
            done = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, check=True)
        except subprocess.TimeoutExpired:
            return None
        except subprocess.CalledProcessError as exc:
            sys.exit(f"child failed:\n{exc.stderr}")
        figures = json.loads(done.stdout.strip().splitlines()[-1])
        figures["child_s"] = time.monotonic() - began
        return figures


def print_ratios(results):
    """Print, per number of names measured both ways, what folding saves against the baseline (folding off).

    Both runs must have kept every failure: folding merges series, it never drops an event.
    """
    lines = []
    for (names, label), folded in sorted(results.items()):
        off = results.get((names, "off"))
        if label != f"max {FOLDED}" or off is None:
            continue
        if folded["denials"] != off["denials"]:
            sys.exit(f"{names:,} names: {folded['denials']:,} failures kept folded, {off['denials']:,} not folded")
        cpu = f"CPU/s {off['cpu'] / folded['cpu']:.1f}x" if "cpu" in off and "cpu" in folded else "CPU not measured"
        lines.append(
            f"{names:>9,} names: folding off takes {off['rss_peak'] / folded['rss_peak']:.1f}x the peak RSS, {cpu}, "
            f"{off['views_s'] / max(folded['views_s'], 1e-3):.1f}x the views' time; both kept {off['denials']:,} failures"
        )
    if lines:
        print("\nbaseline (folding off) against folding on, same names in the same run:")
        print("\n".join(lines))


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--names", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--max-unknown-tools", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--db", help=argparse.SUPPRESS)
    parser.add_argument("--every-hour", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--seconds", type=int, default=20, help="length of each CPU interval (default 20)")
    parser.add_argument("--sizes", default="10000,100000,1000000", help="numbers of distinct names")
    parser.add_argument("--baseline-sizes", default="10000,100000,1000000", help="the same, with folding off")
    parser.add_argument("--before-sizes", default="100000", help="folding off and every hour redone, as before")
    parser.add_argument(
        "--baseline-cpu-up-to",
        type=int,
        default=100_000,
        help="measure CPU of baselines up to this many names; larger ones take minutes (memory only)",
    )
    args = parser.parse_args()
    if args.child:
        child(args.names, args.max_unknown_tools, args.seconds, args.db, args.every_hour)
        return

    runs = [(int(n), FOLDED, False) for n in args.sizes.split(",") if n]
    runs += [(int(n), NO_FOLDING, False) for n in args.baseline_sizes.split(",") if n]
    runs += [(int(n), NO_FOLDING, True) for n in args.before_sizes.split(",") if n]
    began = time.monotonic()
    print(
        "Distinct unknown tool names, each one failed borrow (its own user) through the pool in batches of "
        f"{BATCH:,}, spread over 10 min;"
    )
    print(
        "the app's data path from build_state (buffer, SQLite writer with its 5 s aggregation, Prometheus), "
        "default caps, one child process each."
    )
    print(
        f"CPU: % of one core over {args.seconds} s with one new unknown name's failure per second and a stream "
        "tick per second (the writer aggregating every 5 s);"
    )
    print("'+ 24 h tab': the same with one dashboard tab open on the 24 h view, refreshed every second.\n")
    header = (
        f"{'names':>9} {'folding':>12} | {'RSS idle':>8} {'recorded':>8} {'+ views':>8} {'peak':>8} MB | "
        f"{'CPU/s':>6} {'+ 24 h tab':>10} | {'series: stored':>14} {'buffer':>6} | "
        f"{'record':>6} {'fold':>6} {'views':>6} s"
    )
    print(header)
    print("-" * len(header))
    results = {}
    for names, limit, every_hour in runs:
        label = f"max {limit}" if limit != NO_FOLDING else ("off, before" if every_hour else "off")
        seconds = args.seconds if limit != NO_FOLDING or names <= args.baseline_cpu_up_to else 0
        figures = run_child(names, limit, seconds, BASELINE_TIMEOUT if limit == NO_FOLDING else 3600, every_hour)
        if figures is None:
            print(f"{names:>9,} {label:>12} | did not finish within {BASELINE_TIMEOUT} s", flush=True)
            continue
        results[names, label] = f = figures
        cpu = f"{f['cpu']:>5.1f}% {f['cpu_tab']:>9.1f}%" if seconds else f"{'not measured':>17}"
        print(
            f"{names:>9,} {label:>12} | {f['rss_idle']:>8.0f} {f['rss_recorded']:>8.0f} {f['rss_views']:>8.0f} "
            f"{f['rss_peak']:>8.0f}    | {cpu} | {f['stored_series']:>14,} {f['buffer_series']:>6,} | "
            f"{f['record_s']:>6.1f} {f['aggregate_s']:>6.1f} {f['views_s']:>6.1f}",
            flush=True,
        )
    print_ratios(results)
    print("\nmax 50: folding on (the default --max-unknown-tools); off: --max-unknown-tools 1000000000; off, before:")
    print("also every tool's hour rows redone on each aggregation, as before this change (the current hour's rows of")
    print("every name), instead of only the hours of the series with new events.")
    print(f"Baselines past {args.baseline_cpu_up_to:,} names are measured for memory only: at 1,000,000 names their views")
    print("take about a minute and each 24 h refresh far longer than a second, so a CPU interval would take the run")
    print("past ten minutes.")
    print("series: distinct tool keys in the stored hour aggregates and in the buffer's minute bins (the buffer keeps")
    print("the newest 10,000 failures, its default cap); folded, both are the admitted names plus the shared series.")
    print("record: recording through the pool until SQLite committed; fold: the first aggregation into minute and")
    print("hour rows; views: computing the 24 h, 7 d and 30 d views.")
    print(f"Whole run: {time.monotonic() - began:.0f} s.")


if __name__ == "__main__":
    main()
