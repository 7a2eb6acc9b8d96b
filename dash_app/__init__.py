"""License-usage dashboard: a Dash app over a server-side buffer of license events."""

import logging
import secrets
import time
from pathlib import Path

import dash

from dash_app import config as config_module
from dash_app import prometheus_metrics
from dash_app.alerts.setup import build_alerts, read_rules
from dash_app.analytics.service import CapacityService
from dash_app.buffer import RealtimeMetricsBuffer
from dash_app.callbacks import register_callbacks
from dash_app.compression import register_compression
from dash_app.config import Config
from dash_app.layouts import dashboard
from dash_app.licenses import LicensePool, SeriesNames, load_inventory
from dash_app.recording import EventRecorder
from dash_app.routes import register_routes
from dash_app.sources.demo import DemoTraffic
from dash_app.sources.flexlm import FlexLMFollower
from dash_app.sources.health import SourceHealth, sources_of
from dash_app.sources.servers import build_poller
from dash_app.state import DELIVERIES, DEMO, FLEXLM, POLLER, STORE, STREAM, AppState, Service, attach_state
from dash_app.store import SQLiteStore
from dash_app.store.history import HistoryKeeper, stored_tool_names
from dash_app.store.restore import restore_buffer
from dash_app.stream import StreamTicker, stream_capacity
from dash_app.stream.routes import end_streams_on_worker_exit

log = logging.getLogger(__name__)

ASSETS_FOLDER = str(Path(__file__).resolve().parent / "assets")


def build_state(config: Config) -> AppState:
    """Build everything the app holds for `config`: sources -> pool -> recorder -> buffer and store -> readers; not started."""
    specs = load_inventory(config.tools_file)
    store = SQLiteStore(config.db)
    # One rule for every aggregate: past --max-unknown-tools names outside the inventory share one series, so a
    # flood of distinct names cannot grow the buffer's bins or the stored history. Names an earlier run charted on
    # their own (its stored history) keep their series, so a restart neither moves nor double counts them.
    series = SeriesNames(
        specs,
        config.max_unknown_tools,
        admitted=stored_tool_names(store, limit=len(specs) + config.max_unknown_tools + 1),
    )
    buffer = RealtimeMetricsBuffer(
        retention_seconds=config.retention_seconds,
        max_borrows=config.max_borrows,
        max_returns=config.max_returns,
        max_failures=config.max_failures,
        series_of=series,
    )
    recorder = EventRecorder(buffer, listeners=[store])
    pool = LicensePool(specs, recorder, store=store, series_of=series)
    # Raw events are kept an hour past the buffer's window; aggregates for the long history.
    history = HistoryKeeper(
        store,
        raw_keep_seconds=config.retention_seconds + 3600,
        history_seconds=config.history_days * 86400,
        series_of=series,
    )
    restore_buffer(store, buffer)
    services: dict[str, Service] = {STORE: store}
    api_source = SourceHealth("api", "/licenses")
    # The alert rules ask for the down sources per tick: those in `services` when they ask (all, once started).
    alerts, deliveries = build_alerts(
        config, read_rules(config), store, pool, recorder, lambda: sources_of(api_source, services, only_down=True), time.time
    )
    if deliveries is not None:
        services[DELIVERIES] = deliveries
    if config.demo:
        services[DEMO] = DemoTraffic(pool, speed=config.demo_speed, backfill_hours=demo_backfill_hours(config, store))
    if config.flexlm_logs:
        services[FLEXLM] = FlexLMFollower(config.flexlm_logs, pool, store)
    poller = build_poller(config, pool, time.time)
    if poller is not None:
        services[POLLER] = poller
    # The ticker starts last, so its first tick sees what the sources brought at start.
    stream = services[STREAM] = StreamTicker(
        buffer,
        pool,
        interval=config.stream_interval,
        max_clients=stream_capacity(config.threads),
        persisted=lambda: store.persisted,
        on_tick=[lambda tick: alerts.on_tick(tick.now, tick.tools, tick.buffer_stats.get("persisted", True))],
    )
    return AppState(
        config=config,
        buffer=buffer,
        recorder=recorder,
        pool=pool,
        store=store,
        history=history,
        metrics_registry=prometheus_metrics.build_registry(pool, recorder, alerts),
        stream=stream,
        analytics=CapacityService(store, pool, config),
        services=services,
        api_source=api_source,
        alerts=alerts,
    )


def demo_backfill_hours(config: Config, store: SQLiteStore) -> float:
    """Return the hours of demo history to make up at start: none when the database already holds recent events.

    A restart over the same database would otherwise add a second past on top of the first, and the licenses in use
    rebuilt from both would pass the pools' totals.
    """
    if config.backfill_hours <= 0:
        return 0.0
    since = time.time() - config.backfill_hours * 3600
    if store.read("SELECT 1 FROM events WHERE ts >= ? LIMIT 1", (since,)):
        log.info("demo backfill skipped: the database already holds events of the last %g h", config.backfill_hours)
        return 0.0
    return config.backfill_hours


def create_app(config: Config | dict | None = None) -> dash.Dash:
    """Build the Dash app; `config` is a Config, a dict of Config fields, or None for the environment."""
    config = config_module.coerce(config)
    if not config.api_token:
        # Like Jupyter: nobody writes without a token, so make one and say it once.
        config = config.replace(api_token=secrets.token_urlsafe(24))
        log.warning("DASH_APP_API_TOKEN is unset; this run's API token is %s", config.api_token)
    state = build_state(config)

    app = dash.Dash(
        __name__,
        assets_folder=ASSETS_FOLDER,
        title="License usage",
        # Dash documents None as "leave the tab title alone" but annotates the parameter as str.
        update_title=None,  # type: ignore[arg-type]
        external_stylesheets=["/vendor/bootstrap.min.css"],
    )
    attach_state(app.server, state)
    register_routes(app.server)
    register_compression(app)
    end_streams_on_worker_exit(state.stream)
    app.layout = dashboard.layout(state)
    register_callbacks(app, state)

    state.start()
    return app
