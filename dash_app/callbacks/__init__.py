"""Dash callbacks, registered on each app by the factory."""

from dash import Input, Output, State

from dash_app.callbacks.downloads import register_download_callback
from dash_app.callbacks.page import OUTPUTS, PageUpdater

# Runs in the browser, so it still tells the truth when the server stops answering: the age of the last update.
CONNECTION_STATUS_JS = """
function(renderState, _n, interval) {
    var ctx = window.dash_clientside.callback_context;
    var mark = window.__dashAppLastUpdate || (window.__dashAppLastUpdate = {at: null});
    var now = Date.now();
    if (renderState && ctx.triggered.some(function (t) { return t.prop_id === 'render-state.data'; })) {
        mark.at = now;
    }
    if (mark.at === null) {
        return ['Connecting…', 'status-pill status-waiting'];
    }
    var age = Math.max(0, Math.round((now - mark.at) / 1000));
    if (now - mark.at <= 3 * interval + 1000) {
        return ['Live · updated ' + age + ' s ago', 'status-pill status-live'];
    }
    return ['No updates for ' + age + ' s', 'status-pill status-stale'];
}
"""


def register_callbacks(app, state):
    """Wire the page's callbacks to `state`'s buffer and pool."""
    updater = PageUpdater(state)
    app.callback(
        [Output(component_id, prop) for component_id, prop in OUTPUTS],
        Input("refresh", "n_intervals"),
        Input("tool-filter", "value"),
        Input("time-range", "value"),
        State("render-state", "data"),
    )(updater.__call__)
    app.clientside_callback(
        CONNECTION_STATUS_JS,
        Output("connection-status", "children"),
        Output("connection-status", "className"),
        Input("render-state", "data"),
        Input("refresh", "n_intervals"),
        State("refresh", "interval"),
    )
    register_download_callback(app, state)
    return updater
