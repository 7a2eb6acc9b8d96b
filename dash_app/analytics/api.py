"""GET /analytics/capacity, /commit-advice, /recommendations, /users and /chargeback: a period's figures, as JSON or CSV."""

from collections.abc import Callable
from typing import Any, TypeVar

from flask import Blueprint, Response, jsonify, request

from dash_app import privacy
from dash_app.analytics.runners import AnalysisUnavailable
from dash_app.analytics.service import (
    CHARGEBACK_COLUMNS,
    CSV_COLUMNS,
    RECOMMENDATION_COLUMNS,
    USER_COLUMNS,
    CapacityService,
    GroupError,
    PeriodError,
    Report,
    chargeback_rows,
    period_of,
    table_rows,
)
from dash_app.auth.viewer import current_viewer
from dash_app.directory.mapping import GROUP_KEYS
from dash_app.export import to_csv
from dash_app.state import get_state
from dash_app.web import ApiError

bp = Blueprint("analytics", __name__)

FORMATS = ("json", "csv")
MAX_USERS = 1000
T = TypeVar("T")


def _report() -> tuple[Report, str]:
    """Run (or take from the cache) the report the query asks for; bad parameters are a 400 naming the field."""
    return _answer(lambda service, start, end, tools, group: service.report(start, end, tools, group))


def _answer(run: Callable[[CapacityService, float, float, list[str] | None, str | None], T]) -> tuple[T, str]:
    """Run `run` over the query's period, tools and group; bad parameters are a 400 naming the field."""
    state = get_state()
    service = state.analytics
    fmt = request.args.get("format", "json")
    if fmt not in FORMATS:
        raise ApiError(400, "invalid_query", "format: must be json or csv")
    try:
        start, end = period_of(request.args, service.clock(), service.longest)
    except PeriodError as bad:
        raise ApiError(400, "invalid_query", str(bad)) from None
    tools = request.args.getlist("tool") or None
    if tools is not None and any(not tool or len(tool) > 200 for tool in tools):
        raise ApiError(400, "invalid_query", "tool: must be a tool name")
    group = request.args.get("group")
    if group is not None and (not group or len(group) > 200):
        raise ApiError(400, "invalid_query", "group: must be a group name")
    try:
        return run(service, start, end, tools, group), fmt
    except GroupError as bad:
        raise ApiError(400, "invalid_query", str(bad)) from None
    except AnalysisUnavailable as exc:
        raise ApiError(503, "analysis_unavailable", str(exc)) from None


def _csv(text: str, name: str) -> Response:
    return Response(
        text, content_type="text/csv; charset=utf-8", headers={"Content-Disposition": f'attachment; filename="{name}.csv"'}
    )


@bp.get("/analytics/capacity")
def capacity() -> Response:
    report, fmt = _report()
    if fmt == "csv":
        return _csv(to_csv(table_rows(report), CSV_COLUMNS), "capacity")  # no user names in its columns
    # The report is cached and shared with the page: its top users are shown to this reader on a copy.
    tools = privacy.capacity_tools(report.tools, current_viewer().names)
    return jsonify({**report.period(), "tools": tools, "totals": report.totals})


@bp.get("/analytics/commit-advice")
def commit_advice() -> Response:
    report, fmt = _report()
    if fmt == "csv":
        rows = [
            {"tool": entry["tool"], "commit": point["commit"], "cost": point["cost"]}
            for entry in report.advice
            for point in entry.get("curve") or ()
        ]
        return _csv(to_csv(rows, ("tool", "commit", "cost")), "commit-advice")
    return jsonify({**report.period(), "billing_days": report.billing_days, "tools": report.advice})


@bp.get("/analytics/recommendations")
def recommendations() -> Response:
    answer, fmt = _answer(lambda service, start, end, tools, group: service.recommendations(start, end, tools, group))
    if fmt == "csv":
        return _csv(to_csv(answer["tools"], RECOMMENDATION_COLUMNS), "recommendations")
    return jsonify(answer)


def _limit() -> int:
    raw = request.args.get("limit", "50")
    if not (raw.isascii() and raw.isdigit() and len(raw) <= 4 and 1 <= int(raw) <= MAX_USERS):
        raise ApiError(400, "invalid_query", f"limit: must be a whole number from 1 to {MAX_USERS}")
    return int(raw)


@bp.get("/analytics/users")
def users() -> Response:
    limit = _limit()
    answer: dict[str, Any]
    answer, fmt = _answer(lambda service, start, end, tools, group: service.users(start, end, tools, limit, group))
    shown = privacy.estate_users(answer["users"], current_viewer().names)
    if fmt == "csv":
        return _csv(to_csv(shown, USER_COLUMNS), "users")
    return jsonify({**answer, "users": shown})


@bp.get("/analytics/chargeback")
def chargeback() -> Response:
    # Groups and money only: no user name is in the answer, so every reader gets the same one.
    by = request.args.get("by", "group")
    if by not in GROUP_KEYS:
        raise ApiError(400, "invalid_query", "by: must be group or cost_centre")
    if request.args.get("group") is not None:
        raise ApiError(400, "invalid_query", "group: the chargeback shows every group; it takes by=group|cost_centre")
    answer: dict[str, Any]
    answer, fmt = _answer(lambda service, start, end, tools, _group: service.chargeback(start, end, tools, by))
    if fmt == "csv":
        return _csv(to_csv(chargeback_rows(answer), CHARGEBACK_COLUMNS), "chargeback")
    return jsonify(answer)
