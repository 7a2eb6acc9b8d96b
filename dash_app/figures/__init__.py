"""Pure figure builders: plain data in, Plotly figure dicts out (no Dash, no buffer, no clock)."""

from dash_app.figures.common import Frame, empty_figure
from dash_app.figures.pools import tool_commit_chart, tool_user_chart, utilization_chart
from dash_app.figures.theme import tool_colors
from dash_app.figures.timeseries import (
    borrow_chart,
    failure_chart,
    in_use_points,
    overage_chart,
    tool_borrow_chart,
    tool_inuse_chart,
)

__all__ = [
    "Frame",
    "borrow_chart",
    "empty_figure",
    "failure_chart",
    "in_use_points",
    "overage_chart",
    "tool_borrow_chart",
    "tool_colors",
    "tool_commit_chart",
    "tool_inuse_chart",
    "tool_user_chart",
    "utilization_chart",
]
