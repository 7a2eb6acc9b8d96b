"""The Capacity view's period and address: what a /capacity query opens, the query a view is, and [start, end)."""

from collections.abc import Collection
from datetime import UTC, date, datetime, timedelta
from urllib.parse import parse_qs, urlencode
from zoneinfo import ZoneInfo

from dash_app.analytics.service import month_period
from dash_app.layouts.capacity import DEFAULT_PERIOD, PERIODS
from dash_app.timeutil import EARLIEST_EPOCH, LATEST_EPOCH
from dash_app.web import ApiError

CAPACITY_PATH = "/capacity"
PERIOD_VALUES = {value for value, _ in PERIODS}
# The controls every period-bound callback reads, in its arguments' order.
PERIOD_INPUTS = (("capacity-period", "value"), ("capacity-range", "start_date"), ("capacity-range", "end_date"))
ZONE_INPUTS = (("tz-select", "value"), ("browser-tz", "data"))
# The days a range may name: those the store's instants fall on; the last day's period ends at the next midnight.
FIRST_DATE = datetime.fromtimestamp(EARLIEST_EPOCH, UTC).date()
LAST_DATE = datetime.fromtimestamp(LATEST_EPOCH, UTC).date() - timedelta(days=1)


def is_capacity(pathname: object) -> bool:
    """Return whether an address path is the Capacity view's."""
    return isinstance(pathname, str) and pathname.rstrip("/").endswith(CAPACITY_PATH)


def query_values(search: object) -> dict[str, str]:
    """Return the first value of each parameter of an address's query (`?a=1&b=2`)."""
    query = parse_qs(search[1:] if isinstance(search, str) and search.startswith("?") else "", max_num_fields=20)
    return {key: values[0] for key, values in query.items()}


def view_from_query(search: object, tools: Collection[str]) -> tuple[str, str | None, str | None, str | None]:
    """Return (period choice, start date, end date, tool) from a /capacity query; bad values fall back to the defaults."""
    first = query_values(search)
    tool = first.get("tool") if first.get("tool") in tools else None
    start_date, end_date = first.get("from"), first.get("to")
    if start_date and end_date and _stored_date(start_date) and _stored_date(end_date) and start_date <= end_date:
        return "range", start_date, end_date, tool
    choice = first.get("period") or first.get("window") or DEFAULT_PERIOD
    return (choice if choice in PERIOD_VALUES and choice != "range" else DEFAULT_PERIOD), None, None, tool


def query_for(
    choice: str, start_date: str | None, end_date: str | None, tool: str | None, user: object = None, group: object = None
) -> str:
    """Return the /capacity query that opens this view (a user's page for a `user`, a group's users for a `group`)."""
    params: dict[str, str] = {"user": user} if isinstance(user, str) and user else {}
    if tool and not params:
        params["tool"] = tool
    if isinstance(group, str) and group and "user" not in params:
        params["group"] = group
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


def resolved(
    choice: object, start_date: object, end_date: object, zone: str, now: float, longest: float
) -> tuple[str, tuple[float, float] | None]:
    """Return (period choice, [start, end) or None) of the controls' values; values they cannot send are a 400."""
    checked = checked_period(choice, start_date, end_date)
    dates = [value if isinstance(value, str) else None for value in (start_date, end_date)]
    return checked, period_for(checked, dates[0], dates[1], now, zone, longest)


def rolling_span(search: object, now: float, longest: float) -> tuple[float, float] | None:
    """Return [start, end) of the grid a /capacity query opens, when the address alone says it: a window ending now,
    for everyone (no ?group=). None for a calendar period or a range of dates (the viewer's zone says when they
    start) and for a group (its report is the group's)."""
    if "group" in query_values(search):
        return None
    choice = view_from_query(search, ())[0]
    return period_for(choice, None, None, now, "UTC", longest) if choice.isdigit() else None
