"""The dashboard page layout."""

import dash_bootstrap_components as dbc
from dash import dcc, html


def _card(card_id, title):
    return dbc.Card(
        dbc.CardBody([html.Div(title, className="card-label"), html.Div("–", id=card_id, className="card-value")]),
        className="metric-card",
    )


def layout(state):
    """Return the page: metric cards and the borrows chart, refreshed by an interval."""
    return dbc.Container(
        [
            html.Header(
                [html.H1("License usage", className="app-title"), html.Span(id="connection-status", className="connection-status")],
                className="app-header",
            ),
            dbc.Row(
                [
                    dbc.Col(_card("borrow-count", "Borrows buffered")),
                    dbc.Col(_card("return-count", "Returns buffered")),
                    dbc.Col(_card("failure-count", "Failures buffered")),
                    dbc.Col(_card("buffer-size", "Events buffered")),
                ],
                className="g-3 mb-3",
            ),
            dcc.Graph(id="borrow-chart", config={"displaylogo": False}),
            dcc.Interval(id="tick", interval=state.config.refresh_ms),
        ],
        fluid=True,
    )
