"""The analyses CapacityService asks for, as functions of a HistoryMirror, by name: a runner calls them in one process
or another (runners.py), so their parameters and results are plain, picklable values."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import pandas as pd

from dash_app.analytics import estate, recommend
from dash_app.analytics import users as people
from dash_app.analytics.capacity import capacity, commit_advice
from dash_app.analytics.chargeback import chargeback, in_group
from dash_app.analytics.mirror import HistoryMirror
from dash_app.analytics.profiles import denials_over_time, duration_curve, hour_of_week
from dash_app.analytics.spec import Spec
from dash_app.directory.mapping import GroupKey, GroupMapping
from dash_app.pressure import DEFAULT_GAP

# A group filter: (the group, the mapping that says who is in it), or None for everyone.
Only = tuple[str, GroupMapping] | None


def _history(
    mirror: HistoryMirror, start: float, end: float, tools: tuple[str, ...] | None, only: Only = None
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Return the sessions and the denials of [start, end), of `tools` only when given, of the group's users at the time."""
    sessions, denials = mirror.load_sessions(start, end, tools), mirror.load_denials(start, end, tools)
    return _of_group(sessions, "borrowed_at", only), _of_group(denials, "ts", only)


def _of_group(frame: pd.DataFrame, column: str, only: Only) -> pd.DataFrame:
    """Return the rows of `frame` whose user is in the group at the time in `column` (all of them without a group)."""
    return frame if only is None else in_group(frame, column, only[1], only[0])


def report(
    mirror: HistoryMirror,
    start: float,
    end: float,
    tools: tuple[str, ...] | None,
    specs: dict[str, Spec],
    billing_days: int,
    gap: float = DEFAULT_GAP,
    queued: Mapping[str, int] | None = None,
    only: Only = None,
) -> tuple[list[dict[str, Any]], list[dict[str, Any]], dict[str, Any]]:
    """Return (capacity rows most pressed first, commit advice, totals) of [start, end) for `specs`' tools (or `tools`)."""
    sessions, denials = _history(mirror, start, end, tools, only)
    rows = capacity(sessions, denials, specs, start, end)
    true_counts = estate.true_denials_per_tool(denials, start, end, gap)
    rows = estate.with_pressure(rows, true_counts, queued or {}, end - start)
    return rows, commit_advice(sessions, specs, start, end, billing_days), estate.totals(rows, specs, start, end, billing_days)


def detail(
    mirror: HistoryMirror, tool: str, start: float, end: float, zone: str, bin_seconds: float, only: Only = None
) -> dict[str, Any]:
    """Return one tool's duration curve, hour-of-week heatmap and denials per bin over [start, end)."""
    sessions, denials = _history(mirror, start, end, (tool,), only)
    return {
        "duration": duration_curve(sessions, tool, start, end),
        "heatmap": hour_of_week(sessions, tool, start, end, zone),
        "denials": denials_over_time(denials, tool, start, end, bin_seconds),
        "bin_seconds": bin_seconds,
    }


def recommendations(
    mirror: HistoryMirror,
    start: float,
    end: float,
    tools: tuple[str, ...] | None,
    specs: dict[str, Spec],
    gap: float,
    rows: list[dict[str, Any]],
    advice: list[dict[str, Any]],
    only: Only = None,
) -> dict[str, Any]:
    """Return buy, drop or keep per capacity row of [start, end) (`rows` and `advice`: the period's report)."""
    sessions, denials = _history(mirror, start, end, tools, only)
    return recommend.recommendations(sessions, denials, specs, start, end, gap, rows, advice)


def users(
    mirror: HistoryMirror,
    start: float,
    end: float,
    tools: tuple[str, ...] | None,
    gap: float,
    limit: int,
    only: Only = None,
) -> list[dict[str, Any]]:
    """Return the top `limit` users of [start, end) by license-hours, each with their tools."""
    sessions, denials = _history(mirror, start, end, tools, only)
    return people.users(sessions, denials, start, end, gap, limit)


def user(mirror: HistoryMirror, name: str, start: float, end: float, gap: float) -> dict[str, Any]:
    """Return one user's figures over [start, end), in all and per tool."""
    sessions, denials = _history(mirror, start, end, None)
    return people.one_user(sessions, denials, name, start, end, gap)


def estate_heatmap(
    mirror: HistoryMirror, start: float, end: float, specs: dict[str, Spec], zone: str, only: Only = None
) -> dict[str, Any]:
    """Return the estate's hour-of-week heatmap of [start, end) in `zone`."""
    sessions = _of_group(mirror.load_sessions(start, end, tuple(specs)), "borrowed_at", only)
    return estate.heatmap(sessions, specs, start, end, zone)


def split(
    mirror: HistoryMirror,
    start: float,
    end: float,
    tools: tuple[str, ...] | None,
    specs: dict[str, Spec],
    billing_days: int,
    mapping: GroupMapping,
    by: GroupKey,
    currency: str,
) -> dict[str, Any]:
    """Return the cost of [start, end) of `specs`' tools split over the mapping's groups or cost centres (`by`)."""
    return chargeback(mirror.load_sessions(start, end, tools), specs, start, end, billing_days, mapping, by, currency)


def warm_up(mirror: HistoryMirror, now: float) -> None:
    """Run a report of the hour before `now` and drop it: pandas' and NumPy's first-use set-up (about 0.4 s of a month's
    first report) is then paid while nobody waits, for 0.05 s."""
    report(mirror, now - 3600.0, now, None, {}, 30)


JOBS: dict[str, Callable[..., Any]] = {
    "report": report,
    "detail": detail,
    "recommendations": recommendations,
    "users": users,
    "user": user,
    "estate": estate_heatmap,
    "chargeback": split,
}
