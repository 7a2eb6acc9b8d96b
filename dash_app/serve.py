"""Run the app under gunicorn's threaded worker, in this process tree, from a Config."""

import atexit
import sys
from typing import TYPE_CHECKING

from gunicorn.app.base import BaseApplication

if TYPE_CHECKING:
    from flask import Flask

    from dash_app.config import Config


def bind_address(host: str, port: int) -> str:
    """Return gunicorn's bind string, bracketing IPv6 hosts."""
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


# gthread that reads whole requests under a deadline; the Procfile names the same class (see dash_app/worker/).
WORKER_CLASS = "dash_app.worker.HeadTimeoutWorker"


class DashboardServer(BaseApplication):
    """gthread workers (one, or --workers on --redis): each holds a buffer, and each open stream holds a thread.

    The worker is HeadTimeoutWorker, gthread that reads whole requests in its event loop under a total deadline
    (`header_timeout`), so clients that send half a request and hold it cost no thread.
    """

    def __init__(self, config: "Config") -> None:
        self.dashboard_config = config
        super().__init__()

    def load_config(self) -> None:
        config = self.dashboard_config
        self.cfg.set("bind", [bind_address(config.host, config.port)])
        self.cfg.set("worker_class", WORKER_CLASS)
        # One worker holds the buffer and the pool; more share them through Redis (config refuses them otherwise).
        self.cfg.set("workers", config.workers)
        self.cfg.set("threads", config.threads)
        # Streams, kept-alive and slow clients cost a descriptor each, not a thread; the worker takes the same figure.
        self.cfg.set("worker_connections", config.max_connections)
        # Streams are long requests; gthread's timeout only watches the worker's heartbeat.
        self.cfg.set("timeout", 60)
        self.cfg.set("graceful_timeout", 5)
        self.cfg.set("accesslog", None)
        # Several servers may run side by side (tests, benchmarks); none needs the control socket.
        self.cfg.set("control_socket_disable", True)

    def load(self) -> "Flask":
        # Built in the worker, after the fork, so background threads live where requests are served.
        return served_app(self.dashboard_config)


def served_app(config: "Config | None" = None) -> "Flask":
    """Build the Flask server a worker process serves, from `config` or (None) the environment, ready to stop."""
    # Dash imports IPython, where it is installed, for notebooks; a server process never runs in one. Marked absent
    # before Dash loads, it spares each worker about half a second of CPU and 500 modules at start.
    sys.modules.setdefault("IPython", None)  # type: ignore[arg-type]  # None: "not installed", as import reads it
    from dash_app import config as config_module
    from dash_app.analytics.runners import started_if_analysed_before

    config = config_module.coerce(config)
    # A history analysed before (its copy saved beside the database file, or in --analysis-dir for a server) has its
    # analysis process started first, before Dash is even imported: it loads that copy while this worker builds the
    # app (each about a second, on two cores), and the first Capacity view after a restart finds it ready.
    analysis = started_if_analysed_before(config.db, config.analysis_dir)

    from dash_app import create_app
    from dash_app.dash_routes import warm_on_first_page
    from dash_app.state import get_state

    app = create_app(config, analysis=analysis)
    state = get_state(app)
    # When the worker exits, stop the services so the SQLite writer flushes what is queued.
    atexit.register(state.stop)
    if analysis is None:
        # Else the analysis process reads the history once the page is first asked for, not at the first query.
        warm_on_first_page(app, state.analytics.warm)
    return app.server


def serve(config: "Config") -> None:
    """Serve until interrupted."""
    DashboardServer(config).run()
