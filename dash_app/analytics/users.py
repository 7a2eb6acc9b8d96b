"""People across tools: each user's license-hours per tool, denials, true denials and overage borrows over a period.

Pure functions over the DataFrames capacity.py takes. A user's license-hours are the time their sessions were held
inside the period; denials are those at times inside it; overage borrows are their sessions started in it flagged
overage (docs/capacity.md#users).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from dash_app.analytics.estate import denial_arrays, true_denial_flags
from dash_app.analytics.levels import check_period, prepare

DEFAULT_LIMIT = 50


class _Usage:
    """Per (user, tool) pair of one period: held seconds, denials, true denials and overage borrows, as arrays."""

    def __init__(self, sessions: pd.DataFrame, denials: pd.DataFrame, start: float, end: float, gap: float) -> None:
        check_period(start, end)
        ts, denied_tools, denied_users = denial_arrays(denials, start, end)
        tools, s = prepare(sessions, start, end, set(denied_tools.unique()))
        names = pd.Index(s.users, dtype=object)
        denied_codes = np.asarray(names.get_indexer(denied_users), dtype=np.int64)
        unknown = sorted(set(denied_users[denied_codes < 0].astype(str)))
        self.users = [*s.users, *unknown]
        if unknown:
            denied_codes = np.asarray(pd.Index(self.users, dtype=object).get_indexer(denied_users), dtype=np.int64)
        self.tools = tools
        n_tools = max(len(tools), 1)
        tool_codes = np.asarray(pd.Index(tools, dtype=object).get_indexer(denied_tools), dtype=np.int64)
        flags = true_denial_flags(ts, tool_codes, denied_codes, gap)
        held = np.maximum(np.minimum(s.returned, end) - np.maximum(s.borrowed, start), 0.0)
        overage = s.overage & (s.borrowed >= start)
        session_pairs = s.user * n_tools + s.code
        denial_pairs = denied_codes * n_tools + tool_codes
        pair_codes, pairs = pd.factorize(np.concatenate((session_pairs, denial_pairs)), sort=True)
        pairs = np.asarray(pairs, dtype=np.int64)
        n_pairs, n_sessions = len(pairs), len(session_pairs)
        self.pair_user, self.pair_tool = pairs // n_tools, pairs % n_tools
        of_sessions, of_denials = pair_codes[:n_sessions], pair_codes[n_sessions:]
        self.seconds = np.bincount(of_sessions, weights=held, minlength=n_pairs)
        self.overage = np.bincount(of_sessions[overage], minlength=n_pairs)
        self.denials = np.bincount(of_denials, minlength=n_pairs)
        self.true_denials = np.bincount(of_denials[flags], minlength=n_pairs)

    def per_user(self) -> tuple[np.ndarray[Any, Any], ...]:
        """Return per user code: held seconds, overage borrows, denials, true denials."""
        n = len(self.users)
        return tuple(
            np.bincount(self.pair_user, weights=column, minlength=n)
            for column in (self.seconds, self.overage, self.denials, self.true_denials)
        )


def users(
    sessions: pd.DataFrame, denials: pd.DataFrame, start: float, end: float, gap: float, limit: int = DEFAULT_LIMIT
) -> list[dict[str, Any]]:
    """Return the `limit` users with the most license-hours in the period (then by name), each with their tools."""
    usage = _Usage(sessions, denials, start, end, gap)
    seconds, overage, denied, true = usage.per_user()
    names = np.array(usage.users, dtype=object)
    top = np.lexsort((names, -seconds))[:limit] if len(names) else np.zeros(0, dtype=np.int64)
    # Each top user's tools with held time, most hours first (then by tool name, tools being sorted by name).
    shown = np.isin(usage.pair_user, top) & (usage.seconds > 0)
    pair_index = np.flatnonzero(shown)
    pair_index = pair_index[np.lexsort((usage.pair_tool[pair_index], -usage.seconds[pair_index], usage.pair_user[pair_index]))]
    held_tools: dict[int, list[dict[str, Any]]] = {}
    for k in pair_index.tolist():
        held_tools.setdefault(int(usage.pair_user[k]), []).append(
            {"tool": usage.tools[usage.pair_tool[k]], "license_hours": float(usage.seconds[k]) / 3600.0}
        )
    return [
        {
            "user": usage.users[u],
            "license_hours": float(seconds[u]) / 3600.0,
            "tools": held_tools.get(u, []),
            "denials": int(denied[u]),
            "true_denials": int(true[u]),
            "overage_borrows": int(overage[u]),
        }
        for u in top.tolist()
    ]


def one_user(sessions: pd.DataFrame, denials: pd.DataFrame, name: str, start: float, end: float, gap: float) -> dict[str, Any]:
    """Return one user's license-hours, denials, true denials and overage borrows in the period, in all and per tool."""
    mine = sessions.loc[sessions["user"] == name] if len(sessions) else sessions
    denied = denials.loc[denials["user"] == name] if len(denials) else denials
    usage = _Usage(mine, denied, start, end, gap)
    order = np.lexsort((usage.pair_tool, -usage.seconds))
    tools = [
        {
            "tool": usage.tools[usage.pair_tool[k]],
            "license_hours": float(usage.seconds[k]) / 3600.0,
            "denials": int(usage.denials[k]),
            "true_denials": int(usage.true_denials[k]),
            "overage_borrows": int(usage.overage[k]),
        }
        for k in order.tolist()
    ]
    return {
        "user": name,
        "license_hours": sum(entry["license_hours"] for entry in tools),
        "denials": sum(entry["denials"] for entry in tools),
        "true_denials": sum(entry["true_denials"] for entry in tools),
        "overage_borrows": sum(entry["overage_borrows"] for entry in tools),
        "tools": tools,
    }
