"""The analyses CapacityService asks for, as functions of a HistoryMirror, by name: a runner calls them in one process
or another (runners.py), so their parameters and results are plain, picklable values."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from dash_app.analytics.capacity import capacity, commit_advice
from dash_app.analytics.mirror import HistoryMirror
from dash_app.analytics.profiles import denials_over_time, duration_curve, hour_of_week
from dash_app.analytics.spec import Spec


def report(
    mirror: HistoryMirror, start: float, end: float, tools: tuple[str, ...] | None, specs: dict[str, Spec], billing_days: int
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Return (capacity rows, commit advice) of [start, end) for `specs`' tools, of `tools` only when given."""
    sessions = mirror.load_sessions(start, end, tools)
    denials = mirror.load_denials(start, end, tools)
    return capacity(sessions, denials, specs, start, end), commit_advice(sessions, specs, start, end, billing_days)


def detail(mirror: HistoryMirror, tool: str, start: float, end: float, zone: str, bin_seconds: float) -> dict[str, Any]:
    """Return one tool's duration curve, hour-of-week heatmap and denials per bin over [start, end)."""
    sessions = mirror.load_sessions(start, end, (tool,))
    denials = mirror.load_denials(start, end, (tool,))
    return {
        "duration": duration_curve(sessions, tool, start, end),
        "heatmap": hour_of_week(sessions, tool, start, end, zone),
        "denials": denials_over_time(denials, tool, start, end, bin_seconds),
        "bin_seconds": bin_seconds,
    }


JOBS: dict[str, Callable[..., Any]] = {"report": report, "detail": detail}
