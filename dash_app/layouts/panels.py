"""Pieces every view's layout is made of: titled panels around charts and tables, and rows of two of them."""

from collections.abc import Sequence
from typing import Any

import dash_ag_grid as dag
import dash_bootstrap_components as dbc
from dash import dcc, html
from dash.development.base_component import Component

from dash_app.figures import empty_figure

GRAPH_CONFIG: dcc.Graph.Config = {
    "displaylogo": False,
    "responsive": True,
    # Drag to zoom, double-click to return to the live window; the mode bar would cover the legends.
    "displayModeBar": False,
    # Plotly's first-click tips float over the page's header; the panel hints say what a click does.
    "showTips": False,
}
# Gutters between cards and panels (Bootstrap's g-3, 1 rem) and the same space below each row.
ROW_CLASS = "g-3 mb-3"


def panel_header(title: str, hint: str) -> dbc.CardHeader:
    """Return a panel's card header: a small title and a muted hint beside it."""
    return dbc.CardHeader(
        [html.H3(title, className="panel-title"), html.Span(hint, className="panel-hint")], class_name="panel-head"
    )


def table_panel(title: str, hint: str, body: Component) -> dbc.Card:
    """Return a titled card around a table."""
    return dbc.Card([panel_header(title, hint), dbc.CardBody(body, class_name="panel-body")], class_name="h-100")


def panel_row(left: Component, right: Component, split: tuple[int, int] = (7, 5), breakpoint: str = "xl") -> dbc.Row:
    """Return a row of two panels, side by side from `breakpoint` (xl: 1200 px, lg: 992 px) and stacked below it."""
    # A 7/5 split needs the xl width before the narrower panel's labels fit; halves fit from lg.
    return dbc.Row(
        [dbc.Col(left, xs=12, **{breakpoint: split[0]}), dbc.Col(right, xs=12, **{breakpoint: split[1]})],
        class_name=ROW_CLASS,
    )


def grid(
    grid_id: str,
    columns: Sequence[dict[str, Any]],
    row_id: str,
    selectable: bool = False,
    filters: bool = True,
    **options: Any,
) -> dag.AgGrid:
    """Return a dash-ag-grid that fills its card: sortable, resizable, rows matched by `row_id` across refreshes.

    Matching rows by id keeps the user's sort, filter and scroll position when the rows are sent again.
    """
    grid_options: dict[str, Any] = {"animateRows": False, **options}
    if selectable:
        grid_options["rowSelection"] = {"mode": "singleRow", "checkboxes": False}
    return dag.AgGrid(
        id=grid_id,
        columnDefs=columns,
        rowData=[],
        defaultColDef={"sortable": True, "resizable": True, "floatingFilter": filters},
        getRowId=f"params.data.{row_id}",
        dashGridOptions=grid_options,
        className="ag-theme-quartz grid",
        style={"height": "var(--grid-height)"},
    )


def chart_panel(
    graph_id: str,
    title: str,
    hint: str,
    size: str = "regular",
    long_legend: bool = False,
    placeholder: str = "Waiting for data…",
) -> dbc.Card:
    """Return a titled card around the graph `graph_id`, showing `placeholder` until the first update."""
    return dbc.Card(
        [
            panel_header(title, hint),
            dbc.CardBody(
                dcc.Graph(
                    id=graph_id,
                    figure=empty_figure(placeholder),
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
