"""License-usage dashboard: a Dash app over a server-side buffer of license events."""

import logging
import secrets
from pathlib import Path

import dash

from dash_app import config as config_module
from dash_app import prometheus_metrics, realtime_api
from dash_app.buffer import RealtimeMetricsBuffer
from dash_app.callbacks import register_callbacks
from dash_app.layouts import dashboard
from dash_app.licenses import LicensePool, SeriesNames, load_inventory
from dash_app.licenses import api as licenses_api
from dash_app.recording import EventRecorder
from dash_app.sources import flexlm
from dash_app.sources.demo import DemoTraffic
from dash_app.state import AppState
from dash_app.store import SQLiteStore
from dash_app.store.history import HistoryKeeper, stored_tool_names
from dash_app.store.restore import restore_buffer
from dash_app.stream import register_stream
from dash_app.vendor import register_vendor_assets
from dash_app.web import register_request_guards

log = logging.getLogger(__name__)

ASSETS_FOLDER = str(Path(__file__).resolve().parent.parent / "assets")


def build_state(config):
    """Wire the data path for `config`: source adapters -> pool -> recorder -> buffer and SQLite; not started."""
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
    state = AppState(config=config, buffer=buffer, recorder=recorder, pool=pool, store=store, history=history)
    state.metrics_registry = prometheus_metrics.build_registry(pool, recorder)
    state.services.append(store)
    if config.demo:
        state.services.append(DemoTraffic(pool, speed=config.demo_speed, backfill_hours=config.backfill_hours))
    if config.flexlm_logs:
        state.services.append(flexlm.FlexLMFollower(config.flexlm_logs, pool, store))
    return state


def create_app(config=None):
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
        update_title=None,
        external_stylesheets=["/vendor/bootstrap.min.css"],
    )
    server = app.server
    server.extensions["dash_app"] = state
    register_request_guards(server)
    register_vendor_assets(server)
    for blueprint in (licenses_api.bp, realtime_api.bp, prometheus_metrics.bp, flexlm.bp):
        server.register_blueprint(blueprint)
    register_stream(server, state)

    @server.get("/healthz")
    def healthz():
        return {"status": "ok"}

    app.layout = dashboard.layout(state)
    register_callbacks(app, state)

    state.start()
    return app
