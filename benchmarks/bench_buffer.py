"""Benchmark the metrics buffer at full size against a NumPy group-by over columnar arrays, in one process.

Run: python benchmarks/bench_buffer.py
Times are CPU seconds (time.process_time), so other work on the machine moves them less.
"""

import itertools
import statistics
import time
import tracemalloc

import numpy as np

from dash_app.buffer import RealtimeMetricsBuffer
from dash_app.events import Event, public_event
from dash_app.testing import FakeClock, feed, full_buffer_events, timings
from dash_app.timeutil import first_minute_at_or_after, iso_minute, iso_utc

END = 1_800_000_000.0
RETENTION = 21600
CPU = time.process_time


class BareLists:
    """The floor for ingest: the same three add calls, each appending its arguments to a list and nothing more."""

    def __init__(self):
        self.borrows, self.returns, self.failures = [], [], []

    def add_borrow(self, tool, user, is_overage, borrow_id, timestamp=None):
        self.borrows.append((timestamp, tool, user, is_overage, borrow_id))

    def add_return(self, borrow_id, user=None, timestamp=None, tool=None):
        self.returns.append((timestamp, borrow_id, user, tool))

    def add_failure(self, tool, user, reason, timestamp=None):
        self.failures.append((timestamp, tool, user, reason))


class BareDicts(BareLists):
    """The first release's floor: the same three add calls, each appending a dict of the event to a list."""

    def add_borrow(self, tool, user, is_overage, borrow_id, timestamp=None):
        self.borrows.append({"ts": timestamp, "tool": tool, "user": user, "is_overage": is_overage, "id": borrow_id})

    def add_return(self, borrow_id, user=None, timestamp=None, tool=None):
        self.returns.append({"ts": timestamp, "id": borrow_id, "user": user, "tool": tool})

    def add_failure(self, tool, user, reason, timestamp=None):
        self.failures.append({"ts": timestamp, "tool": tool, "user": user, "reason": reason})


class Column:
    """A growable NumPy array, appended to one value at a time (capacity doubles when full)."""

    def __init__(self, dtype):
        self.data = np.empty(1024, dtype=dtype)
        self.size = 0

    def append(self, value):
        if self.size == len(self.data):
            self.data = np.concatenate([self.data, np.empty_like(self.data)])
        self.data[self.size] = value
        self.size += 1

    def view(self, lo=0):
        return self.data[lo : self.size]


class NumpyGroupBy:
    """What a competent engineer writes first: columnar arrays kept up to date on each add (names as integer codes,
    events in time order), and every read a NumPy group-by over them (sort-and-mask and bincount, no hashing)."""

    def __init__(self, clock, caps=(100_000, 100_000, 10_000)):
        self.clock = clock
        self.caps = caps
        self.names, self.codes = [], {}
        self.borrowed = {}  # borrow id -> (tool code, user code): a return names its borrow's tool and user
        self.kinds = {
            kind: {column: Column(dtype) for column, dtype in columns}
            for kind, columns in (
                ("borrows", (("ts", "f8"), ("tool", "i4"), ("user", "i4"), ("overage", "?"), ("id", "O"))),
                ("returns", (("ts", "f8"), ("tool", "i4"), ("user", "i4"), ("id", "O"))),
                ("failures", (("ts", "f8"), ("tool", "i4"), ("user", "i4"), ("reason", "i4"))),
            )
        }

    def code(self, name):
        if name is None:
            return -1
        found = self.codes.get(name)
        if found is None:
            found = self.codes[name] = len(self.names)
            self.names.append(name)
        return found

    def add_borrow(self, tool, user, is_overage, borrow_id, timestamp):
        tool, user = self.code(tool), self.code(user)
        self.borrowed[borrow_id] = (tool, user)
        self._append("borrows", ts=timestamp, tool=tool, user=user, overage=is_overage, id=borrow_id)

    def add_return(self, borrow_id, timestamp):
        tool, user = self.borrowed.get(borrow_id, (-1, -1))
        self._append("returns", ts=timestamp, tool=tool, user=user, id=borrow_id)

    def add_failure(self, tool, user, reason, timestamp):
        self._append("failures", ts=timestamp, tool=self.code(tool), user=self.code(user), reason=self.code(reason))

    def _append(self, kind, **values):
        for column, value in values.items():
            self.kinds[kind][column].append(value)

    def _retained(self, kind, cap, cutoff):
        """Return the index of the first retained event of a kind: inside the retention, and among the newest `cap`."""
        ts = self.kinds[kind]["ts"]
        return max(int(np.searchsorted(ts.view(), cutoff, side="left")), ts.size - cap)

    def tick(self):
        now = self.clock()
        cutoff = now - RETENTION
        starts = {kind: self._retained(kind, cap, cutoff) for kind, cap in zip(self.kinds, self.caps)}
        return self._buckets(now, starts["borrows"]), self._recent(now, starts), self._stats(starts)

    def _buckets(self, now, lo):
        cols = self.kinds["borrows"]
        first = first_minute_at_or_after(now - RETENTION)
        minute = (cols["ts"].view(lo) // 60).astype(np.int64)
        lo += int(np.searchsorted(minute, first))
        minute = minute[-(cols["ts"].size - lo) :] - first if cols["ts"].size > lo else minute[:0]
        tool, user, overage = cols["tool"].view(lo), cols["user"].view(lo), cols["overage"].view(lo)
        span, names = int(minute.max()) + 1 if len(minute) else 1, len(self.names)
        cell = tool.astype(np.int64) * span + minute
        counts = np.bincount(cell, minlength=names * span)
        overages = np.bincount(cell, weights=overage, minlength=names * span)
        # Distinct users per cell: sort (cell, user's rank by name) and keep the first of each run.
        rank = np.empty(names, dtype=np.int64)
        rank[np.argsort(np.array(self.names, dtype=object))] = np.arange(names)
        pairs = np.sort(cell * names + rank[user])
        distinct = pairs[np.concatenate(([True], pairs[1:] != pairs[:-1]))]
        by_rank = np.array(sorted(self.names), dtype=object)
        cells, cut = np.unique(distinct // names, return_index=True)
        users = np.split(by_rank[distinct % names], cut[1:])
        out = {}
        for c, names_of_cell in zip(cells.tolist(), users):
            t, m = divmod(c, span)
            out.setdefault(self.names[t], []).append(
                {
                    "timestamp": iso_minute(first + m),
                    "count": int(counts[c]),
                    "users": names_of_cell.tolist(),
                    "overage_count": int(overages[c]),
                }
            )
        return dict(sorted(out.items()))

    def _recent(self, now, starts):
        out = {}
        for kind, lo in starts.items():
            cols = self.kinds[kind]
            lo = max(lo, int(np.searchsorted(cols["ts"].view(), now - 60, side="left")))
            out[kind] = [public_event(self._event(kind, cols, i)) for i in range(lo, cols["ts"].size)]
        return out

    def _event(self, kind, cols, i):
        name = self.names.__getitem__
        ts, tool, user = float(cols["ts"].data[i]), int(cols["tool"].data[i]), int(cols["user"].data[i])
        tool, user = (name(tool) if tool >= 0 else None), (name(user) if user >= 0 else None)
        if kind == "borrows":
            return Event(ts, "borrow", tool, user, cols["id"].data[i], bool(cols["overage"].data[i]), None)
        if kind == "returns":
            return Event(ts, "return", tool, user, cols["id"].data[i], None, None)
        return Event(ts, "failure", tool, user, None, None, name(int(cols["reason"].data[i])))

    def _stats(self, starts):
        sizes = {kind: self.kinds[kind]["ts"].size - lo for kind, lo in starts.items()}
        fronts = [float(self.kinds[kind]["ts"].data[lo]) for kind, lo in starts.items() if sizes[kind]]
        return {
            "total_events": sum(sizes.values()),
            "borrow_count": sizes["borrows"],
            "return_count": sizes["returns"],
            "failure_count": sizes["failures"],
            "retention_hours": RETENTION / 3600,
            "oldest_event": iso_utc(min(fronts)) if fronts else None,
        }


def bench_ingest(events, rounds=3):
    """Return the CPU seconds of feeding `events` one by one into bare tuple lists, bare dict lists and the buffer.

    The buffer is timed twice: with the tests' FakeClock (a Python __call__, about 0.1 us a call) and with a still
    clock that is a C-level callable (`itertools.repeat(END).__next__`), as cheap to call as production's time.time.
    """
    tuples, dicts, ours, ours_c = [], [], [], []
    for _ in range(rounds):
        for floor, times in ((BareLists, tuples), (BareDicts, dicts)):
            start = CPU()
            feed(floor(), events)
            times.append(CPU() - start)
        for clock, times in ((FakeClock(END), ours), (itertools.repeat(END).__next__, ours_c)):
            buffer = RealtimeMetricsBuffer(clock=clock)
            start = CPU()
            feed(buffer, events)
            buffer.get_stats_summary()  # the events added one by one wait in a batch; a read adds them
            times.append(CPU() - start)
    return tuple(statistics.median(times) for times in (tuples, dicts, ours, ours_c))


def main():
    events = full_buffer_events(END)
    bare_seconds, dict_seconds, ingest_seconds, ingest_c_seconds = bench_ingest(events)

    clock = FakeClock(END)
    buffer = RealtimeMetricsBuffer(clock=clock)
    feed(buffer, events)
    stats = buffer.get_stats_summary()
    assert stats["borrow_count"] == 100_000 and stats["return_count"] == 100_000 and stats["failure_count"] == 10_000

    def tick():
        return buffer.aggregate_tool_metrics(RETENTION), buffer.get_recent_events(60), buffer.get_stats_summary()

    cached = timings(tick, 300, CPU)

    # Live, each tick follows fresh events: one borrow and one return land in the open minute.
    base_clock = FakeClock(END)
    baseline = NumpyGroupBy(base_clock)
    for ts, kind, args in events:
        getattr(baseline, f"add_{kind}")(*args[:1] if kind == "return" else args, timestamp=ts)
    live_ids = iter(range(10**9))
    base_ids = iter(range(10**9))

    def live_tick():
        n = next(live_ids)
        clock.advance(0.001)
        buffer.add_borrow("GreenHills Multi IDE", f"user{n % 300:03d}", False, f"live{n}")
        buffer.add_return(f"live{n}")
        return tick()

    def baseline_live_tick():
        n = next(base_ids)
        base_clock.advance(0.001)
        baseline.add_borrow("GreenHills Multi IDE", f"user{n % 300:03d}", False, f"live{n}", base_clock())
        baseline.add_return(f"live{n}", base_clock())
        return baseline.tick()

    live = timings(live_tick, 300, CPU)
    base = timings(baseline_live_tick, 300, CPU)
    ours_now, base_now = tick(), baseline.tick()
    assert ours_now[0] == base_now[0], "the baseline's buckets differ"
    assert ours_now[1] == base_now[1], "the baseline's recent events differ"
    assert ours_now[2] == base_now[2], "the baseline's counts differ"

    tracemalloc.start()
    measured = RealtimeMetricsBuffer(clock=FakeClock(END))
    feed(measured, events)
    measured.aggregate_tool_metrics(RETENTION)
    memory, _peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    event_count = len(events)
    del events

    median_live, median_base = statistics.median(live), statistics.median(base)
    print("Full buffer: 100,000 borrows + 100,000 returns over 6 h, 10,000 failures, 6 tools, 300 users (CPU times)")
    print(f"ingest one by one, bare list append  {event_count / bare_seconds:>12,.0f} events/s   (a tuple an event)")
    print(
        f"ingest one by one, bare dict append  {event_count / dict_seconds:>12,.0f} events/s   (a dict an event, the first floor)"
    )
    print(f"ingest one by one, the buffer        {event_count / ingest_seconds:>12,.0f} events/s   (first read included)")
    print(f"ingest, buffer / bare tuple append   {bare_seconds / ingest_seconds:>12.2f} x    (target >= 0.4)")
    print(
        f"the same, a C-level still clock      {bare_seconds / ingest_c_seconds:>12.2f} x    (repeat(END).__next__, no FakeClock)"
    )
    print(f"ingest, buffer / bare dict append    {dict_seconds / ingest_seconds:>12.2f} x    (the first release's buffer: 0.16x)")
    print(f"tick, nothing new (median)           {statistics.median(cached) * 1000:>12.3f} ms")
    print(f"tick, after new events (median)      {median_live * 1000:>12.3f} ms   (target <= 10 ms)")
    print(f"baseline: NumPy group-by (median)    {median_base * 1000:>12.3f} ms   (same events, same answer)")
    print(f"tick speed-up against the baseline   {median_base / median_live:>12.1f} x    (target >= 3x)")
    print(f"full buffer memory                   {memory / 2**20:>12.1f} MB   (target <= 150 MB)")


if __name__ == "__main__":
    main()
