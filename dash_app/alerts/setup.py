"""How build_state makes the alerts: the rules file, facts fed by the recorder, the delivery queue and the engine."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

from dash_app.alerts.conditions import Facts
from dash_app.alerts.delivery import Deliveries
from dash_app.alerts.engine import AlertEngine
from dash_app.alerts.facts import DenialWindow, OpenCheckouts, OverageLedger
from dash_app.alerts.redaction import check_url
from dash_app.alerts.rules import DENIALS, OVERAGE_COST, AlertConfig, load_rules
from dash_app.alerts.storage import AlertStorage
from dash_app.store.history_counts import denial_times_since, overage_borrows_since

if TYPE_CHECKING:
    from dash_app.config import Config
    from dash_app.licenses.pool import LicensePool
    from dash_app.recording import EventRecorder
    from dash_app.store.database import Store


def read_rules(config: Config) -> AlertConfig:
    """Return the rules of `--alerts` (none without the flag); raise AlertRulesError for a file that cannot be used."""
    return load_rules(config.alerts_file, check_url)


def public_url(config: Config) -> str:
    """Return the dashboard's address for links in notifications: `--public-url`, or where this server listens."""
    if config.public_url:
        return config.public_url
    host = f"[{config.host}]" if ":" in config.host else config.host
    return f"http://{host}:{config.port}"


def build_alerts(
    config: Config,
    rules: AlertConfig,
    store: Store,
    pool: LicensePool,
    recorder: EventRecorder,
    sources: Callable[[], list[dict[str, Any]]],
    clock: Callable[[], float],
    leading: Callable[[], bool] = lambda: True,
) -> tuple[AlertEngine, Deliveries | None]:
    """Return the engine, and the delivery queue to start as a service (None when no rule notifies anyone).

    `leading` says whether this process stores and sends alerts (with --redis, the lease holder only).
    """
    windows = [rule.params["within_seconds"] for rule in rules.rules if rule.kind == DENIALS]
    denials = DenialWindow(max(windows, default=0.0))
    if windows:
        denials.load(denial_times_since(store, clock() - denials.keep_seconds))
    checkouts = OpenCheckouts((b.borrowed_at, b.id, b.tool, b.user) for b in pool.active_borrows())
    periods = [rule.params["period"] for rule in rules.rules if rule.kind == OVERAGE_COST]
    overage = OverageLedger(periods, lambda start: overage_borrows_since(store, start), clock()) if periods else None
    if rules.rules:
        for listener in (denials, checkouts, overage):
            if listener is not None:
                recorder.add_listener(listener)

    def facts(now: float, tools: Sequence[Any], persisted: bool) -> Facts:
        return Facts(now, tools, persisted, denials, checkouts, overage, sources)

    # Long enough after a restart for every source to have said how it is: a few ticks, and two polls of servers.
    polled = bool(config.lmstat_servers or config.rlmstat_servers or config.lmx_servers or config.dsls_servers)
    grace = 3 * config.stream_interval + (2 * config.poll_seconds if polled else 0.0) + 5.0
    storage = AlertStorage(store)
    deliveries = None
    if any(rule.notify for rule in rules.rules):
        # Every delivery's outcome is stored; the queue hands it over from its worker threads.
        deliveries = Deliveries(on_record=storage.save_delivery, deadline=rules.delivery_deadline_seconds)
    engine = AlertEngine(rules, deliveries, storage, public_url(config), facts, grace_seconds=grace, leading=leading)
    return engine, deliveries
