"""The dashboard page: a navbar with the controls, metric cards, the overview and tool sections, recent events."""

import dash_bootstrap_components as dbc
from dash import dcc, html

from dash_app.figures import empty_figure
from dash_app.layouts.controls import time_range_dropdown, tool_dropdown

GRAPH_CONFIG: dcc.Graph.Config = {
    "displaylogo": False,
    "responsive": True,
    # Drag to zoom, double-click to return to the live window; the mode bar would cover the legends.
    "displayModeBar": False,
}
HIDDEN = {"display": "none"}
SHOWN: dict[str, str] = {}

# Gutters between cards and panels (Bootstrap's g-3, 1 rem) and the same space below each row.
ROW_CLASS = "g-3 mb-3"


def metric_card(card_id, label, hint):
    """Return one metric card; the callback fills the element `card_id`."""
    return dbc.Card(
        dbc.CardBody(
            [
                html.Div(label, className="card-label"),
                html.Div("–", id=card_id, className="card-value"),
                html.Div(hint, className="card-hint"),
            ]
        ),
        class_name="metric-card h-100",
    )


def panel_header(title, hint):
    """Return a panel's card header: a small title and a muted hint beside it."""
    return dbc.CardHeader(
        [html.H3(title, className="panel-title"), html.Span(hint, className="panel-hint")], class_name="panel-head"
    )


def chart_panel(graph_id, title, hint, size="regular", long_legend=False):
    """Return a titled card around the graph `graph_id`, showing a waiting note until the first update."""
    return dbc.Card(
        [
            panel_header(title, hint),
            dbc.CardBody(
                dcc.Graph(
                    id=graph_id,
                    figure=empty_figure("Waiting for data…"),
                    config=GRAPH_CONFIG,
                    # Heights are set in assets/style.css, so a phone can give a chart whose legend lists every
                    # tool more room. They come in through a variable: without an inline height a responsive
                    # Graph takes 100 % of its parent's height, which is none.
                    className=f"chart-{size}" + (" chart-legend" if long_legend else ""),
                    style={"height": "var(--chart-height)"},
                ),
                class_name="panel-body",
            ),
        ],
        class_name="h-100",
    )


def panel_row(left, right, wide_left=True):
    """Return a row of two panels, side by side from a laptop's width and stacked below it."""
    # A 7/5 split needs the xl width (1200 px) before the narrower panel's labels fit; halves fit from lg.
    if wide_left:
        return dbc.Row([dbc.Col(left, xs=12, xl=7), dbc.Col(right, xs=12, xl=5)], class_name=ROW_CLASS)
    return dbc.Row([dbc.Col(left, xs=12, lg=6), dbc.Col(right, xs=12, lg=6)], class_name=ROW_CLASS)


def control(label, dropdown):
    """Return a dropdown with its label in front; the label wraps it, so clicking the word opens the dropdown."""
    return dbc.Label([html.Span(label, className="control-label"), dropdown], class_name="control mb-0")


def status_pill():
    """Return the connection-status badge as it is before the first update."""
    return dbc.Badge(
        "Connecting…",
        id="connection-status",
        pill=True,
        # Badge puts a colour outside Bootstrap's names into its inline style; a CSS variable lets each
        # status class (see assets/style.css) choose the background.
        color="var(--status-bg)",
        # `className`, not `class_name`: the clientside callback writes `className`, and Badge prefers
        # `class_name` when both are set, so an initial `class_name` would hide every later status.
        className="status-pill status-waiting",
    )


def download_button(label, button_id):
    """Return one small outline button for the dark header that downloads the selected tool's buckets."""
    hint = "Per-minute buckets of the selected tool and window"
    return dbc.Button(label, id=button_id, size="sm", outline=True, color="light", class_name="btn-download", title=hint)


def download_buttons():
    """Return the two download buttons and the `download` component that saves their file."""
    return dbc.Stack(
        [
            download_button("Download CSV", "download-csv"),
            download_button("Download JSON", "download-json"),
            dcc.Download(id="download"),
        ],
        direction="horizontal",
        gap=2,
    )


def controls(tools):
    """Return the tool and window dropdowns and the downloads, each full width on a phone and in one line above."""
    return dbc.Row(
        [
            dbc.Col(control("Tool", tool_dropdown(tools)), xs=12, md="auto"),
            dbc.Col(control("Window", time_range_dropdown()), xs=12, md="auto"),
            dbc.Col(download_buttons(), xs=12, md="auto"),
        ],
        class_name="g-2 gx-md-3 align-items-center justify-content-xxl-end",
    )


def header(tools):
    """Return the navbar: title, connection status and controls; one line on a wide screen, stacked below."""
    brand = html.Div(
        [
            # NavbarBrand is a span: inside the h1 the page keeps its one heading.
            html.H1(dbc.NavbarBrand("License usage", class_name="app-brand"), className="app-title"),
            # The phone's header keeps to the title and the status, so the charts start on the first screen.
            html.Div("Live checkouts across the license pool", className="app-subtitle d-none d-sm-block"),
        ]
    )
    return dbc.Navbar(
        dbc.Container(
            dbc.Row(
                [
                    dbc.Col(brand, xs=True, xxl="auto"),
                    # Beside the title on narrow screens, at the far right when everything fits in one line.
                    dbc.Col(status_pill(), xs="auto", xxl={"size": "auto", "order": "last"}),
                    dbc.Col(controls(tools), xs=12, xxl=True),
                ],
                class_name="gx-3 gy-2 align-items-center flex-grow-1",
            ),
            fluid=True,
        ),
        dark=True,
        # The header's colour lives in assets/style.css; Navbar puts a non-Bootstrap colour into its inline style.
        color="var(--header-bg)",
        class_name="app-header",
    )


def cards(total_licenses):
    """Return the six metric cards: six across on a laptop, three on a tablet, two on a phone."""
    specs = (
        ("borrow-rate", "Borrows", "per minute · all tools"),
        ("overage-rate", "Overage", "of borrows · all tools"),
        ("return-rate", "Returns", "per minute · all tools"),
        ("failure-rate", "Failures", "per minute · all tools"),
        ("active-licenses", "Licenses in use", f"of {total_licenses:,} in the pool"),
        ("buffer-size", "Buffered events", "server-side history"),
    )
    return dbc.Row([dbc.Col(metric_card(*spec), xs=6, md=4, xl=2) for spec in specs], class_name=ROW_CLASS)


def overview():
    """Return the all-tools section: borrows and pool utilisation, then overage checkouts and failures."""
    return html.Section(
        [
            panel_row(
                chart_panel("borrow-chart", "Borrows", "per minute or bin, stacked by tool", size="tall", long_legend=True),
                chart_panel("utilization-chart", "Pool utilisation now", "in commit, overage, available", size="tall"),
            ),
            panel_row(
                chart_panel("overage-chart", "Overage checkouts", "tool colours as above", size="short"),
                chart_panel("failure-chart", "Failed borrows", "by reason", size="short"),
                wide_left=False,
            ),
        ],
        id="overview-section",
        style=SHOWN,
    )


def tool_view():
    """Return the one-tool section, hidden until a tool is picked: its summary card and four charts."""
    return html.Section(
        [
            dbc.Card(id="tool-info", body=True, class_name="tool-info mb-3"),
            panel_row(
                chart_panel("tool-borrow-chart", "Borrows", "hover a bar for its users"),
                chart_panel("tool-commit-chart", "Licenses now", "in commit, overage, available"),
            ),
            panel_row(
                chart_panel("tool-inuse-chart", "Licenses in use", "over the window, with commit and total"),
                chart_panel("tool-user-chart", "Active checkouts by user", "now"),
            ),
        ],
        id="tool-section",
        style=HIDDEN,
    )


def recent_activity():
    """Return the card around the recent-events table that the callback fills."""
    return html.Section(
        dbc.Card(
            [
                panel_header("Recent activity", "newest first"),
                dbc.CardBody(html.Div(id="events-table", className="events-scroll"), class_name="panel-body"),
            ]
        )
    )


def layout(state):
    """Return the page for `state`'s pool, refreshed every config.refresh_ms by the `refresh` interval."""
    status = state.pool.status()
    tools = [entry["tool"] for entry in status]
    total = sum(entry["total"] or 0 for entry in status)
    return html.Div(
        [
            header(tools),
            dbc.Container(
                [cards(total), overview(), tool_view(), recent_activity()],
                fluid=True,
                tag="main",
                class_name="page",
            ),
            dcc.Interval(id="refresh", interval=state.config.refresh_ms),
            # What this tab shows: the view and a signature per output, so updates send only what changed.
            dcc.Store(id="render-state", storage_type="memory"),
        ]
    )
