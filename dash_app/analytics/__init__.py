"""Pure analytics over stored sessions and denials: capacity, coverage, overage and commit advice per tool."""

from dash_app.analytics.capacity import (
    COVERAGE_PERCENTS,
    DENIAL_COLUMNS,
    NO_SPEC,
    SESSION_COLUMNS,
    TOP_USERS,
    Spec,
    capacity,
    commit_advice,
    empty_denials,
    empty_sessions,
    specs_from_tools,
)
from dash_app.analytics.profiles import denials_over_time, duration_curve, hour_of_week

__all__ = [
    "COVERAGE_PERCENTS",
    "DENIAL_COLUMNS",
    "NO_SPEC",
    "SESSION_COLUMNS",
    "TOP_USERS",
    "Spec",
    "capacity",
    "commit_advice",
    "denials_over_time",
    "duration_curve",
    "empty_denials",
    "empty_sessions",
    "hour_of_week",
    "specs_from_tools",
]
