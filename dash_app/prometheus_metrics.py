"""Prometheus exposition at /metrics: per-tool gauges from the pool, counters from recorded events."""

import threading
from collections import Counter

from flask import Blueprint, Response
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

from dash_app.events import BORROW, RETURN
from dash_app.state import get_state

UNLISTED_TOOL = "(not in inventory)"

bp = Blueprint("metrics", __name__)


class EventCounters:
    """Counts recorded events since start (an EventRecorder listener)."""

    def __init__(self, known_tools):
        self._known = set(known_tools)
        self._lock = threading.Lock()
        self.borrows = Counter()
        self.returns = Counter()
        self.failures = Counter()

    def on_events(self, events):
        with self._lock:
            for event in events:
                # Names from requests are unbounded; label only inventory tools to keep series few.
                tool = event.tool if event.tool in self._known else UNLISTED_TOOL
                if event.kind == BORROW:
                    self.borrows[(tool, "true" if event.is_overage else "false")] += 1
                elif event.kind == RETURN:
                    self.returns[tool] += 1
                else:
                    self.failures[(tool, event.reason)] += 1

    def snapshot(self):
        with self._lock:
            return Counter(self.borrows), Counter(self.returns), Counter(self.failures)


class PoolCollector:
    """Yields the gauges and counters on each scrape."""

    def __init__(self, pool, counters):
        self.pool = pool
        self.counters = counters

    def collect(self):
        gauges = {
            "borrowed": GaugeMetricFamily("license_borrowed", "Licenses borrowed now", labels=["tool"]),
            "total": GaugeMetricFamily("license_total", "Licenses in the pool", labels=["tool"]),
            "commit": GaugeMetricFamily("license_commit", "Prepaid (commit) licenses", labels=["tool"]),
            "overage": GaugeMetricFamily("license_overage", "Licenses borrowed past the commit now", labels=["tool"]),
        }
        for entry in self.pool.status():
            for key, family in gauges.items():
                if entry[key] is not None:
                    family.add_metric([entry["tool"]], entry[key])
        yield from gauges.values()

        borrows, returns, failures = self.counters.snapshot()
        family = CounterMetricFamily("license_borrows", "Granted borrows", labels=["tool", "overage"])
        for (tool, overage), n in sorted(borrows.items()):
            family.add_metric([tool, overage], n)
        yield family
        family = CounterMetricFamily("license_returns", "Returns", labels=["tool"])
        for tool, n in sorted(returns.items()):
            family.add_metric([tool], n)
        yield family
        family = CounterMetricFamily("license_failures", "Borrows that could not be granted", labels=["tool", "reason"])
        for (tool, reason), n in sorted(failures.items()):
            family.add_metric([tool, reason], n)
        yield family


def build_registry(pool, recorder):
    """Return a registry for one app, with its event counters listening on `recorder`."""
    counters = EventCounters(pool.tools)
    recorder.add_listener(counters)
    registry = CollectorRegistry(auto_describe=False)
    registry.register(PoolCollector(pool, counters))
    return registry


@bp.get("/metrics")
def metrics():
    registry = get_state().metrics_registry
    return Response(generate_latest(registry), mimetype=CONTENT_TYPE_LATEST)
