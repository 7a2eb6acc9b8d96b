"""The page's controls and their choices: the one home of the time windows and the "All tools" value."""

from collections import namedtuple

from dash import dcc

from dash_app.web import ApiError

TimeRange = namedtuple("TimeRange", "seconds label")

# Windows within the buffer's retention are served from memory per minute; longer ones from the stored history.
TIME_RANGES = (
    TimeRange(60, "Last 1 minute"),
    TimeRange(300, "Last 5 minutes"),
    TimeRange(600, "Last 10 minutes"),
    TimeRange(1800, "Last 30 minutes"),
    TimeRange(3600, "Last 1 hour"),
    TimeRange(10800, "Last 3 hours"),
    TimeRange(21600, "Last 6 hours"),
    TimeRange(86400, "Last 24 hours"),
    TimeRange(604800, "Last 7 days"),
    TimeRange(2592000, "Last 30 days"),
)
DEFAULT_TIME_RANGE = 1800
TIME_RANGE_SECONDS = frozenset(r.seconds for r in TIME_RANGES)

ALL_TOOLS = "__all__"
ALL_TOOLS_LABEL = "All tools"


def tool_options(tools):
    """Return the tool-filter options: "All tools", then every tool by name."""
    return [{"label": ALL_TOOLS_LABEL, "value": ALL_TOOLS}] + [{"label": tool, "value": tool} for tool in tools]


def time_range_dropdown():
    """Return the `time-range` dropdown."""
    return dcc.Dropdown(
        id="time-range",
        options=[{"label": r.label, "value": r.seconds} for r in TIME_RANGES],
        value=DEFAULT_TIME_RANGE,
        clearable=False,
        searchable=False,
        className="control-window",
    )


def tool_dropdown(tools):
    """Return the `tool-filter` dropdown with "All tools" selected."""
    return dcc.Dropdown(
        id="tool-filter",
        options=tool_options(tools),
        value=ALL_TOOLS,
        clearable=False,
        className="control-tool",
    )


def selected_window(value):
    """Return the window in seconds for a `time-range` value, the default for an unknown number.

    Anything but a number is no value the dropdown can send: a 400, not a crash.
    """
    if isinstance(value, bool) or not isinstance(value, (int, float, type(None))):
        raise ApiError(400, "invalid_input", "time-range: must be a number of seconds")
    return value if value in TIME_RANGE_SECONDS else DEFAULT_TIME_RANGE


def selected_tool(value):
    """Return the selected tool, or None for "All tools"; anything but text is refused with a 400."""
    if value is not None and not isinstance(value, str):
        raise ApiError(400, "invalid_input", "tool-filter: must be a tool name")
    return None if value in (None, "", ALL_TOOLS) else value
