"""Callbacks of the Capacity view: which view the address shows, the period's figures, one tool's curves, the CSV."""

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from dash import Input, Output, Patch, State, dcc, no_update

from dash_app.analytics.runners import AnalysisUnavailable
from dash_app.analytics.service import CSV_COLUMNS, GroupError, Report, iso, table_rows
from dash_app.auth import viewer as readers
from dash_app.callbacks.capacity_js import CAPACITY_QUERY_JS, ROW_CLICK_JS, SHOW_ROW_JS, VIEW_JS
from dash_app.callbacks.capacity_period import CAPACITY_PATH as CAPACITY_PATH
from dash_app.callbacks.capacity_period import (
    PERIOD_INPUTS,
    ZONE_INPUTS,
    is_capacity,
    query_for,
    query_values,
    resolved,
    view_from_query,
)
from dash_app.callbacks.capacity_prefetch import ReportPrefetch
from dash_app.callbacks.capacity_user import register_user_callbacks
from dash_app.callbacks.chargeback import checked_group, picked_group, register_chargeback_callbacks
from dash_app.callbacks.estate import register_estate_callbacks
from dash_app.export import to_csv
from dash_app.figures import capacity as charts
from dash_app.layouts.capacity import tool_options
from dash_app.layouts.capacity_grid import totals_row
from dash_app.layouts.controls import time_zone
from dash_app.layouts.dashboard import HIDDEN, SHOWN
from dash_app.layouts.parts import money
from dash_app.web import ApiError

if TYPE_CHECKING:
    from dash import Dash

    from dash_app.figures.common import Figure
    from dash_app.state import AppState

NO_TOOL = "Click a tool's row in the grid, or pick it above, for its commit advice and curves."
# The tool's charts, in the order tool_part returns them.
TOOL_CHARTS = ("capacity-duration", "capacity-cost", "capacity-heatmap", "capacity-users", "capacity-denials")
# The tool's part: a title, the advice line and its charts.
TOOL_OUTPUTS = 2 + len(TOOL_CHARTS)
# The grid's part, filled by route for the address's view and by show_period for another period: the rows, the totals
# row, the tool picker's options, the period's line, the range box and what the grid shows (period and group).
GRID_OUTPUTS = (
    ("capacity-table", "rowData"),
    ("capacity-table", "dashGridOptions"),
    ("capacity-tool", "options"),
    ("capacity-period-text", "children"),
    ("capacity-range-box", "style"),
    ("capacity-shown", "data"),
)
# What route sets besides the grid, in its answer's order: the period's controls, the tool and why none, the
# estate's part and the user's, the user, and the group picker (its value, options and why none).
VIEW_OUTPUTS = (
    ("capacity-period", "value"),
    ("capacity-range", "start_date"),
    ("capacity-range", "end_date"),
    ("capacity-tool", "value"),
    ("capacity-tool-message", "children"),
    ("capacity-main", "style"),
    ("capacity-user-section", "style"),
    ("capacity-user", "data"),
    ("capacity-group", "value"),
    ("capacity-group", "options"),
    ("capacity-group-message", "children"),
)


USERS_HIDDEN = "User names are hidden for your role"


def users_figure(top_users: Sequence[Mapping[str, Any]], names: readers.Names) -> "Figure":
    """Return the heaviest users' chart as a reader who sees names as `names` says may see it.

    Pseudonyms stand for the users where names are not shown as they are; where none are shown, an empty chart says
    so. The report's entries are the cache's: they are copied, never changed.
    """
    if names.real:
        return charts.users_chart(top_users)
    if names.mode == readers.HIDDEN:
        return charts.empty_figure(USERS_HIDDEN)
    return charts.users_chart([{**entry, "user": names.user(entry["user"])} for entry in top_users])


def advice_text(advice: Mapping[str, Any] | None, currency: str) -> str:
    """Return what the commit advice says, as a line of text: the best commit and the saving over the period."""
    if advice is None:
        return "No tool picked."
    if advice.get("advice", True) is None or not advice.get("curve"):
        return f"No commit advice: {advice.get('reason') or 'no prices are known for this tool'}."
    saving = advice["saving"] or 0
    if advice["best_commit"] == advice["commit"]:
        return f"Best commit: {advice['best_commit']}, the current one: this period cost {money(advice['cost_now'], currency)}."
    return (
        f"Best commit: {advice['best_commit']} (now {advice['commit']}): "
        f"{money(advice['best_cost'], currency)} instead of {money(advice['cost_now'], currency)} over this period, "
        f"saving {money(saving, currency)}."
    )


def missing_tool_text(search: object, tools: set[str]) -> str:
    """Return why the address's tool= opens no tool ("" when it names one, or none)."""
    asked = query_values(search).get("tool")
    return f"No tool named {asked} in this period." if asked and asked not in tools else ""


def period_text(report: Report, currency: str, group: str | None = None, commit_share: float = 0.0) -> str:
    """Return the line above the grid: the period, its length, whose use (a group's users), and the costs over it.

    For a group, its users' overage and its share of the estate's commit (the chargeback's `commit_share`).
    """
    text = f"{iso(report.start)} to {iso(report.end)} · {(report.end - report.start) / 86400:.1f} days · costs per this period"
    if group:
        text += f" · {group}'s users only"
    totals = report.totals
    if totals:
        commit = money(totals.get("commit_cost") or 0, currency)
        text += f" · overage {money(totals.get('overage_cost') or 0, currency)}, "
        text += f"commit share {money(commit_share, currency)} of {commit}" if group else f"commit {commit}"
    return text


def tool_part(report: Report, detail: Mapping[str, Any], tool: str, zone: str, currency: str) -> list[Any]:
    """Return the tool's title, advice line and five charts from the period's report and its detail."""
    entry = next(row for row in report.tools if row["tool"] == tool)
    advice = next((a for a in report.advice if a["tool"] == tool), None)
    return [
        tool,
        advice_text(advice, currency),
        charts.duration_chart(detail["duration"], entry["commit"], entry["total"]),
        charts.cost_chart(advice, currency),
        charts.heatmap_chart(detail["heatmap"], zone),
        users_figure(entry["top_users"], readers.current_viewer().names),
        charts.denials_chart(detail["denials"], detail["bin_seconds"], zone),
    ]


class CapacityView:
    """The Capacity view's server-side callbacks over `state`'s analytics: the address, the grid, the tool, the CSV."""

    def __init__(self, state: "AppState") -> None:
        self.state, self.service, self.currency = state, state.analytics, state.settings.currency

    def known_tools(self) -> set[str]:
        """Return the inventory's tools: those a /capacity?tool= may name."""
        return {entry["tool"] for entry in self.state.pool.status()}

    def period(self, choice: object, start_date: object, end_date: object, zone: str) -> tuple[str, tuple[float, float] | None]:
        """Return the period choice and its [start, end) now (None for a range not yet picked)."""
        return resolved(choice, start_date, end_date, zone, self.service.clock(), self.service.longest)

    def route(self, pathname: object, search: object, tz_choice: object, browser_zone: object) -> tuple[Any, ...]:
        """Open the Capacity view as its address's query says, its grid filled in (VIEW_JS has shown the view).

        The grid's rows come with the view's controls rather than from show_period's call after them: a round trip
        less before a person sees them.
        """
        if not is_capacity(pathname):
            return (no_update,) * (len(VIEW_OUTPUTS) + len(GRID_OUTPUTS))
        tools = self.known_tools()
        user = query_values(search).get("user") or None
        # A user's page shows that user alone; without one, the estate and its tools.
        parts = (HIDDEN, SHOWN) if user else (SHOWN, HIDDEN)
        group = picked_group(search, self.service.group_names("group"))
        choice, start_date, end_date, tool = view_from_query(search, tools)
        span = self.period(choice, start_date, end_date, time_zone(tz_choice, browser_zone))[1]
        grid = self.period_part(choice, span, group[0])
        return choice, start_date, end_date, tool, missing_tool_text(search, tools), *parts, user, *group, *grid

    def show_period(self, *values: object) -> Sequence[Any]:
        """Fill the grid with the period's report when the controls name another period than the one it shows.

        `values` are the period's controls, the time zone's, the group picker's, what the grid shows and the address's
        path. A tool's pick never comes here.
        """
        choice, start_date, end_date, tz_choice, browser_zone, group, shown, pathname = values
        if not is_capacity(pathname):
            return (no_update,) * len(GRID_OUTPUTS)
        group = checked_group(group)
        choice, span = self.period(choice, start_date, end_date, time_zone(tz_choice, browser_zone))
        if span is not None and shown == [choice, *span, group]:
            return (no_update,) * len(GRID_OUTPUTS)  # the address's view, filled in by route a moment ago
        return self.period_part(choice, span, group)

    def period_part(self, choice: str, span: tuple[float, float] | None, group: str | None) -> list[Any]:
        """Return the grid's rows, its totals row, the tool picker's options, the period's line, the range box's style
        and what the grid then shows (the period and group), for the period `span` of the choice `choice`."""
        range_box = SHOWN if choice == "range" else HIDDEN

        def no_rows(why: str) -> list[Any]:
            return [[], no_update, no_update, why, range_box, None]

        if span is None:
            return no_rows("Pick the first and last day.")
        try:
            report = self.service.report(*span, group=group)
            share = self.commit_share(*span, group) if group else 0.0
        except AnalysisUnavailable as exc:
            return no_rows(f"{exc}. Pick the period again.")
        except GroupError:  # the mapping changed since the picker had it: the group is no more
            return no_rows(f"No group named {group} now. Pick another.")
        rows = table_rows(report)
        # Only the pinned row changes among the grid's options: the rest (sort, selection) stay as the page set them.
        pinned = Patch()
        pinned["pinnedBottomRowData"] = totals_row(report.totals, len(rows))
        options = tool_options(row["tool"] for row in rows)
        return [rows, pinned, options, period_text(report, self.currency, group, share), range_box, [choice, *span, group]]

    def commit_share(self, start: float, end: float, group: str) -> float:
        """Return the group's share of the period's commit cost, as the chargeback splits it (0 for a group that used none)."""
        answer = self.service.chargeback(start, end)
        return next((entry["commit_share"] for entry in answer["groups"] if entry["group"] == group), 0.0)

    def show_tool(self, *values: object) -> Sequence[Any]:
        """Show the picked tool's advice and curves; the grid's rows are not sent again (a row click comes here).

        `values` are the period's controls, the tool, the time zone's controls, the group, the address's path and ?user=.
        """
        choice, start_date, end_date, tool, tz_choice, browser_zone, group, pathname, user = values
        if not is_capacity(pathname):
            return (no_update,) * (TOOL_OUTPUTS + 1)
        if tool is not None and not isinstance(tool, str):
            raise ApiError(400, "invalid_input", "capacity-tool: must be a tool name")
        group = checked_group(group)
        zone = time_zone(tz_choice, browser_zone)
        choice, span = self.period(choice, start_date, end_date, zone)
        first, last = (value if isinstance(value, str) else None for value in (start_date, end_date))
        if span is None:
            empty = charts.empty_figure("Pick the first and last day")
            return "", "", *(empty,) * 5, query_for(choice, first, last, None, user, group)
        shown: str | None = None
        part: list[Any] = ["", NO_TOOL, *(charts.empty_figure("Pick a tool in the table or above"),) * 5]
        try:
            report = self.service.report(*span, group=group) if tool else None
            if tool and report is not None and tool in report.tool_names():
                shown = tool
                detail = self.service.detail(tool, *span, zone, group=group)
                part = tool_part(report, detail, tool, zone, self.currency)
        except AnalysisUnavailable as exc:
            part = ["", f"{exc}. Pick the tool again.", *(charts.empty_figure("No figures: the analysis was interrupted"),) * 5]
        except GroupError:
            part = ["", f"No group named {group} now.", *(charts.empty_figure("Pick another group"),) * 5]
        return [*part, query_for(choice, first, last, shown, user, group)]

    def download(self, *values: object) -> Any:
        """Send the table of the period as CSV (of the picked group's users only when one is picked).

        `values` are the button's clicks, the period's controls, the time zone's and the group picker's.
        """
        _clicks, choice, start_date, end_date, tz_choice, browser_zone, group = values
        group = checked_group(group)
        _choice, span = self.period(choice, start_date, end_date, time_zone(tz_choice, browser_zone))
        if span is None:
            return no_update
        try:
            report = self.service.report(*span, group=group)
        except (AnalysisUnavailable, GroupError):
            return no_update
        return dcc.send_string(to_csv(table_rows(report), CSV_COLUMNS), "capacity.csv", type="text/csv")


def register_capacity_callbacks(app: "Dash", state: "AppState") -> None:
    """Wire the Capacity view to `state`'s analytics."""
    view = CapacityView(state)
    # The address's report is built while the page loads (after the sign-in check: registered after it).
    page = app.config.routes_pathname_prefix.rstrip("/") + CAPACITY_PATH
    app.server.before_request(ReportPrefetch(state.analytics, page).page_requested)
    period = [Input(*part) for part in PERIOD_INPUTS]
    zone = [Input(*part) for part in ZONE_INPUTS]
    app.clientside_callback(
        VIEW_JS,
        Output("live-page", "style"),
        Output("capacity-section", "style"),
        Output("live-controls", "style"),
        Input("url", "pathname"),
    )
    app.callback(
        *(Output(*part) for part in VIEW_OUTPUTS + GRID_OUTPUTS),
        Input("url", "pathname"),
        State("url", "search"),
        *(State(*part) for part in ZONE_INPUTS),
    )(view.route)
    app.callback(
        *(Output(*part, allow_duplicate=True) for part in GRID_OUTPUTS),
        *period,
        *zone,
        Input("capacity-group", "value"),
        State("capacity-shown", "data"),
        State("url", "pathname"),
        prevent_initial_call=True,  # route fills the grid for the address's view
    )(view.show_period)
    app.callback(
        Output("capacity-tool-title", "children"),
        Output("capacity-advice", "children"),
        *(Output(graph_id, "figure") for graph_id in TOOL_CHARTS),
        Output("capacity-query", "data"),
        *period,
        Input("capacity-tool", "value"),
        *zone,
        Input("capacity-group", "value"),
        State("url", "pathname"),
        State("capacity-user", "data"),
    )(view.show_tool)
    app.callback(
        Output("capacity-download", "data"),
        Input("capacity-csv", "n_clicks"),
        *(State(*part) for part in PERIOD_INPUTS + ZONE_INPUTS),
        State("capacity-group", "value"),
        prevent_initial_call=True,
    )(view.download)
    app.clientside_callback(
        CAPACITY_QUERY_JS,
        Output("capacity-query", "data", allow_duplicate=True),
        Input("capacity-query", "data"),
        prevent_initial_call=True,
    )
    app.clientside_callback(
        ROW_CLICK_JS,
        Output("capacity-tool", "value", allow_duplicate=True),
        Input("capacity-table", "cellClicked"),
        prevent_initial_call=True,
    )
    app.clientside_callback(
        SHOW_ROW_JS,
        Output("capacity-tool-message", "children", allow_duplicate=True),
        Output("capacity-table", "selectedRows"),
        Input("capacity-tool", "value"),
        Input("capacity-table", "rowData"),
        prevent_initial_call=True,
    )
    register_estate_callbacks(app, state)
    register_user_callbacks(app, state)
    register_chargeback_callbacks(app, state)
