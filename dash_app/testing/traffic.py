"""Synthetic license traffic for a full buffer, and the timing helpers the benchmarks report with."""

from __future__ import annotations

import random
import statistics
import time
from collections.abc import Callable, Iterable, Sequence
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from dash_app.buffer import RealtimeMetricsBuffer

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

# One generated event: (timestamp, kind, args), args being the positional arguments of the buffer's add_<kind>.
TrafficEvent = tuple[float, str, tuple[Any, ...]]


def full_buffer_events(
    end: float,
    seconds: float = 21600,
    borrows: int = 100_000,
    returns: int = 100_000,
    failures: int = 10_000,
    seed: int = 7,
    tools: Sequence[str] = TOOLS,
) -> list[TrafficEvent]:
    """Return (timestamp, kind, args) tuples spread evenly over the `seconds` before `end` among `tools`, in time order."""
    rng = random.Random(seed)
    events: list[TrafficEvent] = []
    for i in range(borrows):
        ts = end - seconds + (i + 0.5) * seconds / borrows
        events.append((ts, "borrow", (rng.choice(tools), rng.choice(USERS), rng.random() < 0.2, f"b{i}")))
    for i in range(returns):
        ts = end - seconds + (i + 0.9) * seconds / returns
        events.append((ts, "return", (f"b{i}",)))
    for i in range(failures):
        ts = end - seconds + (i + 0.3) * seconds / failures
        events.append((ts, "failure", (rng.choice(tools), rng.choice(USERS), rng.choice(REASONS))))
    events.sort(key=lambda e: e[0])
    return events


def feed(buffer: RealtimeMetricsBuffer, events: Iterable[TrafficEvent]) -> None:
    """Add `events` to a buffer through its public add_borrow / add_return / add_failure."""
    add: dict[str, Callable[..., bool]] = {
        "borrow": buffer.add_borrow,
        "return": buffer.add_return,
        "failure": buffer.add_failure,
    }
    for ts, kind, args in events:
        add[kind](*args, timestamp=ts)


def timings(fn: Callable[[], object], repeat: int, timer: Callable[[], float] = time.perf_counter) -> list[float]:
    """Return the times, in seconds of `timer` (wall time by default, or time.process_time for CPU), of `repeat` calls of `fn`."""
    out = []
    for _ in range(repeat):
        start = timer()
        fn()
        out.append(timer() - start)
    return out


def p95(values: Sequence[float]) -> float:
    """Return the 95th percentile of `values` (the value itself when there is only one)."""
    # Inclusive: the default method extrapolates past the largest value when there are few of them.
    return statistics.quantiles(values, n=20, method="inclusive")[-1] if len(values) > 1 else values[0]


_PRODUCTS = (
    "Vector CANoe",
    "Vector DaVinci Configurator",
    "GreenHills Multi IDE",
    "MathWorks MATLAB",
    "MathWorks Simulink",
    "Siemens Polarion",
    "Synopsys VCS",
    "Cadence Virtuoso",
    "ETAS INCA",
    "dSPACE TargetLink",
    "Ansys Fluent",
    "PTC Creo",
    "IBM Rhapsody",
    "Altair HyperWorks",
    "Keysight ADS",
    "Lauterbach TRACE32",
    "QNX Momentics",
    "Wind River VxWorks",
    "Parasoft C/C++test",
    "Polyspace Bug Finder",
)


def estate_inventory(count: int, seed: int = 3) -> list[dict[str, Any]]:
    """Return a tools-file inventory of `count` tools with varied totals, commits and prices: a real estate's shape."""
    rng = random.Random(seed)
    tools = []
    for n in range(count):
        total = rng.choice((2, 3, 5, 8, 10, 12, 20, 25, 40, 60))
        commit = max(1, int(total * rng.choice((0.5, 0.6, 0.75, 1.0))))
        tools.append(
            {
                "tool": f"{_PRODUCTS[n % len(_PRODUCTS)]} - feature {n // len(_PRODUCTS) + 1:02d}",
                "total": total,
                "commit_qty": commit,
                "max_overage": total - commit,
                "commit_price": commit * rng.choice((500, 1000, 2000)),
                "overage_price_per_license": rng.choice((0, 50, 100, 250)),
            }
        )
    return tools
