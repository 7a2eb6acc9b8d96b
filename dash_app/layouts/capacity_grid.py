"""The Capacity view's grid: every tool's figures over the period, most pressed first, with a pinned totals row."""

import json
from collections.abc import Mapping
from typing import Any

import dash_ag_grid as dag

from dash_app.layouts.panels import grid

# Each column: (field, full name, definition, kind). The definitions are docs/capacity.md's, in a line each; the
# kind picks the column's formatter below.
COLUMNS: tuple[tuple[str, str, str, str], ...] = (
    ("pressure_rank", "Pressure rank", "1 = most pressed: time at total first, then true denials, queued, peak share", "count"),
    ("total", "Total", "Licenses the pool holds", "count"),
    ("commit", "Commit", "Licenses paid for by the commit", "count"),
    ("share_at_total", "Time at total", "Share of the period's time with every license in use", "share"),
    ("peak_share", "Peak of total", "The most in use at once as a share of the total", "share"),
    ("peak_in_use", "Peak in use", "The most licenses held at once (exact, however short)", "count"),
    ("avg_in_use", "Average in use", "Time-weighted mean of the licenses held", "decimal"),
    ("p95", "p95 coverage", "The fewest licenses that cover the demand 95 % of the time", "count"),
    ("seconds_at_or_above_commit", "Hours at or above commit", "Hours with at least the commit in use", "hours"),
    ("seconds_at_total", "Hours at total", "Hours with every license in use", "hours"),
    ("borrows", "Borrows", "Sessions started in the period", "count"),
    ("overage_borrows", "Overage borrows", "Sessions started beyond the commit, each paid at the overage price", "count"),
    ("overage_cost", "Overage cost", "Overage borrows times the overage price", "money"),
    ("denials", "Denials", "Failed borrows, every retry counted", "count"),
    ("true_denials", "True denials", "Denials a user retried within the gap counted once", "count"),
    ("queued", "Queued", "Requests waiting for a license", "count"),
    ("distinct_users", "Users", "People with a session in the period", "count"),
    ("best_commit", "Best commit", "The cheapest commit for this period's use", "count"),
    ("saving", "Saving", "Cost at the current commit minus the cost at the best one", "money"),
)
# The field the pinned row names its line in; the id it gets cannot be a tool's (a tool's row id is its name).
TOTALS_LABEL = "All tools"
# Three lines of a header's name.
HEADER_HEIGHT = 66
TOTAL_FIELDS = ("borrows", "overage_borrows", "overage_cost", "denials", "true_denials")


# dash-ag-grid evaluates a formatter's expression in a scope of its own, which has d3 (its d3-format) but not Intl.
def number_js(value: str, spec: str) -> str:
    """Return JS formatting `value` with d3-format's `spec` (a comma: thousands separated)."""
    return f"d3.format('{spec}')({value})"


FORMATS = {
    "count": number_js("params.value", ",.0f"),
    "decimal": number_js("params.value", ",.2f"),
    "share": number_js("params.value * 100", ",.1~f") + " + ' %'",
    "hours": number_js("params.value / 3600", ",.1f") + " + ' h'",
}


def money_js(currency: str) -> str:
    """Return the grid's money formatter: thousands separated, cents only when there are some, then the currency."""
    unit = json.dumps(f" {currency}" if currency else "")  # a JS string literal: the currency is text, never code
    cents = number_js("params.value", ",.2f")
    return f"({cents}.endsWith('.00') ? {number_js('params.value', ',.0f')} : {cents}) + {unit}"


def column(field: str, name: str, definition: str, formatter: str) -> dict[str, Any]:
    """Return one numeric column: its full name, its definition as the header's tooltip, and its formatter."""
    return {
        "field": field,
        "headerName": name,
        "headerTooltip": f"{name}: {definition}",
        "filter": "agNumberColumnFilter",
        "type": "rightAligned",
        "minWidth": 125,  # the longest word of a name with the sort and menu icons: words never break
        "flex": 1,
        "valueFormatter": {"function": f"params.value == null ? '' : {formatter}"},
    }


def capacity_table(currency: str) -> dag.AgGrid:
    """Return the `capacity-table` grid: every tool's figures for the period, sortable and filterable."""
    formats = {**FORMATS, "money": money_js(currency)}
    unit = f" ({currency})" if currency else ""
    columns = [
        {
            "field": "tool",
            "headerName": "Tool",
            "headerTooltip": "Tool: the licensed feature",
            "filter": "agTextColumnFilter",
            "minWidth": 220,
            "flex": 3,
            "pinned": "left",
            "tooltipField": "tool",
        }
    ]
    for field, name, definition, kind in COLUMNS:
        columns.append(column(field, name + (unit if kind == "money" else ""), definition, formats[kind]))
        if kind == "money":
            columns[-1]["minWidth"] = 150  # a month's estate total ("13,313,100 EUR") whole in the totals row
    columns[1]["sort"] = "asc"  # most pressed first
    # Full names wrap onto up to three lines instead of being cut. The header's height is fixed to hold them: a grown
    # one (autoHeaderHeight) leaves the grid's scroll range short by the growth, and the last row half hidden.
    # Every column is drawn (twenty are few): the headers are all in the page, for finding and for readers.
    table = grid(
        "capacity-table",
        columns,
        "tool",
        selectable=True,
        enableBrowserTooltips=True,
        headerHeight=HEADER_HEIGHT,
        suppressColumnVirtualisation=True,
    )
    table.defaultColDef = {**table.defaultColDef, "wrapHeaderText": True}
    return table


def totals_row(totals: Mapping[str, Any] | None, tools: int) -> list[dict[str, Any]]:
    """Return the grid's pinned bottom row: the period's totals over every tool (none when the report has none)."""
    if not totals:
        return []
    return [{"tool": f"{TOTALS_LABEL} ({tools})", **{field: totals.get(field) for field in TOTAL_FIELDS}}]
