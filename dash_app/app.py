"""The app factory: build_state makes every object the app holds, create_app the Dash app over them."""

import logging
import secrets
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import dash
import flask

from dash_app import config as config_module
from dash_app import prometheus_metrics, vendor
from dash_app.alerts.setup import build_alerts, read_rules
from dash_app.analytics.runners import Runner, analysis_runner
from dash_app.analytics.service import CapacityService
from dash_app.auth import register_auth
from dash_app.buffer import RealtimeMetricsBuffer
from dash_app.callbacks import register_callbacks
from dash_app.callbacks.capacity_period import is_capacity
from dash_app.compression import register_compression
from dash_app.config import Config
from dash_app.dash_routes import register_dash_routes
from dash_app.directory.service import DirectoryService, UserNames
from dash_app.layouts import dashboard
from dash_app.licenses import LicensePool, SeriesNames, load_inventory
from dash_app.licenses.pool_storage import PoolStorage
from dash_app.recording import EventRecorder
from dash_app.reports.setup import build_reports, read_reports
from dash_app.routes import register_routes
from dash_app.services import DELIVERIES, DEMO, DIRECTORY, FLEXLM, LEASE, LOG, PERSISTER, POLLER, REPORTS, STORE, STREAM, Service
from dash_app.sources.demo import DemoTraffic
from dash_app.sources.flexlm import FlexLMFollower
from dash_app.sources.health import SourceHealth, down_of, sources_of
from dash_app.sources.servers import build_poller
from dash_app.state import AppState, WebSettings, attach_state
from dash_app.store import Store
from dash_app.store.history import HistoryKeeper, stored_tool_names
from dash_app.store.restore import restore_buffer
from dash_app.store.session_users import session_users_after
from dash_app.stream import StreamTicker, stream_capacity
from dash_app.stream.routes import end_streams_on_worker_exit

log = logging.getLogger(__name__)

ASSETS_FOLDER = str(Path(__file__).resolve().parent / "assets")


def build_state(config: Config, lead: bool = True, analysis: Runner | None = None) -> AppState:
    """Build everything the app holds for `config`: sources -> pool -> recorder -> buffer and store -> readers; not started.

    `lead=False` is for a one-off command on a deployment's Redis (ingest-flexlm): it never takes the lease from the
    servers, and writes the log to the store itself, which is safe beside the lease holder (each entry is stored once).
    """
    specs = load_inventory(config.tools_file)
    store = Store(config.db)
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
    services: dict[str, Service] = {STORE: store}
    api_source = SourceHealth("api", "/licenses")
    # The sources: here, or with --redis in whichever process holds the lease (built afresh each time it takes it).
    sources: dict[str, Callable[[LicensePool], Service]] = {}
    if config.demo:
        sources[DEMO] = lambda pool: DemoTraffic(
            pool, speed=config.demo_speed, backfill_hours=demo_backfill_hours(config.backfill_hours, store)
        )
    if config.flexlm_logs:
        sources[FLEXLM] = lambda pool: FlexLMFollower(config.flexlm_logs, pool, store)
    if config.lmstat_servers or config.rlmstat_servers or config.lmx_servers or config.dsls_servers:
        sources[POLLER] = lambda pool: build_poller(  # type: ignore[assignment,return-value]
            pool,
            time.time,
            lmutil=config.lmutil,
            lmstat_servers=config.lmstat_servers,
            rlmutil=config.rlmutil,
            rlmstat_servers=config.rlmstat_servers,
            poll_seconds=config.poll_seconds,
            poll_confirm=config.poll_confirm,
            poll_max_bytes=config.poll_max_bytes,
            lmxendutil=config.lmxendutil,
            lmx_servers=config.lmx_servers,
            dslicsrv=config.dslicsrv,
            dsls_servers=config.dsls_servers,
        )
    shared = None
    if config.redis_url:
        # The store is written by the lease holder's persister, from the log; this process's buffer by its follower.
        recorder = EventRecorder(buffer)
        from dash_app.eventlog.setup import build_shared  # noqa: PLC0415 - redis loads only where it is used

        shared = build_shared(
            config.redis_url,
            config.redis_prefix,
            config.retention_seconds,
            specs,
            store,
            buffer,
            recorder,
            series,
            sources,
            # The leader's sources, for the other processes (without this process's API entry).
            describe_sources=lambda leader_services: sources_of(api_source, leader_services)[1:],
            lead=lead,
        )
        pool: LicensePool = shared.pool
        services[LOG] = shared.follower
    else:
        recorder = EventRecorder(buffer, listeners=[store])
        pool = LicensePool(specs, recorder, store=PoolStorage(store), series_of=series)
        restore_buffer(store, buffer)

    def running() -> dict[str, Service]:
        """The services running now: all of `services` once started, and with --redis the lease holder's sources."""
        return services if shared is None else {**services, **shared.leadership.running}

    leadership = shared.leadership if shared is not None else None

    def leading() -> bool:
        """Whether this process keeps the history and sends alerts: with --redis, only while it holds the lease."""
        return leadership is None or leadership.leading

    # Raw events are kept an hour past the buffer's window; aggregates for the long history.
    history = HistoryKeeper(
        store,
        raw_keep_seconds=config.retention_seconds + 3600,
        history_seconds=config.history_days * 86400,
        series_of=series,
        leading=leading,
    )
    # The alert rules ask for the down sources per tick.
    alerts, deliveries = build_alerts(
        config,
        read_rules(config),
        store,
        pool,
        recorder,
        lambda: down_of(api_source, shared, running()),
        time.time,
        leading=leading,
    )
    if deliveries is not None:
        services[DELIVERIES] = deliveries
    if shared is not None:
        if lead:
            services[LEASE] = shared.leadership
        else:
            services[PERSISTER] = shared.leadership.factories[PERSISTER]()
    else:
        for name, build in sources.items():
            services[name] = build(pool)

    directory = build_directory(config, store, pool)
    if lead:  # a one-off command (lead=False) has no use for a thread that follows the file and the directory
        services[DIRECTORY] = directory
    analytics = CapacityService(
        store,
        pool,
        history_days=config.history_days,
        billing_days=config.billing_days,
        true_denial_minutes=config.true_denial_minutes,
        groups=directory.mapping,
        currency=config.currency,
        runner=analysis or analysis_runner(store, config.analysis_dir),
    )
    # Every process runs the reports' thread (a one-off command none): each period's claim in the database sends it once.
    reports = build_reports(config, read_reports(config), store, analytics) if lead else None
    if reports is not None:
        services[REPORTS] = reports
    # The ticker starts last, so its first tick sees what the sources brought at start.
    stream = services[STREAM] = StreamTicker(
        buffer,
        pool,
        interval=config.stream_interval,
        max_clients=stream_capacity(config.threads),
        persisted=lambda: store.persisted,
        on_tick=[lambda tick: alerts.on_tick(tick.now, tick.tools, tick.buffer_stats.get("persisted", True), tick.id)],
    )
    return AppState(
        settings=WebSettings(
            currency=config.currency,
            refresh_ms=config.refresh_ms,
            retention_seconds=config.retention_seconds,
            history_days=config.history_days,
            api_token=config.api_token,
            true_denial_minutes=config.true_denial_minutes,
        ),
        buffer=buffer,
        recorder=recorder,
        pool=pool,
        store=store,
        history=history,
        metrics_registry=prometheus_metrics.build_registry(pool, recorder, alerts),
        stream=stream,
        analytics=analytics,
        services=services,
        api_source=api_source,
        alerts=alerts,
        directory=directory,
        shared=shared,
        reports=reports,
    )


def build_directory(config: Config, store: Store, pool: LicensePool) -> DirectoryService:
    """Return the service that knows who belongs where (the --user-groups file over the company directory)."""
    ldap = None
    if config.ldap_url:
        from dash_app.directory.ldap import LdapDirectory  # noqa: PLC0415 - ldap3 loads only where it is used

        ldap = LdapDirectory(
            config.ldap_url,
            config.ldap_base_dn,
            user_filter=config.ldap_user_filter,
            group_attribute=config.ldap_group_attribute,
            cost_centre_attribute=config.ldap_cost_centre_attribute,
            bind_dn=config.ldap_bind_dn,
            password=config.ldap_password,
        )
    # The users to look up: every user of the stored sessions, and whoever holds a license now.
    users = UserNames(lambda after: session_users_after(store, after), lambda: (b.user for b in pool.active_borrows()))
    return DirectoryService(config.user_groups, ldap, users, refresh_seconds=config.ldap_refresh_hours * 3600)


def demo_backfill_hours(hours: float, store: Store) -> float:
    """Return the hours of demo history to make up at start (`hours`): none when the database already holds recent events.

    A restart over the same database would otherwise add a second past on top of the first, and the licenses in use
    rebuilt from both would pass the pools' totals.
    """
    if hours <= 0:
        return 0.0
    since = time.time() - hours * 3600
    if store.read("SELECT 1 FROM events WHERE ts >= :since LIMIT 1", {"since": since}):
        log.info("demo backfill skipped: the database already holds events of the last %g h", hours)
        return 0.0
    return hours


class DashApp(dash.Dash):
    """Dash, whose pages link what their first view needs beside the page's scripts.

    The live view's page links plotly.js's bundle (vendor.plotly_script): its first chart needs it. The Capacity
    view's links instead the chunks its components load on demand (vendor.chunk_scripts): there the grid is what a
    person waits for, and a chunk found installed is drawn as its rows come, before the charts below take the main
    thread. It loads plotly.js once the grid shows rows (vendor.late_plotly_script): linked, it was compiled before
    the page's own scripts ran and put off the grid's first request; asked for by the charts, it ran between the
    grid's rows coming and their being drawn.
    """

    def interpolate_index(
        self,
        metas: Any = "",
        title: Any = "",
        css: Any = "",
        config: Any = "",
        scripts: Any = "",
        app_entry: Any = "",
        favicon: Any = "",
        renderer: Any = "",
    ) -> Any:
        """Return the page's HTML, with the chunks and a late plotly.js where the address is the Capacity view's."""
        if is_capacity(flask.request.path):
            scripts = f"{vendor.late_plotly_script(self)}\n{scripts}\n{vendor.chunk_scripts(self)}"
        else:  # first, where Dash puts external scripts: it starts loading before the component libraries
            scripts = f"{vendor.plotly_script(self)}\n{scripts}"
        return super().interpolate_index(metas, title, css, config, scripts, app_entry, favicon, renderer)


def create_app(config: Config | Mapping[str, Any] | None = None, analysis: Runner | None = None) -> dash.Dash:
    """Build the Dash app; `config` is a Config, a dict of Config fields, or None for the environment."""
    config = config_module.coerce(config)
    if not config.api_token:
        # Like Jupyter: nobody writes without a token, so make one and say it once.
        config = config.replace(api_token=secrets.token_urlsafe(24))
        log.warning("DASH_APP_API_TOKEN is unset; this run's API token is %s", config.api_token)
    state = build_state(config, analysis=analysis)

    app = DashApp(
        __name__,
        assets_folder=ASSETS_FOLDER,
        title="License usage",
        # Dash documents None as "leave the tab title alone" but annotates the parameter as str.
        update_title=None,  # type: ignore[arg-type]
        assets_path_ignore=vendor.UNLINKED_ASSETS,
    )
    attach_state(app.server, state)
    register_routes(app.server)
    register_auth(app.server, config)
    register_compression(app, replaced={vendor.PLOTLY_FIXED: vendor.PLOTLY_BUNDLE})
    end_streams_on_worker_exit(state.stream)
    app.layout = dashboard.layout(state)
    register_callbacks(app, state)
    register_dash_routes(app)  # last: it reads every route and callback

    state.start()
    return app
