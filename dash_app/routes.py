"""Every HTTP route of the app besides Dash's own: one blueprint per area, all registered here."""

from flask import Flask

from dash_app import prometheus_metrics, realtime_api, vendor
from dash_app.alerts import api as alerts_api
from dash_app.analytics import api as analytics_api
from dash_app.licenses import api as licenses_api
from dash_app.reports import api as reports_api
from dash_app.sources import api as sources_api
from dash_app.stream import routes as stream_routes
from dash_app.web import register_request_guards

BLUEPRINTS = (
    vendor.bp,  # /healthz
    licenses_api.bp,  # /licenses/*, /borrows
    realtime_api.bp,  # /realtime/stats, /realtime/export
    stream_routes.bp,  # /realtime/stream, /realtime/stream/clients
    prometheus_metrics.bp,  # /metrics
    sources_api.bp,  # /sources, /sources/flexlm
    analytics_api.bp,  # /analytics/capacity, /analytics/commit-advice
    alerts_api.bp,  # /alerts
    reports_api.bp,  # /reports
)


def register_routes(server: Flask) -> None:
    """Add the request guards (body limits, JSON errors) and every blueprint to `server`."""
    register_request_guards(server)
    for blueprint in BLUEPRINTS:
        server.register_blueprint(blueprint)
