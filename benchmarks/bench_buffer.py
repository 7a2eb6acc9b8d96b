"""Benchmark the metrics buffer at full size against a rescanning baseline, in one process.

Run: python benchmarks/bench_buffer.py
"""

import statistics
import time
import tracemalloc

import pandas as pd

from dash_app.buffer import RealtimeMetricsBuffer
from dash_app.testing import FakeClock, feed, full_buffer_events, timings
from dash_app.timeutil import iso_utc

END = 1_800_000_000.0


class RescanningBaseline:
    """The obvious design: keep event dicts and aggregate all of them with pandas on every read."""

    def __init__(self, clock):
        self.clock = clock
        self.borrows, self.returns, self.failures = [], [], []

    def add(self, kind, args, ts):
        if kind == "borrow":
            tool, user, is_overage, borrow_id = args
            self.borrows.append({"ts": ts, "tool": tool, "user": user, "is_overage": is_overage, "id": borrow_id})
        elif kind == "return":
            self.returns.append({"ts": ts, "id": args[0]})
        else:
            tool, user, reason = args
            self.failures.append({"ts": ts, "tool": tool, "user": user, "reason": reason})

    def tick(self):
        now = self.clock()
        cutoff = now - 21600
        frame = pd.DataFrame(self.borrows)
        frame = frame[frame["ts"] >= cutoff]
        frame["minute"] = pd.to_datetime(frame["ts"], unit="s", utc=True).dt.floor("min")
        out = {}
        for (tool, minute), group in frame.groupby(["tool", "minute"]):
            out.setdefault(tool, []).append(
                {
                    "timestamp": minute.strftime("%Y-%m-%dT%H:%M:00Z"),
                    "count": len(group),
                    "users": sorted(group["user"].unique()),
                    "overage_count": int(group["is_overage"].sum()),
                }
            )
        recent = {
            name: [dict(e, timestamp=iso_utc(e["ts"])) for e in events if e["ts"] >= now - 60]
            for name, events in (("borrows", self.borrows), ("returns", self.returns), ("failures", self.failures))
        }
        oldest = min(e["ts"] for e in self.borrows + self.returns + self.failures)
        stats = {"total_events": len(self.borrows) + len(self.returns) + len(self.failures), "oldest": oldest}
        return out, recent, stats


def main():
    events = full_buffer_events(END)
    clock = FakeClock(END)

    buffer = RealtimeMetricsBuffer(clock=clock)
    start = time.perf_counter()
    feed(buffer, events)
    ingest_seconds = time.perf_counter() - start
    stats = buffer.get_stats_summary()
    assert stats["borrow_count"] == 100_000 and stats["return_count"] == 100_000 and stats["failure_count"] == 10_000

    def tick():
        buffer.aggregate_tool_metrics(21600)
        buffer.get_recent_events(60)
        buffer.get_stats_summary()

    # Live, each tick follows fresh events: one borrow and one return land in the open minute.
    counter = iter(range(10**9))

    def live_tick():
        n = next(counter)
        clock.advance(0.001)
        buffer.add_borrow("GreenHills Multi IDE", f"user{n % 300:03d}", False, f"live{n}")
        buffer.add_return(f"live{n}")
        tick()

    cached = timings(tick, 300)
    live = timings(live_tick, 300)

    baseline = RescanningBaseline(FakeClock(END))
    for ts, kind, args in events:
        baseline.add(kind, args, ts)
    base = timings(baseline.tick, 5)

    tracemalloc.start()
    measured = RealtimeMetricsBuffer(clock=FakeClock(END))
    feed(measured, events)
    measured.aggregate_tool_metrics(21600)
    memory, _peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    event_count = len(events)
    del events

    median_live = statistics.median(live)
    median_base = statistics.median(base)
    print("Full buffer: 100,000 borrows + 100,000 returns over 6 h, 10,000 failures, 6 tools, 300 users")
    print(f"ingest                          {event_count / ingest_seconds:>12,.0f} events/s   (target >= 200,000)")
    print(f"tick, nothing new (median)      {statistics.median(cached) * 1000:>12.3f} ms")
    print(f"tick, after new events (median) {median_live * 1000:>12.3f} ms   (target <= 10 ms)")
    print(f"rescanning baseline (median)    {median_base * 1000:>12.1f} ms")
    print(f"speed-up against the baseline   {median_base / median_live:>12.0f} x    (target >= 50x)")
    print(f"full buffer memory              {memory / 2**20:>12.1f} MB   (target <= 150 MB)")


if __name__ == "__main__":
    main()
