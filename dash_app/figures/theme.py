"""The dashboard's look in one place: tool colours, meaning colours, fonts and the layout every chart starts from."""

from collections.abc import Iterable
from typing import Any

# Tools get these in inventory order; reds, ambers and greens are left out because they carry meaning below.
TOOL_PALETTE = (
    "#3b6fd8",  # blue
    "#8b5cf6",  # violet
    "#0ea5b7",  # cyan
    "#d946a8",  # magenta
    "#0f766e",  # dark teal
    "#7c5a3a",  # brown
    "#5b7c99",  # steel
    "#9a9a1a",  # olive
    "#1e3a8a",  # navy
    "#c084fc",  # lilac
)

# The one series that sums the tools a chart does not show on their own.
OTHER_TOOLS_COLOR = "#aab2bd"

IN_COMMIT_COLOR = "#2f9e66"
OVERAGE_COLOR = "#f08c00"
# Reserved licenses are held back for someone, not in use: hatched, so no tool's colour is taken for them.
RESERVED_COLOR = "#ced4da"
RESERVED_PATTERN = {"shape": "/", "fgcolor": "#495057", "size": 7, "solidity": 0.35}
AVAILABLE_COLOR = "#dfe3e8"
COMMIT_LINE_COLOR = "#2f9e66"
TOTAL_LINE_COLOR = "#868e96"

# Failure reasons the pool gives; a log source may report others, which get OTHER_REASON_COLOR.
REASON_LABELS = {"exhausted": "Pool exhausted", "max_overage": "Max overage reached", "unknown_tool": "Unknown tool"}
REASON_COLORS = {"exhausted": "#e03131", "max_overage": "#c2410c", "unknown_tool": "#64748b"}
OTHER_REASON_COLOR = "#a1a1aa"

FONT_FAMILY = 'system-ui, -apple-system, "Segoe UI", Roboto, "Helvetica Neue", Arial, sans-serif'
TEXT_COLOR = "#343a40"
MUTED_COLOR = "#6c757d"
GRID_COLOR = "#edf0f3"


def tool_colors(tools: Iterable[str], shown: Iterable[str] = ()) -> dict[str, str]:
    """Return {tool: colour}: each tool's own colour by its place in `tools`, with the `shown` ones kept distinct.

    A tool's own colour is the palette's entry at its index, so it does not change as data changes. Past the
    palette two tools share a colour; among the (at most palette-sized) `shown`, the highest-ranked claimant of
    each colour keeps it and the others take colours no shown tool owns, in palette order.
    """
    colors = {tool: TOOL_PALETTE[index % len(TOOL_PALETTE)] for index, tool in enumerate(tools)}
    owners: dict[str, str] = {}
    displaced = []
    for tool in shown:
        color = colors.setdefault(tool, TOOL_PALETTE[0])
        if color in owners:
            displaced.append(tool)
        else:
            owners[color] = tool
    free = (color for color in TOOL_PALETTE if color not in owners)
    for tool in displaced:
        colors[tool] = next(free, colors[tool])
    return colors


def reason_color(reason: str) -> str:
    """Return the colour of a failure reason."""
    return REASON_COLORS.get(reason, OTHER_REASON_COLOR)


def base_layout(**overrides: Any) -> dict[str, Any]:
    """Return the layout every chart shares, with `overrides` on top."""
    layout: dict[str, Any] = {
        "font": {"family": FONT_FAMILY, "size": 12, "color": TEXT_COLOR},
        "paper_bgcolor": "rgba(0,0,0,0)",
        "plot_bgcolor": "rgba(0,0,0,0)",
        "margin": {"l": 48, "r": 16, "t": 8, "b": 40},
        "hoverlabel": {"font": {"family": FONT_FAMILY, "size": 12}, "namelength": -1, "align": "left"},
        # Which series are hidden is the page's own state (callbacks/legend.py), sent with every trace.
        "legend": {
            "orientation": "h",
            "x": 0,
            "y": 1.02,
            "yanchor": "bottom",
            "font": {"size": 11},
            "traceorder": "normal",
            # Entries of one width line up in columns; names are cut to fit it (figures/text.py legend_name).
            "entrywidth": 200,
        },
        "showlegend": True,
    }
    layout.update(overrides)
    return layout


def value_axis(title: str | None = None, top: float | None = None, **extra: Any) -> dict[str, Any]:
    """Return a count axis from zero with a light grid; `top` (the largest value) keeps small scales to whole ticks."""
    axis: dict[str, Any] = {
        "rangemode": "tozero",
        "gridcolor": GRID_COLOR,
        "zeroline": False,
        "tickformat": ",d",
        "automargin": True,
        "fixedrange": True,
    }
    if top is not None and top <= 5:
        axis["dtick"] = 1
    if title:
        axis["title"] = {"text": title, "font": {"size": 11, "color": MUTED_COLOR}}
    axis.update(extra)
    return axis
