"""The page's controls and their choices: the one home of the time windows, the "All tools" value and time zones."""

import functools
import zoneinfo
from collections.abc import Collection, Iterable
from typing import Any, NamedTuple
from urllib.parse import parse_qs, urlencode

from dash import dcc

from dash_app.web import ApiError


class TimeRange(NamedTuple):
    """One choice of the window dropdown: its length, its label and the short form cards use."""

    seconds: int
    label: str
    short: str


# Windows within the buffer's retention are served from memory per minute; longer ones from the stored history.
TIME_RANGES = (
    TimeRange(60, "Last 1 minute", "1 min"),
    TimeRange(300, "Last 5 minutes", "5 min"),
    TimeRange(600, "Last 10 minutes", "10 min"),
    TimeRange(1800, "Last 30 minutes", "30 min"),
    TimeRange(3600, "Last 1 hour", "1 h"),
    TimeRange(10800, "Last 3 hours", "3 h"),
    TimeRange(21600, "Last 6 hours", "6 h"),
    TimeRange(86400, "Last 24 hours", "24 h"),
    TimeRange(604800, "Last 7 days", "7 days"),
    TimeRange(2592000, "Last 30 days", "30 days"),
)
DEFAULT_TIME_RANGE = 1800
# The unit a card's rate is given in, by window: a rate stays readable (not "0 per minute" over 30 days).
RATE_UNITS = ((6 * 3600, 60, "minute"), (7 * 86400, 3600, "hour"), (float("inf"), 86400, "day"))
TIME_RANGE_SECONDS = frozenset(r.seconds for r in TIME_RANGES)
SHORT_LABELS: dict[float, str] = {r.seconds: r.short for r in TIME_RANGES}

# The time-zone control: the browser's own zone (the default) or UTC; `tz=UTC` in the URL picks UTC.
LOCAL_TIME = "local"
UTC = "UTC"
TZ_OPTIONS = [{"label": "Local time", "value": LOCAL_TIME}, {"label": "UTC", "value": UTC}]

ALL_TOOLS = "__all__"
ALL_TOOLS_LABEL = "All tools"


def rate_unit(window: float) -> tuple[int, str]:
    """Return (seconds, name) of the unit of rates over `window`: a minute up to 6 h, an hour to 7 days, a day beyond."""
    for longest, seconds, name in RATE_UNITS:
        if window <= longest:
            return seconds, name
    raise AssertionError("the last unit takes every window")


# The tool picker's list shows this many pixels of options (a dozen), not Dash's default 200 (three and a half).
TOOL_LIST_HEIGHT = 420


def tool_options(tools: Iterable[str]) -> list[dict[str, str]]:
    """Return the tool-filter options: "All tools", then every tool in name order (case aside), not the inventory's."""
    named = sorted(tools, key=lambda tool: (tool.casefold(), tool))
    return [{"label": ALL_TOOLS_LABEL, "value": ALL_TOOLS}] + [{"label": tool, "value": tool} for tool in named]


def tz_dropdown() -> dcc.Dropdown:
    """Return the `tz-select` dropdown: the browser's time zone or UTC."""
    return dcc.Dropdown(
        id="tz-select", options=TZ_OPTIONS, value=LOCAL_TIME, clearable=False, searchable=False, className="control-tz"
    )


def time_range_dropdown() -> dcc.Dropdown:
    """Return the `time-range` dropdown."""
    return dcc.Dropdown(
        id="time-range",
        options=[{"label": r.label, "value": r.seconds} for r in TIME_RANGES],
        value=DEFAULT_TIME_RANGE,
        clearable=False,
        searchable=False,
        className="control-window",
    )


def tool_dropdown(tools: Iterable[str]) -> dcc.Dropdown:
    """Return the `tool-filter` dropdown with "All tools" selected; typing filters the tools."""
    return dcc.Dropdown(
        id="tool-filter",
        options=tool_options(tools),
        value=ALL_TOOLS,
        clearable=False,
        searchable=True,
        placeholder="Type to find a tool",
        maxHeight=TOOL_LIST_HEIGHT,
        className="control-tool",
    )


def selected_window(value: object) -> float:
    """Return the window in seconds for a `time-range` value, the default for an unknown number.

    Anything but a number is no value the dropdown can send: a 400, not a crash.
    """
    if isinstance(value, bool) or not isinstance(value, (int, float, type(None))):
        raise ApiError(400, "invalid_input", "time-range: must be a number of seconds")
    return value if value in TIME_RANGE_SECONDS else DEFAULT_TIME_RANGE


def selected_tool(value: object) -> str | None:
    """Return the selected tool, or None for "All tools"; anything but text is refused with a 400."""
    if value is not None and not isinstance(value, str):
        raise ApiError(400, "invalid_input", "tool-filter: must be a tool name")
    return None if value in (None, "", ALL_TOOLS) else value


@functools.cache
def _known_zones() -> frozenset[str]:
    return frozenset(zoneinfo.available_timezones())


def time_zone(choice: object, browser_zone: object) -> str:
    """Return the IANA zone the page shows times in: UTC when chosen, else the browser's (UTC when unknown)."""
    if choice == UTC or not isinstance(browser_zone, str):
        return UTC
    # Only names from the zone database: a name from the browser never becomes a file path.
    return browser_zone if browser_zone in _known_zones() else UTC


def _query(search: object) -> dict[str, list[str]]:
    """Return a URL query ("?a=b...") as parse_qs gives it; anything else as no query."""
    return parse_qs(search[1:] if isinstance(search, str) and search.startswith("?") else "", max_num_fields=20)


def view_from_query(search: object, tools: Collection[str]) -> tuple[str, int, str]:
    """Return (tool-filter value, window, tz-select value) from a URL query; each bad value falls back to its default."""
    query = _query(search)
    tool = query.get("tool", [ALL_TOOLS])[0]
    if tool not in tools:
        tool = ALL_TOOLS
    try:
        window = int(query.get("window", [""])[0])
    except ValueError:
        window = DEFAULT_TIME_RANGE
    if window not in TIME_RANGE_SECONDS:
        window = DEFAULT_TIME_RANGE
    tz = UTC if query.get("tz", [""])[0].upper() == UTC else LOCAL_TIME
    return tool, window, tz


def unknown_tool(search: object, tools: Collection[str]) -> str | None:
    """Return the `tool` a URL query names when no tool has that name (a typo, a tool gone), else None."""
    query = _query(search)
    tool = query.get("tool", [ALL_TOOLS])[0]
    return None if tool in tools or tool in ("", ALL_TOOLS) else tool


def query_for_view(tool_value: Any, window_value: Any, tz_value: Any) -> str:
    """Return the URL query (with its "?", or "" for the default view) that opens this view."""
    params = {}
    if isinstance(tool_value, str) and tool_value not in ("", ALL_TOOLS):
        params["tool"] = tool_value
    if window_value in TIME_RANGE_SECONDS and window_value != DEFAULT_TIME_RANGE:
        params["window"] = str(window_value)
    if tz_value == UTC:
        params["tz"] = UTC
    return "?" + urlencode(params) if params else ""
