"""Pieces every view's layout is made of: titled panels around charts and tables, and rows of two of them."""

import dash_bootstrap_components as dbc
from dash import dcc, html

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


def panel_header(title, hint):
    """Return a panel's card header: a small title and a muted hint beside it."""
    return dbc.CardHeader(
        [html.H3(title, className="panel-title"), html.Span(hint, className="panel-hint")], class_name="panel-head"
    )


def table_panel(title, hint, body):
    """Return a titled card around a table."""
    return dbc.Card([panel_header(title, hint), dbc.CardBody(body, class_name="panel-body")], class_name="h-100")


def panel_row(left, right, split=(7, 5), breakpoint="xl"):
    """Return a row of two panels, side by side from `breakpoint` (xl: 1200 px, lg: 992 px) and stacked below it."""
    # A 7/5 split needs the xl width before the narrower panel's labels fit; halves fit from lg.
    return dbc.Row(
        [dbc.Col(left, xs=12, **{breakpoint: split[0]}), dbc.Col(right, xs=12, **{breakpoint: split[1]})],
        class_name=ROW_CLASS,
    )
