"""Dash callbacks, registered on each app by the factory."""

from typing import TYPE_CHECKING, Any

from dash import Input, Output, State, ctx, no_update

from dash_app.callbacks.capacity import is_capacity, register_capacity_callbacks
from dash_app.callbacks.downloads import register_download_callback
from dash_app.callbacks.legend import LEGEND_CHARTS, LEGEND_JS
from dash_app.callbacks.page import OUTPUTS, PageUpdater
from dash_app.layouts import parts
from dash_app.layouts.controls import unknown_tool, view_from_query

if TYPE_CHECKING:
    from dash import Dash

    from dash_app.state import AppState

# Each refresh's answer hands the server's time of its data to assets/liveness.js, which judges the page's freshness
# on its own timer (a Dash callback cannot: none runs while a refresh hangs), and writes its view's query into the
# address bar, in place (no history entry per refresh).
LAST_ANSWER_JS = """
function(renderState) {
    if (!renderState || typeof renderState.updated !== 'number') {
        return window.dash_clientside.no_update;
    }
    var query = renderState.query || '';
    if (!window.location.pathname.endsWith('/capacity') && window.location.search !== query) {
        window.history.replaceState(window.history.state, '', window.location.pathname + query);
    }
    var view = renderState.view || [];
    return JSON.stringify({at: renderState.updated, zone: view[2] || null});
}
"""

# The Capacity link carries the live view's tool (?tool=X), so the Capacity view opens on it; as its address then
# has a query, whether it is the page shown is said here rather than by NavLink's own "exact" match.
CAPACITY_LINK_JS = """
function(renderState, pathname) {
    var view = (renderState && renderState.view) || [];
    var href = '/capacity' + (typeof view[0] === 'string' ? '?tool=' + encodeURIComponent(view[0]) : '');
    return [href, typeof pathname === 'string' && pathname.endsWith('/capacity')];
}
"""

BROWSER_TZ_JS = """
function(_pathname) {
    try { return Intl.DateTimeFormat().resolvedOptions().timeZone || 'UTC'; } catch (e) { return 'UTC'; }
}
"""


def register_callbacks(app: "Dash", state: "AppState") -> PageUpdater:
    """Wire the page's callbacks to `state`'s buffer and pool."""
    updater = PageUpdater(state)
    app.callback(
        [Output(component_id, prop) for component_id, prop in OUTPUTS],
        Input("refresh", "n_intervals"),
        Input("tool-filter", "value"),
        Input("time-range", "value"),
        Input("tz-select", "value"),
        Input("browser-tz", "data"),
        State("render-state", "data"),
        State("legend-hidden", "data"),
        State("url", "pathname"),
    )(updater.__call__)
    app.clientside_callback(LAST_ANSWER_JS, Output("last-answer", "children"), Input("render-state", "data"))
    app.clientside_callback(BROWSER_TZ_JS, Output("browser-tz", "data"), Input("url", "pathname"))
    app.clientside_callback(
        CAPACITY_LINK_JS,
        Output("nav-capacity", "href"),
        Output("nav-capacity", "active"),
        Input("render-state", "data"),
        Input("url", "pathname"),
    )
    app.clientside_callback(
        LEGEND_JS,
        Output("legend-hidden", "data"),
        [Input(graph_id, "restyleData") for graph_id in LEGEND_CHARTS],
        prevent_initial_call=True,
    )

    @app.callback(
        Output("tool-filter", "value"),
        Output("time-range", "value"),
        Output("tz-select", "value"),
        Output("tool-notice", "children"),
        Output("tool-notice", "is_open"),
        Input("url", "search"),
        Input("tool-table", "cellClicked"),
        State("url", "pathname"),
    )
    def navigate(search: object, clicked: object, pathname: object) -> tuple[Any, ...]:
        """Open the view the URL names on load (saying so when it names no tool), and a tool's view when its row is clicked."""
        if is_capacity(pathname):
            return (no_update,) * 5  # the Capacity view reads its own query
        if ctx.triggered_id == "tool-table":
            tool = clicked.get("rowId") if isinstance(clicked, dict) else None
            if not isinstance(tool, str) or tool not in known_tools(state):
                return (no_update,) * 5
            return tool, no_update, no_update, no_update, False
        known = known_tools(state)
        missing = unknown_tool(search, known)
        notice = parts.no_such_tool(missing) if missing is not None else no_update
        return (*view_from_query(search, known), notice, missing is not None)

    register_download_callback(app, state)
    register_capacity_callbacks(app, state)
    return updater


def known_tools(state: "AppState") -> set[str]:
    """Return every tool a view can be opened for: the pool's, and names only the buffer holds."""
    tools = {entry["tool"] for entry in state.pool.status()}
    tools.update(state.buffer.series_stamps())  # the names only: no buckets built for this
    return tools
