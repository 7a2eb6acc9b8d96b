"""Dash callbacks, registered on each app by the factory."""

import plotly.graph_objects as go
from dash import Input, Output


def register_callbacks(app, state):
    """Wire the page's callbacks to `state`'s buffer."""

    @app.callback(
        Output("borrow-count", "children"),
        Output("return-count", "children"),
        Output("failure-count", "children"),
        Output("buffer-size", "children"),
        Output("borrow-chart", "figure"),
        Input("tick", "n_intervals"),
    )
    def refresh(_n):
        stats = state.buffer.get_stats_summary()
        figure = go.Figure()
        for tool, buckets in state.buffer.aggregate_tool_metrics(1800).items():
            figure.add_scatter(x=[b["timestamp"] for b in buckets], y=[b["count"] for b in buckets], name=tool)
        return stats["borrow_count"], stats["return_count"], stats["failure_count"], stats["total_events"], figure
