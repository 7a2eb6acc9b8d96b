"""The Capacity view's Chargeback section: each group's share of the period's cost in a grid and a stacked bar."""

from collections.abc import Mapping, Sequence
from typing import Any

import dash_ag_grid as dag
import dash_bootstrap_components as dbc
from dash import dcc, html
from dash.development.base_component import Component

from dash_app.directory.mapping import UNASSIGNED, UNUSED
from dash_app.figures.common import empty_figure
from dash_app.layouts.capacity_grid import FORMATS, column, money_js, number_js
from dash_app.layouts.panels import GRAPH_CONFIG, ROW_CLASS, grid, panel_header

# What the "By" switch offers: the API's by= values and their names.
BY_CHOICES = (("group", "Group"), ("cost_centre", "Cost centre"))
DEFAULT_BY = "group"
BY_NAMES = dict(BY_CHOICES)
# Each column: (field, full name, definition, kind), the definitions docs/chargeback.md's in a line each.
COLUMNS: tuple[tuple[str, str, str, str], ...] = (
    ("total", "Total", "Commit share plus overage cost", "money"),
    ("commit_share", "Commit share", "The commit cost of each tool times the group's share of its license-hours", "money"),
    ("overage_cost", "Overage cost", "The group's overage borrows started in the period times the overage price", "money"),
    ("license_hours", "License-hours", "Hours the group's users' sessions hold inside the period", "license_hours"),
    ("share", "Share of cost", "The group's total over the estate's", "share"),
    ("tools", "Tools", "Tools the group is charged for in the period", "count"),
)
TOTALS_LABEL = "All groups"
HEADER_HEIGHT = 50
# The page of the documentation that says how to configure groups (the app serves no docs of its own: named, not linked).
DOCS_PAGE = "docs/directory.md"
NO_MAPPING = (
    "No groups are configured, so everyone is in (unassigned). Give --user-groups FILE (a CSV of user,group"
    "[,cost_centre]) or --ldap-url to split the cost over departments and cost centres; "
)
NO_SESSIONS = "Nobody held a license in this period: the commit cost is all on (unused)."
# Below this width a bar is too thin to point at: the chart scrolls sideways in its card instead (a narrow tablet).
PIXELS_PER_GROUP = 10
CHART_MARGIN = 80


def by_switch() -> dbc.RadioItems:
    """Return the "By" switch: the cost split by group or by cost centre, as buttons side by side."""
    return dbc.RadioItems(
        id="chargeback-by",
        options=[{"label": label, "value": value} for value, label in BY_CHOICES],
        value=DEFAULT_BY,
        inline=True,
        class_name="btn-group chargeback-by",
        input_class_name="btn-check",
        label_class_name="btn btn-sm btn-outline-secondary",
        label_checked_class_name="active",
    )


def chargeback_table(currency: str) -> dag.AgGrid:
    """Return the `chargeback-table` grid: one row per group, the costliest first, and a pinned totals row."""
    formats = {**FORMATS, "money": money_js(currency), "license_hours": number_js("params.value", ",.1f") + " + ' h'"}
    unit = f" ({currency})" if currency else ""
    columns: list[dict[str, Any]] = [
        {
            "field": "group",
            "headerName": BY_NAMES[DEFAULT_BY],
            "headerTooltip": "Group: where the users belong (--user-groups, the directory); (unassigned) is nobody's",
            "filter": "agTextColumnFilter",
            "minWidth": 200,
            "flex": 3,
            "pinned": "left",
            "tooltipField": "group",
        }
    ]
    for field, name, definition, kind in COLUMNS:
        columns.append(column(field, name + (unit if kind == "money" else ""), definition, formats[kind]))
        columns[-1]["minWidth"] = 160 if kind == "money" else 120  # an estate's month ("16,491,600.03 EUR") whole
    columns[1]["sort"] = "desc"  # the costliest first
    table = grid(
        "chargeback-table",
        columns,
        "group",
        selectable=True,
        enableBrowserTooltips=True,
        headerHeight=HEADER_HEIGHT,  # two lines of a name: "Commit share (EUR)" wraps on a phone
        suppressColumnVirtualisation=True,
    )
    # The CSV has the numbers as they are (a spreadsheet sums them), not as the grid shows them.
    table.defaultColDef = {**table.defaultColDef, "wrapHeaderText": True, "useValueFormatterForExport": False}
    table.csvExportParams = {"fileName": "chargeback.csv"}
    return table


def chargeback_section(currency: str) -> html.Div:
    """Return the Chargeback section: the "By" switch and the CSV, a note, the grid of groups and their stacked bar."""
    tools = html.Div(
        [
            html.Span("By", className="control-label"),
            by_switch(),
            dbc.Button("Download CSV", id="chargeback-csv", size="sm", outline=True, color="secondary"),
        ],
        className="chargeback-controls",
    )
    chart = dcc.Graph(
        id="chargeback-chart",
        figure=empty_figure("Waiting for the period…"),
        config=GRAPH_CONFIG,
        className="chargeback-chart",
        style={"height": "var(--chart-height)"},
    )
    body = dbc.CardBody(
        [
            tools,
            # Why the split says little (no groups configured, nobody used a license); plain text.
            html.Div(id="chargeback-note", className="chargeback-note", role="status"),
            # The bar over the whole width, sixty groups being many; the grid of their figures below it.
            html.Div(chart, id="chargeback-chart-box", className="chargeback-chart-box"),
            # Whether the screen is a phone's, read once on load: its bars lie down.
            dcc.Store(id="chargeback-narrow", storage_type="memory"),
            chargeback_table(currency),
        ],
        class_name="panel-body",
    )
    card = dbc.Card(
        [panel_header("Chargeback", "the period's cost per group: commit shared by use, overage by who borrowed"), body]
    )
    return html.Div(dbc.Row(dbc.Col(card), class_name=ROW_CLASS), id="capacity-chargeback")


def group_rows(answer: Mapping[str, Any] | None) -> list[dict[str, Any]]:
    """Return the grid's rows of a chargeback answer: each group's figures, its share of the total and its tools."""
    if not answer:
        return []
    whole = ((answer.get("totals") or {}).get("total")) or 0.0
    return [
        {
            "group": group["group"],
            "license_hours": group.get("license_hours") or 0.0,
            "commit_share": group.get("commit_share") or 0.0,
            "overage_cost": group.get("overage_cost") or 0.0,
            "total": group.get("total") or 0.0,
            "share": (group.get("total") or 0.0) / whole if whole else None,
            "tools": sum(1 for entry in group.get("tools") or () if entry.get("total") or entry.get("license_hours")),
        }
        for group in answer.get("groups") or ()
    ]


def totals_row(answer: Mapping[str, Any] | None, rows: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """Return the grid's pinned bottom row: the estate's commit cost, overage cost and total (none without an answer)."""
    totals = (answer or {}).get("totals")
    if not totals:
        return []
    return [
        {
            "group": f"{TOTALS_LABEL} ({len(rows)})",
            "license_hours": round(sum(row["license_hours"] for row in rows), 2),
            "commit_share": totals.get("commit_cost") or 0.0,
            "overage_cost": totals.get("overage_cost") or 0.0,
            "total": totals.get("total") or 0.0,
            "share": 1.0 if totals.get("total") else None,
        }
    ]


def chargeback_note(answer: Mapping[str, Any] | None, configured: bool) -> list[Component | str]:
    """Return what the note says of a chargeback answer: how to configure groups, or that nobody used a license."""
    groups = [group["group"] for group in (answer or {}).get("groups") or () if group.get("license_hours")]
    note: list[Component | str] = []
    if not configured:
        note += [NO_MAPPING, "see ", html.Code(DOCS_PAGE), "."]
    if answer is not None and not groups:
        note += [" " if note else "", NO_SESSIONS]
    return note


def chart_size(groups: int, height: int | None = None) -> dict[str, str]:
    """Return the chart's style for `groups` bars: wide enough to point at each (scrolled sideways in its card if need
    be), or the figure's own `height` (a phone's, the bars lying down)."""
    if height:
        return {"height": f"{height}px"}
    return {"height": "var(--chart-height)", "minWidth": f"{CHART_MARGIN + PIXELS_PER_GROUP * groups}px"}


def group_options(groups: Sequence[str], picked: str | None = None) -> list[dict[str, str]]:
    """Return the group picker's options: the groups by name (case aside), (unassigned) last, a picked one kept; never
    (unused), the commit cost of tools nobody used, which is no one's group."""
    names = {name for name in groups if name != UNUSED}
    if picked:
        names.add(picked)
    ordered = sorted(names - {UNASSIGNED}, key=lambda name: (name.casefold(), name))
    if UNASSIGNED in names:
        ordered.append(UNASSIGNED)
    return [{"label": name, "value": name} for name in ordered]
