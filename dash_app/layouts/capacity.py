"""The Capacity view at /capacity: a period, every tool's figures in a grid, and one tool's curves."""

from collections.abc import Iterable

import dash_bootstrap_components as dbc
from dash import dcc, html
from dash.development.base_component import Component

from dash_app.layouts.capacity_grid import capacity_table
from dash_app.layouts.capacity_user import user_section
from dash_app.layouts.chargeback import chargeback_section
from dash_app.layouts.estate import estate_panels
from dash_app.layouts.panels import ROW_CLASS, chart_panel, panel_row, table_panel

# The period picker's choices: windows ending now, calendar months in the viewer's zone, or a range of dates.
PERIODS = (
    ("86400", "Last 24 hours"),
    ("604800", "Last 7 days"),
    ("2592000", "Last 30 days"),
    ("this-month", "This month"),
    ("last-month", "Last month"),
    ("range", "Dates…"),
)
DEFAULT_PERIOD = "604800"
# The tool picker's list: about nine options at once, so a long estate is scrolled a screen at a time.
PICKER_HEIGHT = 400


def tool_options(tools: Iterable[str]) -> list[dict[str, str]]:
    """Return the tool picker's options: every tool, by name (case aside), as text."""
    return [{"label": tool, "value": tool} for tool in sorted(set(tools), key=lambda name: (name.casefold(), name))]


def chart(graph_id: str, title: str, hint: str) -> dbc.Card:
    """Return a titled card around one of the view's charts, empty until a tool is picked."""
    return chart_panel(graph_id, title, hint, placeholder="Pick a tool")


def controls(tools: Iterable[str]) -> dbc.Row:
    """Return the period picker, the date range it opens, the tool and group pickers and the CSV download."""
    return dbc.Row(
        [
            dbc.Col(
                dbc.Label(
                    [
                        html.Span("Period", className="control-label"),
                        dcc.Dropdown(
                            id="capacity-period",
                            options=[{"label": label, "value": value} for value, label in PERIODS],
                            value=DEFAULT_PERIOD,
                            clearable=False,
                            searchable=False,
                            className="control-window",
                        ),
                    ],
                    class_name="control mb-0",
                ),
                xs=12,
                md="auto",
            ),
            dbc.Col(
                dcc.DatePickerRange(id="capacity-range", display_format="YYYY-MM-DD", minimum_nights=0),
                id="capacity-range-box",
                xs=12,
                md="auto",
                style={"display": "none"},
            ),
            dbc.Col(
                dbc.Label(
                    [
                        html.Span("Tool", className="control-label"),
                        # The inventory's tools from the start: a value from the address must find its option at once.
                        dcc.Dropdown(
                            id="capacity-tool",
                            options=tool_options(tools),
                            placeholder="Pick a tool",
                            searchable=True,
                            maxHeight=PICKER_HEIGHT,
                            className="control-tool",
                        ),
                    ],
                    class_name="control mb-0",
                ),
                xs=12,
                md="auto",
            ),
            dbc.Col(
                dbc.Label(
                    [
                        html.Span("Group", className="control-label"),
                        # Filters the grid, the tool's curves and the estate's answers to the group's users.
                        dcc.Dropdown(
                            id="capacity-group",
                            options=[],
                            placeholder="All groups",
                            searchable=True,
                            clearable=True,
                            maxHeight=PICKER_HEIGHT,
                            className="control-group",
                        ),
                    ],
                    class_name="control mb-0",
                ),
                xs=12,
                md="auto",
            ),
            dbc.Col(
                [
                    dbc.Button("Download CSV", id="capacity-csv", size="sm", outline=True, color="secondary"),
                    dcc.Download(id="capacity-download"),
                ],
                xs=12,
                md="auto",
            ),
            # Beside the controls where the screen has room for it (1400 px), below them otherwise.
            dbc.Col(html.Div(id="capacity-period-text", className="text-muted small"), xs=12, xxl=True),
        ],
        class_name="g-2 gx-md-3 align-items-center mb-3",
    )


def capacity_page(currency: str, tools: Iterable[str]) -> html.Section:
    """Return the Capacity view, hidden until the address is /capacity."""
    return html.Section(
        [
            controls(tools),
            user_section(),
            # The user's name from ?user=, for the user's page; None for the estate's.
            dcc.Store(id="capacity-user", storage_type="memory"),
            # The period and group the grid shows ([choice, start, end, group]), so controls set to it fetch nothing.
            dcc.Store(id="capacity-shown", storage_type="memory"),
            # What the browser-side callback that installs the pickers' typing writes: nothing.
            html.Div(
                [
                    # Why the address's group= filters nothing; plain text (a name is never HTML).
                    html.Div(id="capacity-group-message", className="capacity-tool-message", role="status"),
                    *tools_part(currency),
                    estate_panels(),
                    chargeback_section(currency),
                ],
                id="capacity-main",
            ),
        ],
        id="capacity-section",
        style={"display": "none"},
    )


def tools_part(currency: str) -> list[Component]:
    """Return the grid of every tool, the picked tool's card and its charts."""
    return [
        dbc.Row(
            dbc.Col(table_panel("Capacity and cost", "every tool over the period · click a row", capacity_table(currency))),
            class_name=ROW_CLASS,
        ),
        dbc.Card(
            dbc.CardBody(
                [
                    # Why the address's tool= opened no tool; plain text (a name is never HTML).
                    html.Div(id="capacity-tool-message", className="capacity-tool-message", role="status"),
                    html.H2(id="capacity-tool-title", className="tool-title"),
                    html.Div(id="capacity-advice", className="capacity-advice"),
                ]
            ),
            id="capacity-tool-card",
            class_name="mb-3 capacity-tool-card",
        ),
        panel_row(
            chart("capacity-duration", "Licenses held over the period", "share of time with at least n held"),
            chart("capacity-cost", "Cost against commit", "commit share plus overage over the period"),
            split=(6, 6),
            breakpoint="lg",
        ),
        panel_row(
            chart("capacity-heatmap", "Hour of week", "mean in use; peak in the hover"),
            chart("capacity-users", "Top users", "license-hours in the period"),
            split=(7, 5),
        ),
        dbc.Row(dbc.Col(chart("capacity-denials", "Denials over time", "failed borrows of the tool")), class_name=ROW_CLASS),
    ]
