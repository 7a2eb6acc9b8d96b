"""The dashboard page: header with controls, metric cards, the overview and tool sections, recent events."""

from dash import dcc, html

from dash_app.figures import empty_figure
from dash_app.layouts.controls import time_range_dropdown, tool_dropdown

GRAPH_CONFIG = {
    "displaylogo": False,
    "responsive": True,
    # Drag to zoom, double-click to return to the live window; the mode bar would cover the legends.
    "displayModeBar": False,
}
HIDDEN = {"display": "none"}
SHOWN = {}


def metric_card(card_id, label, hint):
    """Return one metric card; the callback fills the element `card_id`."""
    return html.Div(
        [
            html.Div(label, className="card-label"),
            html.Div("–", id=card_id, className="card-value"),
            html.Div(hint, className="card-hint"),
        ],
        className="metric-card",
    )


def _panel_head(title, hint):
    return html.Div([html.H3(title, className="panel-title"), html.Span(hint, className="panel-hint")], className="panel-head")


def chart_panel(graph_id, title, hint, height=300):
    """Return a titled panel around the graph `graph_id`, showing a waiting note until the first update."""
    return html.Div(
        [
            _panel_head(title, hint),
            dcc.Graph(
                id=graph_id,
                figure=empty_figure("Waiting for data…"),
                config=GRAPH_CONFIG,
                style={"height": f"{height}px"},
            ),
        ],
        className="panel",
    )


def _header(tools):
    return html.Header(
        html.Div(
            [
                html.Div(
                    [
                        html.H1("License usage", className="app-title"),
                        html.Div("Live checkouts across the license pool", className="app-subtitle"),
                    ],
                    className="brand",
                ),
                html.Div(
                    [
                        html.Label([html.Span("Tool", className="control-label"), tool_dropdown(tools)], className="control"),
                        html.Label([html.Span("Window", className="control-label"), time_range_dropdown()], className="control"),
                        html.Div(
                            [
                                html.Button("Download CSV", id="download-csv", className="btn-download", title="Per-minute buckets of the selected tool and window"),
                                html.Button("Download JSON", id="download-json", className="btn-download", title="Per-minute buckets of the selected tool and window"),
                                dcc.Download(id="download"),
                            ],
                            className="downloads",
                        ),
                        html.Span("Connecting…", id="connection-status", className="status-pill status-waiting"),
                    ],
                    className="controls",
                ),
            ],
            className="app-header-inner",
        ),
        className="app-header",
    )


def _cards(total_licenses):
    return html.Div(
        [
            metric_card("borrow-rate", "Borrows", "per minute · all tools"),
            metric_card("overage-rate", "Overage", "of borrows · all tools"),
            metric_card("return-rate", "Returns", "per minute · all tools"),
            metric_card("failure-rate", "Failures", "per minute · all tools"),
            metric_card("active-licenses", "Licenses in use", f"of {total_licenses:,} in the pool"),
            metric_card("buffer-size", "Buffered events", "server-side history"),
        ],
        className="cards",
    )


def _overview():
    return html.Section(
        [
            html.Div(
                [
                    chart_panel("borrow-chart", "Borrows", "per minute or bin, stacked by tool", height=330),
                    chart_panel("utilization-chart", "Pool utilisation now", "in commit, overage, available", height=330),
                ],
                className="grid grid-wide-left",
            ),
            html.Div(
                [
                    chart_panel("overage-chart", "Overage checkouts", "tool colours as above", height=260),
                    chart_panel("failure-chart", "Failed borrows", "by reason", height=260),
                ],
                className="grid grid-even",
            ),
        ],
        id="overview-section",
        style=SHOWN,
    )


def _tool_view():
    return html.Section(
        [
            html.Div(id="tool-info", className="panel tool-info"),
            html.Div(
                [
                    chart_panel("tool-borrow-chart", "Borrows", "hover a bar for its users"),
                    chart_panel("tool-commit-chart", "Licenses now", "in commit, overage, available"),
                ],
                className="grid grid-wide-left",
            ),
            html.Div(
                [
                    chart_panel("tool-inuse-chart", "Licenses in use", "over the window, with commit and total"),
                    chart_panel("tool-user-chart", "Active checkouts by user", "now"),
                ],
                className="grid grid-wide-left",
            ),
        ],
        id="tool-section",
        style=HIDDEN,
    )


def layout(state):
    """Return the page for `state`'s pool, refreshed every config.refresh_ms by the `refresh` interval."""
    status = state.pool.status()
    tools = [entry["tool"] for entry in status]
    total = sum(entry["total"] or 0 for entry in status)
    return html.Div(
        [
            _header(tools),
            html.Main(
                [
                    _cards(total),
                    _overview(),
                    _tool_view(),
                    html.Section(
                        html.Div(
                            [
                                _panel_head("Recent activity", "newest first"),
                                html.Div(id="events-table", className="events-scroll"),
                            ],
                            className="panel",
                        ),
                    ),
                ],
                className="page",
            ),
            dcc.Interval(id="refresh", interval=state.config.refresh_ms),
            # What this tab shows: the view and a signature per output, so updates send only what changed.
            dcc.Store(id="render-state", storage_type="memory"),
        ]
    )
