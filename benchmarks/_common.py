"""Shared helpers for the benchmark scripts: synthetic traffic and timing."""

import random
import statistics
import time

TOOLS = [
    "Vector - DaVinci Configurator SE",
    "ECU Development Suite",
    "GreenHills Multi IDE",
    "AUTOSAR Configuration Tool",
    "CAN Bus Analyzer Pro",
    "Model-Based Design Studio",
]
USERS = [f"user{n:03d}" for n in range(300)]
REASONS = ["exhausted", "max_overage", "unknown_tool"]


def full_buffer_events(end, seconds=21600, borrows=100_000, returns=100_000, failures=10_000, seed=7):
    """Return (kind, args, timestamp) tuples spread evenly over `seconds` before `end`, in time order."""
    rng = random.Random(seed)
    events = []
    for i in range(borrows):
        ts = end - seconds + (i + 0.5) * seconds / borrows
        events.append((ts, "borrow", (rng.choice(TOOLS), rng.choice(USERS), rng.random() < 0.2, f"b{i}")))
    for i in range(returns):
        ts = end - seconds + (i + 0.9) * seconds / returns
        events.append((ts, "return", (f"b{i}",)))
    for i in range(failures):
        ts = end - seconds + (i + 0.3) * seconds / failures
        events.append((ts, "failure", (rng.choice(TOOLS), rng.choice(USERS), rng.choice(REASONS))))
    events.sort(key=lambda e: e[0])
    return events


def feed(buffer, events):
    """Add `events` to a buffer through its public API."""
    add = {"borrow": buffer.add_borrow, "return": buffer.add_return, "failure": buffer.add_failure}
    for ts, kind, args in events:
        add[kind](*args, timestamp=ts)


def timings(fn, repeat):
    """Return the list of wall times of `repeat` calls of fn, in seconds."""
    out = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        out.append(time.perf_counter() - start)
    return out


def p95(values):
    """Return the 95th percentile."""
    return statistics.quantiles(values, n=20)[-1] if len(values) > 1 else values[0]


class FakeClock:
    """A settable clock, so a benchmark sits at the end of its synthetic history."""

    def __init__(self, now):
        self.now = now

    def __call__(self):
        return self.now
