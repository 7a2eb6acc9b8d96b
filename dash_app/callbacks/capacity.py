"""Callbacks of the Capacity view: which view the address shows, the period's figures, one tool's curves, the CSV."""

import time
from collections.abc import Collection, Mapping, Sequence
from datetime import UTC, date, datetime, timedelta
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qs, urlencode
from zoneinfo import ZoneInfo

from dash import Input, Output, State, ctx, dcc, no_update

from dash_app.analytics.runners import AnalysisUnavailable
from dash_app.analytics.service import CSV_COLUMNS, iso, month_period, table_rows
from dash_app.auth import viewer as readers
from dash_app.export import to_csv
from dash_app.figures import capacity as charts
from dash_app.layouts.capacity import DEFAULT_PERIOD, PERIODS
from dash_app.layouts.controls import time_zone
from dash_app.layouts.dashboard import HIDDEN, SHOWN
from dash_app.layouts.parts import money
from dash_app.timeutil import EARLIEST_EPOCH, LATEST_EPOCH
from dash_app.web import ApiError

if TYPE_CHECKING:
    from dash import Dash

    from dash_app.figures.common import Figure
    from dash_app.state import AppState

CAPACITY_PATH = "/capacity"
PERIOD_VALUES = {value for value, _ in PERIODS}
# The days a range may name: those the store's instants fall on; the last day's period ends at the next midnight.
FIRST_DATE = datetime.fromtimestamp(EARLIEST_EPOCH, UTC).date()
LAST_DATE = datetime.fromtimestamp(LATEST_EPOCH, UTC).date() - timedelta(days=1)

# Writes the Capacity view's query into the address bar in place, while the address is the Capacity view's.
CAPACITY_QUERY_JS = """
function(query) {
    if (typeof query === 'string' && window.location.pathname.endsWith('/capacity') && window.location.search !== query) {
        window.history.replaceState(window.history.state, '', window.location.pathname + query);
    }
    return window.dash_clientside.no_update;
}
"""


def is_capacity(pathname: object) -> bool:
    """Return whether an address path is the Capacity view's."""
    return isinstance(pathname, str) and pathname.rstrip("/").endswith(CAPACITY_PATH)


def view_from_query(search: object, tools: Collection[str]) -> tuple[str, str | None, str | None, str | None]:
    """Return (period choice, start date, end date, tool) from a /capacity query; bad values fall back to the defaults."""
    query = parse_qs(search[1:] if isinstance(search, str) and search.startswith("?") else "", max_num_fields=20)
    first = {key: values[0] for key, values in query.items()}
    tool = first.get("tool") if first.get("tool") in tools else None
    start_date, end_date = first.get("from"), first.get("to")
    if start_date and end_date and _stored_date(start_date) and _stored_date(end_date) and start_date <= end_date:
        return "range", start_date, end_date, tool
    choice = first.get("period") or first.get("window") or DEFAULT_PERIOD
    return (choice if choice in PERIOD_VALUES and choice != "range" else DEFAULT_PERIOD), None, None, tool


def query_for(choice: str, start_date: str | None, end_date: str | None, tool: str | None) -> str:
    """Return the /capacity query that opens this view."""
    params: dict[str, str] = {}
    if tool:
        params["tool"] = tool
    if choice == "range" and start_date and end_date:
        params.update({"from": start_date, "to": end_date})
    elif choice.isdigit():
        params["window"] = choice
    elif choice != "range":
        params["period"] = choice
    return "?" + urlencode(params) if params else ""


def _date(text: object) -> date | None:
    if not isinstance(text, str):
        return None
    try:
        return datetime.strptime(text[:10], "%Y-%m-%d").date()
    except (TypeError, ValueError):
        return None


def _stored_date(text: object) -> date | None:
    day = _date(text)
    return day if day is not None and FIRST_DATE <= day <= LAST_DATE else None


def checked_period(choice: object, start_date: object, end_date: object) -> str:
    """Return the period choice the controls' values make, or raise ApiError 400 for values the controls cannot send.

    A choice that is no period's falls back to the default; a date the picker holds but no store can (year 9999) is
    refused, naming the control.
    """
    if choice is not None and not isinstance(choice, str):
        raise ApiError(400, "invalid_input", "capacity-period: must be one of the periods")
    for value in (start_date, end_date):
        if value is not None and not isinstance(value, str):
            raise ApiError(400, "invalid_input", "capacity-range: dates must be text, as YYYY-MM-DD")
    choice = choice if choice in PERIOD_VALUES else DEFAULT_PERIOD
    if choice == "range" and any(_date(value) and not _stored_date(value) for value in (start_date, end_date)):
        raise ApiError(400, "invalid_input", f"capacity-range: dates must be between {FIRST_DATE} and {LAST_DATE}")
    return choice


def period_for(
    choice: str, start_date: str | None, end_date: str | None, now: float, zone: str, longest: float
) -> tuple[float, float] | None:
    """Return [start, end) of a period choice in the viewer's zone; a window ends at the start of the current minute."""
    tz = ZoneInfo(zone)
    if choice == "this-month":
        return month_period(now, 0, lambda t: datetime.fromtimestamp(t, tz))
    if choice == "last-month":
        return month_period(now, 1, lambda t: datetime.fromtimestamp(t, tz))
    if choice == "range":
        first, last = _date(start_date), _date(end_date)
        if first is None or last is None or first > last:
            return None
        start = datetime(first.year, first.month, first.day, tzinfo=tz).timestamp()
        following = last + timedelta(days=1)
        end = min(datetime(following.year, following.month, following.day, tzinfo=tz).timestamp(), now)
        start = max(start, now - longest)
        return (start, end) if start < end else None
    seconds = int(choice) if str(choice).isdigit() else int(DEFAULT_PERIOD)
    end = float(int(now // 60) * 60)
    return end - min(seconds, longest), end


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


def register_capacity_callbacks(app: "Dash", state: "AppState") -> None:
    """Wire the Capacity view to `state`'s analytics."""
    service = state.analytics
    currency = state.settings.currency

    def known_tools() -> set[str]:
        return {entry["tool"] for entry in state.pool.status()}

    @app.callback(
        Output("live-page", "style"),
        Output("capacity-section", "style"),
        Output("live-controls", "style"),
        Output("capacity-period", "value"),
        Output("capacity-range", "start_date"),
        Output("capacity-range", "end_date"),
        Output("capacity-tool", "value"),
        Input("url", "pathname"),
        Input("capacity-table", "cellClicked"),
        State("url", "search"),
    )
    def route(pathname: object, clicked: object, search: object) -> tuple[Any, ...]:
        """Show the view the address names (live or Capacity); open a tool when its row is clicked."""
        if ctx.triggered_id == "capacity-table":
            tool = clicked.get("rowId") if isinstance(clicked, dict) else None
            if not isinstance(tool, str) or tool not in known_tools():
                return (no_update,) * 7
            return (no_update,) * 6 + (tool,)
        if not is_capacity(pathname):
            return SHOWN, HIDDEN, SHOWN, no_update, no_update, no_update, no_update
        choice, start_date, end_date, tool = view_from_query(search, known_tools())
        return HIDDEN, SHOWN, HIDDEN, choice, start_date, end_date, tool

    @app.callback(
        Output("capacity-table", "rowData"),
        Output("capacity-tool", "options"),
        Output("capacity-period-text", "children"),
        Output("capacity-range-box", "style"),
        Output("capacity-tool-title", "children"),
        Output("capacity-advice", "children"),
        Output("capacity-duration", "figure"),
        Output("capacity-cost", "figure"),
        Output("capacity-heatmap", "figure"),
        Output("capacity-users", "figure"),
        Output("capacity-denials", "figure"),
        Output("capacity-query", "data"),
        Input("capacity-period", "value"),
        Input("capacity-range", "start_date"),
        Input("capacity-range", "end_date"),
        Input("capacity-tool", "value"),
        Input("tz-select", "value"),
        Input("browser-tz", "data"),
        State("url", "pathname"),
    )
    def update(
        choice: object,
        start_date: str | None,
        end_date: str | None,
        tool: object,
        tz_choice: object,
        browser_zone: object,
        pathname: object,
    ) -> Sequence[Any]:
        """Run (or take from the cache) the period's report and the picked tool's curves."""
        if not is_capacity(pathname):
            return (no_update,) * 12
        choice = checked_period(choice, start_date, end_date)
        if tool is not None and not isinstance(tool, str):
            raise ApiError(400, "invalid_input", "capacity-tool: must be a tool name")
        zone = time_zone(tz_choice, browser_zone)
        range_box = SHOWN if choice == "range" else HIDDEN
        query = query_for(choice, start_date, end_date, tool)
        period = period_for(choice, start_date, end_date, time.time(), zone, service.longest)
        if period is None:
            empty = charts.empty_figure("Pick the first and last day")
            return [], no_update, "Pick the first and last day.", range_box, "", "", *(empty,) * 5, query
        start, end = period
        try:
            report = service.report(start, end)
            detail = service.detail(tool, start, end, zone) if tool in report.tool_names() else None
        except AnalysisUnavailable as exc:
            empty = charts.empty_figure("No figures: the analysis was interrupted")
            return [], no_update, f"{exc}. Pick the period again.", range_box, "", "", *(empty,) * 5, query
        rows = table_rows(report)
        options = [{"label": row["tool"], "value": row["tool"]} for row in rows]
        text = f"{iso(start)} to {iso(end)} · {(end - start) / 86400:.1f} days · costs per this period"
        entry = next((row for row in report.tools if row["tool"] == tool), None) if tool else None
        if entry is None or detail is None:
            empty = charts.empty_figure("Pick a tool in the table or above")
            return rows, options, text, range_box, "", "", *(empty,) * 5, query
        advice = next((a for a in report.advice if a["tool"] == tool), None)
        return (
            rows,
            options,
            text,
            range_box,
            tool,
            advice_text(advice, currency),
            charts.duration_chart(detail["duration"], entry["commit"], entry["total"]),
            charts.cost_chart(advice, currency),
            charts.heatmap_chart(detail["heatmap"], zone),
            users_figure(entry["top_users"], readers.current_viewer().names),
            charts.denials_chart(detail["denials"], detail["bin_seconds"], zone),
            query,
        )

    app.clientside_callback(
        CAPACITY_QUERY_JS,
        Output("capacity-query", "data", allow_duplicate=True),
        Input("capacity-query", "data"),
        prevent_initial_call=True,
    )

    @app.callback(
        Output("capacity-download", "data"),
        Input("capacity-csv", "n_clicks"),
        State("capacity-period", "value"),
        State("capacity-range", "start_date"),
        State("capacity-range", "end_date"),
        State("tz-select", "value"),
        State("browser-tz", "data"),
        prevent_initial_call=True,
    )
    def download(
        _clicks: object, choice: object, start_date: str | None, end_date: str | None, tz_choice: object, browser_zone: object
    ) -> Any:
        """Send the table of the period as CSV."""
        zone = time_zone(tz_choice, browser_zone)
        choice = checked_period(choice, start_date, end_date)
        period = period_for(choice, start_date, end_date, time.time(), zone, service.longest)
        if period is None:
            return no_update
        try:
            report = service.report(*period)
        except AnalysisUnavailable:
            return no_update
        return dcc.send_string(to_csv(table_rows(report), CSV_COLUMNS), "capacity.csv", type="text/csv")
