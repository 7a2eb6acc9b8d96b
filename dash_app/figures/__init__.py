"""Pure figure builders: plain data in, Plotly figure dicts out (no Dash, no buffer, no clock)."""

from dash_app.figures.common import Frame, autorange_limits, empty_figure
from dash_app.figures.in_use import inuse_chart, tool_inuse_chart
from dash_app.figures.pools import tool_commit_chart, utilization_chart
from dash_app.figures.theme import tool_colors
from dash_app.figures.timeseries import (
    OTHER_KEY,
    OTHER_TOOLS,
    borrow_chart,
    failure_chart,
    overage_chart,
    tool_borrow_chart,
)

__all__ = [
    "OTHER_KEY",
    "OTHER_TOOLS",
    "Frame",
    "autorange_limits",
    "borrow_chart",
    "empty_figure",
    "failure_chart",
    "inuse_chart",
    "overage_chart",
    "tool_borrow_chart",
    "tool_colors",
    "tool_commit_chart",
    "tool_inuse_chart",
    "utilization_chart",
]
