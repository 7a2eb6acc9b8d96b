"""Prometheus exposition at /metrics: per-tool gauges from the pool, counters from recorded events."""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Iterable, Iterator
from typing import TYPE_CHECKING, cast

from flask import Blueprint, Response
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric

from dash_app.events import BORROW, RETURN, Event
from dash_app.state import get_state

if TYPE_CHECKING:  # for the annotations only
    from dash_app.alerts.engine import AlertEngine
    from dash_app.licenses import LicensePool
    from dash_app.recording import EventRecorder

UNLISTED_TOOL = "(not in inventory)"

bp = Blueprint("metrics", __name__)


class EventCounters:
    """Counts recorded events since start (an EventRecorder listener)."""

    def __init__(self, known_tools: Iterable[str]) -> None:
        self._known = set(known_tools)
        self._lock = threading.Lock()
        self.borrows: Counter[tuple[str, str]] = Counter()  # (tool, "true"/"false" overage) -> count
        self.returns: Counter[str] = Counter()  # tool -> count
        self.failures: Counter[tuple[str, str]] = Counter()  # (tool, reason) -> count

    def on_events(self, events: Iterable[Event]) -> None:
        with self._lock:
            for event in events:
                # Names from requests are unbounded; label only inventory tools to keep series few.
                tool = event.tool if event.tool in self._known else UNLISTED_TOOL
                if event.kind == BORROW:
                    self.borrows[(tool, "true" if event.is_overage else "false")] += 1
                elif event.kind == RETURN:
                    self.returns[tool] += 1
                else:
                    self.failures[(tool, cast(str, event.reason))] += 1  # a failure always has its reason

    def snapshot(self) -> tuple[Counter[tuple[str, str]], Counter[str], Counter[tuple[str, str]]]:
        with self._lock:
            return Counter(self.borrows), Counter(self.returns), Counter(self.failures)


class PoolCollector:
    """Yields the gauges and counters on each scrape."""

    def __init__(self, pool: LicensePool, counters: EventCounters) -> None:
        self.pool = pool
        self.counters = counters

    def collect(self) -> Iterator[Metric]:
        gauges = {
            "borrowed": GaugeMetricFamily("license_borrowed", "Licenses borrowed now", labels=["tool"]),
            "total": GaugeMetricFamily("license_total", "Licenses in the pool", labels=["tool"]),
            "commit": GaugeMetricFamily("license_commit", "Prepaid (commit) licenses", labels=["tool"]),
            "overage": GaugeMetricFamily("license_overage", "Licenses borrowed past the commit now", labels=["tool"]),
            "reserved": GaugeMetricFamily("license_reserved", "Licenses the servers reserve now", labels=["tool"]),
            "queued": GaugeMetricFamily("license_queued", "Licenses users are queued for now", labels=["tool"]),
        }
        for entry in self.pool.status():
            for key, family in gauges.items():
                if entry[key] is not None:
                    family.add_metric([entry["tool"]], entry[key])
        yield from gauges.values()

        borrows, returns, failures = self.counters.snapshot()
        counter = CounterMetricFamily("license_borrows", "Granted borrows", labels=["tool", "overage"])
        for (tool, overage), n in sorted(borrows.items()):
            counter.add_metric([tool, overage], n)
        yield counter
        counter = CounterMetricFamily("license_returns", "Returns", labels=["tool"])
        for tool, n in sorted(returns.items()):
            counter.add_metric([tool], n)
        yield counter
        counter = CounterMetricFamily("license_failures", "Borrows that could not be granted", labels=["tool", "reason"])
        for (tool, reason), n in sorted(failures.items()):
            counter.add_metric([tool, reason], n)
        yield counter


class AlertCollector:
    """Yields license_alert_firing{rule,tool}: 1 for every alert firing now."""

    def __init__(self, alerts: AlertEngine) -> None:
        self.alerts = alerts

    def collect(self) -> Iterator[Metric]:
        family = GaugeMetricFamily("license_alert_firing", "Alerts firing now, by rule and tool", labels=["rule", "tool"])
        # One sample per label set: a held_longer_than rule fires once per checkout, several of one tool add up.
        counts = Counter((alert.rule, alert.subject or "") for alert in self.alerts.firing())
        for (rule, tool), count in sorted(counts.items()):
            family.add_metric([rule, tool], count)
        yield family


def build_registry(pool: LicensePool, recorder: EventRecorder, alerts: AlertEngine | None = None) -> CollectorRegistry:
    """Return a registry for one app, with its event counters listening on `recorder` (and its alerts, if given)."""
    counters = EventCounters(pool.tools)
    recorder.add_listener(counters)
    registry = CollectorRegistry(auto_describe=False)
    registry.register(PoolCollector(pool, counters))
    if alerts is not None:
        registry.register(AlertCollector(alerts))
    return registry


@bp.get("/metrics")
def metrics() -> Response:
    registry = get_state().metrics_registry
    return Response(generate_latest(registry), mimetype=CONTENT_TYPE_LATEST)
