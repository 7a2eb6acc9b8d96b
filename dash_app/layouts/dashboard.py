"""The dashboard page: a navbar with the controls, metric cards, the overview and tool sections, recent events."""

from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

import dash_ag_grid as dag
import dash_bootstrap_components as dbc
from dash import dcc, html

from dash_app.layouts.capacity import capacity_page
from dash_app.layouts.controls import time_range_dropdown, tool_dropdown, tz_dropdown
from dash_app.layouts.panels import ROW_CLASS, chart_panel, grid, panel_row, table_panel

if TYPE_CHECKING:
    from dash_app.state import AppState

HIDDEN = {"display": "none"}
AT_TOTAL_HINT = "Share of the window's minutes in which the most in use reached the total"
TRUE_DENIALS_HINT = "Denials in the window, a user's repeats within --true-denial-minutes counted once"
SHOWN: dict[str, str] = {}


def metric_card(card_id: str, label: str, hint: str) -> dbc.Card:
    """Return one metric card; the callback fills the elements `card_id` and `card_id`-hint."""
    return dbc.Card(
        dbc.CardBody(
            [
                html.Div(label, className="card-label"),
                html.Div("–", id=card_id, className="card-value"),
                html.Div(hint, id=f"{card_id}-hint", className="card-hint"),
            ]
        ),
        class_name="metric-card h-100",
    )


def control(label: str, dropdown: dcc.Dropdown) -> dbc.Label:
    """Return a dropdown with its label in front; the label wraps it, so clicking the word opens the dropdown."""
    return dbc.Label([html.Span(label, className="control-label"), dropdown], class_name="control mb-0")


def status_pill() -> dbc.Badge:
    """Return the connection-status badge as it is before the first update."""
    return dbc.Badge(
        "Connecting…",
        id="connection-status",
        pill=True,
        # Badge puts a colour outside Bootstrap's names into its inline style; a CSS variable lets each
        # status class (see assets/style.css) choose the background.
        color="var(--status-bg)",
        # assets/liveness.js sets the text and swaps the status class on its own timer; no callback writes them.
        className="status-pill status-waiting",
    )


def download_button(label: str, button_id: str) -> dbc.Button:
    """Return one small outline button for the dark header that downloads the selected tool's buckets."""
    hint = "Per-minute buckets of the selected tool and window"
    return dbc.Button(label, id=button_id, size="sm", outline=True, color="light", class_name="btn-download", title=hint)


def download_buttons() -> dbc.Stack:
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


def controls(tools: Iterable[str]) -> dbc.Row:
    """Return the tool and window dropdowns and the downloads, each full width on a phone and in one line above."""
    return dbc.Row(
        [
            dbc.Col(control("Tool", tool_dropdown(tools)), xs=12, md="auto"),
            # On a phone the window and the time zone share a line, and the downloads wait for a wider screen.
            dbc.Col(control("Window", time_range_dropdown()), xs=7, md="auto"),
            dbc.Col(control("Times", tz_dropdown()), xs=5, md="auto"),
            dbc.Col(download_buttons(), xs=12, md="auto", class_name="d-none d-md-block"),
        ],
        class_name="g-2 gx-md-3 align-items-center justify-content-xxl-end",
    )


def header(tools: Iterable[str]) -> dbc.Navbar:
    """Return the navbar: title, connection status and controls; one line on a wide screen, stacked below."""
    brand = html.Div(
        [
            html.Div(
                [
                    # NavbarBrand is a span: inside the h1 the page keeps its one heading.
                    html.H1(dbc.NavbarBrand("License usage", class_name="app-brand"), className="app-title"),
                    dbc.Nav(
                        [
                            dbc.NavLink("Live", href="/", active="exact", id="nav-live"),
                            dbc.NavLink("Capacity", href="/capacity", active="exact", id="nav-capacity"),
                        ],
                        class_name="app-nav",
                    ),
                ],
                className="app-brand-line",
            ),
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
                    dbc.Col(controls(tools), id="live-controls", xs=12, xxl=True),
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


def cards(total_licenses: int) -> dbc.Row:
    """Return the six metric cards: six across on a laptop, three on a tablet, two on a phone."""
    specs = (
        ("borrow-rate", "Borrows", "per minute"),
        ("overage-rate", "Overage", "of borrows"),
        ("return-rate", "Returns", "per minute"),
        ("failure-rate", "Denials", "per minute"),
        ("active-licenses", "Licenses in use", f"of {total_licenses:,} in the pool"),
        ("buffer-size", "Buffered events", "server-side history"),
    )
    return dbc.Row([dbc.Col(metric_card(*spec), xs=6, md=4, xl=2) for spec in specs], class_name=ROW_CLASS)


def tool_table(currency: str) -> dag.AgGrid:
    """Return the `tool-table` grid: every tool, most pressed first, sortable and filterable; a click opens that tool."""
    cost = f"Overage cost ({currency})" if currency else "Overage cost"
    number = {"filter": "agNumberColumnFilter", "type": "rightAligned", "minWidth": 95, "flex": 1}
    pressure = "Pressure: time at total, then true denials, then queued, then peak % of total (docs: the dashboard page)"
    columns = [
        # The place by pressure: the grid's first sort; no filter, as no one looks for the tools ranked 40 to 60.
        {"field": "rank", "headerName": "#", "headerTooltip": pressure, "sort": "asc", **number, "filter": False, "minWidth": 64},
        {"field": "tool", "headerName": "Tool", "filter": "agTextColumnFilter", "minWidth": 200, "flex": 3},
        {"field": "in_use", "headerName": "In use", **number},
        {"field": "total", "headerName": "Total", **number},
        {"field": "use_pct", "headerName": "In use %", **number},
        {"field": "at_total_pct", "headerName": "At total %", "headerTooltip": AT_TOTAL_HINT, **number},
        {"field": "peak", "headerName": "Peak", "headerTooltip": "Most in use at once in the window", **number},
        {"field": "peak_pct", "headerName": "Peak %", "headerTooltip": "Peak as a share of the total", **number},
        {"field": "denials", "headerName": "Denials", "headerTooltip": "Failed borrows in the window", **number},
        {"field": "true_denials", "headerName": "True denials", "headerTooltip": TRUE_DENIALS_HINT, **number},
        {"field": "queued", "headerName": "Queued", "headerTooltip": "Requests queued now at the license servers", **number},
        {"field": "overage_borrows", "headerName": "Overage borrows", "headerTooltip": "In the window", **number},
        {"field": "overage_cost", "headerName": cost, "headerTooltip": "Overage borrows in the window × price", **number},
    ]
    return grid("tool-table", columns, "tool", selectable=True)


def checkouts_columns(zone: str = "UTC", one_tool: bool = False) -> list[dict[str, Any]]:
    """Return the `checkouts-table` columns: the tool (not when one tool is shown), who, since when in `zone`, how long."""
    text = {"filter": "agTextColumnFilter", "minWidth": 100, "flex": 1}
    # Readers who may not see names get none (auth.viewer): a dash says so, as in the events table.
    withheld = {"valueFormatter": {"function": "params.value ? params.value : '—'"}}
    tool = {
        "field": "tool_label",
        "headerName": "Tool",
        # Each tool is named on its first row only; its other rows still filter and hover by their tool.
        "filterValueGetter": {"function": "params.data.tool"},
        "tooltipField": "tool",
        **text,
        "minWidth": 160,
        "flex": 2,
    }
    columns = [
        *([] if one_tool else [tool]),
        {"field": "user", "headerName": "User", **text, **withheld, "minWidth": 130},
        # "Dec 07 10:15" whole, and the zone in a header that wraps rather than cuts it.
        {
            "field": "since",
            "headerName": f"Since ({zone})",
            "minWidth": 135,
            "flex": 1,
            "sortable": False,
            "wrapHeaderText": True,
            "autoHeaderHeight": True,
        },
        # Sorted by the seconds held, shown as "3 h 05 min".
        {
            "field": "held_s",
            "headerName": "Held for",
            "valueFormatter": {"function": "params.data.held"},
            "filter": "agNumberColumnFilter",
            "minWidth": 110,
            "flex": 1,
        },
        {"field": "host", "headerName": "Host", **text, **withheld},
        {"field": "version", "headerName": "Version", **text, "minWidth": 80},
        {"field": "overage", "headerName": "Overage", "minWidth": 80, "flex": 1},
        {"field": "source", "headerName": "Source", **text, "minWidth": 120},
    ]
    return columns


def checkouts_table() -> dag.AgGrid:
    """Return the `checkouts-table` grid: open checkouts, longest held first, each tool's together (rows in their order)."""
    return grid("checkouts-table", checkouts_columns(), "id", filters=False, localeText={"noRowsToShow": "No open checkouts"})


def overview(currency: str) -> html.Section:
    """Return the all-tools section: in use and utilisation, borrows and overage, then every tool and denials."""
    return html.Section(
        [
            panel_row(
                chart_panel(
                    "inuse-chart", "Licenses in use", "peak per bin, % of each tool's total", size="tall", long_legend=True
                ),
                chart_panel("utilization-chart", "Pool utilisation now", "in commit, overage, reserved, available", size="tall"),
            ),
            panel_row(
                chart_panel("borrow-chart", "Borrows", "per bin, stacked by tool", long_legend=True),
                chart_panel("overage-chart", "Overage checkouts", "per bin, stacked by tool", long_legend=True),
                split=(6, 6),
                breakpoint="lg",
            ),
            panel_row(
                table_panel("All tools", "click a row to open the tool · sort and filter by column", tool_table(currency)),
                chart_panel("failure-chart", "Denials", "failed borrows by reason · hover for the tools", size="tall"),
                split=(8, 4),
            ),
        ],
        id="overview-section",
        style=SHOWN,
    )


def tool_view() -> html.Section:
    """Return the one-tool section, hidden until a tool is picked: its summary card and four charts."""
    return html.Section(
        [
            dbc.Card(id="tool-info", body=True, class_name="tool-info mb-3"),
            panel_row(
                chart_panel("tool-inuse-chart", "Licenses in use", "peak per bin, average in the hover"),
                chart_panel("tool-commit-chart", "Licenses now", "in commit, overage, reserved, available"),
            ),
            panel_row(
                chart_panel("tool-borrow-chart", "Borrows", "hover a bar for its users"),
                chart_panel("tool-failure-chart", "Denials", "failed borrows by reason"),
                split=(6, 6),
                breakpoint="lg",
            ),
        ],
        id="tool-section",
        style=HIDDEN,
    )


def activity() -> html.Section:
    """Return the open checkouts beside the recent-events table."""
    return html.Section(
        panel_row(
            table_panel("Open checkouts", "who holds a license now, longest first", checkouts_table()),
            table_panel("Recent activity", "newest first", html.Div(id="events-table", className="events-scroll")),
        )
    )


def stale_slot() -> html.Div:
    """Return the place where assets/liveness.js shows the `stale-banner` while the server does not answer."""
    # Empty for React: the script owns what goes in it, so no re-render takes its banner away.
    return html.Div(id="stale-slot")


def last_answer(refresh_ms: int) -> html.Div:
    """Return the hidden element that holds the server's time of the newest answer, and the refresh interval."""
    # A clientside callback writes each answer's time here; assets/liveness.js reads it on its own timer.
    interval: dict[str, Any] = {"data-refresh-ms": str(refresh_ms)}  # a data-* name is no Python keyword
    return html.Div(id="last-answer", hidden=True, **interval)


def alerts_banner() -> dbc.Alert:
    """Return the banner the refresh opens while any alert fires."""
    return dbc.Alert(id="alerts-banner", color="warning", is_open=False, class_name="alerts-banner mb-3")


def alerts_panel(shown: bool) -> html.Section:
    """Return the panel of recent alerts (firing and resolved); hidden where no alert rules are configured."""
    return html.Section(
        dbc.Row(
            dbc.Col(table_panel("Alerts", "firing and recently resolved, newest first", html.Div(id="alerts-list")), xs=12),
            class_name=ROW_CLASS,
        ),
        id="alerts-section",
        style=SHOWN if shown else HIDDEN,
    )


def tool_notice() -> dbc.Alert:
    """Return the note the page shows when its address names a tool there is none of (it shows all tools instead)."""
    return dbc.Alert(id="tool-notice", color="warning", is_open=False, dismissable=True, class_name="tool-notice mb-3")


def source_strip() -> dbc.Alert:
    """Return the strip the refresh opens while a source of events (a license server, a log) is down."""
    return dbc.Alert(id="source-strip", color="danger", is_open=False, class_name="source-strip mb-3")


def layout(state: "AppState") -> html.Div:
    """Return the page for `state`'s pool, refreshed every config.refresh_ms by the `refresh` interval."""
    status = state.pool.status()
    tools = [entry["tool"] for entry in status]
    total = sum(entry["total"] or 0 for entry in status)
    return html.Div(
        [
            header(tools),
            dbc.Container(
                [
                    stale_slot(),
                    source_strip(),
                    alerts_banner(),
                    html.Div(
                        [
                            tool_notice(),
                            cards(total),
                            overview(state.settings.currency),
                            tool_view(),
                            activity(),
                            alerts_panel(bool(state.alerts.rules)),
                        ],
                        id="live-page",
                    ),
                    capacity_page(state.settings.currency, tools),
                ],
                id="page",
                fluid=True,
                tag="main",
                class_name="page",
            ),
            dcc.Interval(id="refresh", interval=state.settings.refresh_ms),
            last_answer(state.settings.refresh_ms),
            # The view lives in the URL (?tool=&window=&tz=): read once on load, then rewritten in place.
            dcc.Location(id="url", refresh=False),
            # The browser's time zone, read on load.
            dcc.Store(id="browser-tz", storage_type="memory"),
            # Legend entries the user hid, by chart: {graph id: [trace uid, ...]}; sent with every refresh.
            dcc.Store(id="legend-hidden", storage_type="memory", data={}),
            # What this tab shows: the view and a signature per output, so updates send only what changed.
            dcc.Store(id="render-state", storage_type="memory"),
            # The Capacity view's query, written into the address bar while that view is shown.
            dcc.Store(id="capacity-query", storage_type="memory"),
        ]
    )
