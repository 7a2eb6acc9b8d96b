"""Readers of the stored session history (every checkout, kept --history-days) and denials, as pandas DataFrames.

A session is one row of `borrows` (host and version included, where the source said them; source "flexlm" for a
borrow observed in a FlexLM log, "pool" for one this server granted); a denial is one row of `denials`, written with
its failure event. Both are kept for --history-days (HistoryKeeper.prune): a returned
session until its return is that old, an open one as long as it is open.

Shapes (the analytics layer relies on them exactly; the index is a RangeIndex):

load_sessions: tool, user, host, version, source (object: str; host and version None where the source did not say),
    borrowed_at (float64, epoch seconds), returned_at (float64, NaN while open), is_overage (bool), seq (int64, the
    order the session was first recorded in); rows in (borrowed_at, seq) order.
load_denials: ts (float64), tool, user, reason (object: str), seq (int64, recorded order); rows in (ts, seq) order.
"""

from __future__ import annotations

import math
from collections.abc import Collection, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
from sqlalchemy import TextClause, bindparam, text

if TYPE_CHECKING:
    from dash_app.store.database import Store


_TEXT = np.dtype(object)
# One record per row, converted by numpy in one pass (far cheaper than pandas inferring each column).
_SESSION_RECORD = np.dtype(
    [
        ("tool", _TEXT),
        ("user", _TEXT),
        ("host", _TEXT),
        ("version", _TEXT),
        ("source", _TEXT),
        ("borrowed_at", np.float64),
        ("returned_at", np.float64),
        ("is_overage", np.bool_),
        ("seq", np.int64),
    ]
)
_DENIAL_RECORD = np.dtype([("ts", np.float64), ("tool", _TEXT), ("user", _TEXT), ("reason", _TEXT), ("seq", np.int64)])

CONVERT_ROWS = 50_000

# An open session's returned_at in the query's rows (SQLite keeps no NaN); it becomes NaN in the frame.
_OPEN = -math.inf

_SESSION_SELECT = 'SELECT tool, "user", {details}, borrowed_at, {returned}, is_overage, rowid FROM borrows '
_DETAILS = "host, version, source"
# Without details the three columns come back as NULL: a third fewer strings to make, for analyses that need none.
_NO_DETAILS = "NULL, NULL, NULL"
_TOOLS_FILTER = " AND tool IN :tools"
# Two ranges of the borrows_returned index (borrows_tool with a tools filter), never a scan of the table: returned
# sessions by `returned_at > start` (the index also holds borrowed_at, so `borrowed_at < end` is checked without
# reading the row), and open sessions, whose returned_at is NULL, by `returned_at IS NULL`. `OR` in one WHERE would
# leave the choice to the planner; UNION ALL states it.
_SESSIONS_SQL = (
    _SESSION_SELECT.format(returned="returned_at", details="{details}")
    + "WHERE returned_at > :start AND borrowed_at < :end{tools} "
    + "UNION ALL "
    + _SESSION_SELECT.format(returned=":open", details="{details}")
    + "WHERE returned_at IS NULL AND borrowed_at < :end{tools}"
)
# When the period reaches back over (nearly) every stored session, one pass over the table in its own order costs
# less than fetching each row by its index entry ({indexed}: SQLite's NOT INDEXED says so; PostgreSQL's planner sees
# it by itself).
_ALL_SESSIONS_SQL = (
    _SESSION_SELECT.format(returned="coalesce(returned_at, :open)", details="{details}")
    + "{indexed} WHERE borrowed_at < :end AND (returned_at IS NULL OR returned_at > :start)"
)
_WHOLE = 0.9  # the share of the stored returns' time span a period must cover for the one pass
_DENIALS_SQL = 'SELECT ts, tool, "user", reason, rowid FROM denials WHERE ts >= :start AND ts < :end{tools}'


def _params(start: float, end: float, tools: Collection[str] | None) -> dict[str, Any]:
    params: dict[str, Any] = {"start": float(start), "end": float(end), "open": _OPEN}
    if tools is not None:
        params["tools"] = sorted(set(tools))
    return params


def _statement(sql: str, tools: Collection[str] | None) -> TextClause:
    """Return `sql` as a statement; with `tools`, :tools expands to one parameter per name."""
    return text(sql).bindparams(bindparam("tools", expanding=True)) if tools is not None else text(sql)


def _frame(rows: Sequence[Any], record: np.dtype[Any], order: tuple[str, str]) -> pd.DataFrame:
    """Return the rows as a DataFrame whose columns have `record`'s dtypes, sorted by the `order` columns."""
    # In slices: one conversion of a million rows holds the interpreter for over half a second, and a live refresh
    # in another thread would wait that long; slices of CONVERT_ROWS let it in between.
    parts = [np.array(rows[i : i + CONVERT_ROWS], dtype=record) for i in range(0, len(rows), CONVERT_ROWS)]
    array = np.concatenate(parts) if parts else np.empty(0, dtype=record)
    ordered = np.lexsort((array[order[1]], array[order[0]]))
    columns: dict[str, Any] = {}
    for name in record.names or ():
        column = array[name][ordered]  # a contiguous copy, in order
        if name == "returned_at":
            column[column == _OPEN] = np.nan
        columns[name] = pd.Series(column, dtype=object, copy=False) if column.dtype == _TEXT else column
    return pd.DataFrame(columns, copy=False)


def load_sessions(
    store: Store, start: float, end: float, tools: Collection[str] | None = None, details: bool = True
) -> pd.DataFrame:
    """Return the sessions overlapping [start, end): borrowed before `end`, and open or returned after `start`.

    `tools` limits them to those tools (by their exact names). Columns and dtypes: see the module's docstring; with
    `details` False, host, version and source are None (the capacity figures need none of them).
    """
    if tools is not None and not tools:
        return _frame([], _SESSION_RECORD, ("borrowed_at", "seq"))
    if tools is not None:
        sql = _SESSIONS_SQL.format(tools=_TOOLS_FILTER, details="{details}")
    elif _covers_nearly_all(store, start):
        sql = _ALL_SESSIONS_SQL.replace("{indexed}", "NOT INDEXED" if store.dialect == "sqlite" else "")
    else:
        sql = _SESSIONS_SQL.format(tools="", details="{details}")
    sql = sql.replace("{details}", _DETAILS if details else _NO_DETAILS)
    return _frame(store.scan(_statement(sql, tools), _params(start, end, tools)), _SESSION_RECORD, ("borrowed_at", "seq"))


def _covers_nearly_all(store: Store, start: float) -> bool:
    """Return True when `returned_at > start` holds for nearly every stored return (two index look-ups)."""
    # Two subqueries: each is one step to an end of the index (both in one SELECT would walk all of it).
    [(first, last)] = store.scan("SELECT (SELECT MIN(returned_at) FROM borrows), (SELECT MAX(returned_at) FROM borrows)")
    if first is None:
        return True
    return bool(start <= first + (1 - _WHOLE) * (last - first))


def load_denials(store: Store, start: float, end: float, tools: Collection[str] | None = None) -> pd.DataFrame:
    """Return the denials (failed borrows) at times in [start, end), of `tools` only when given."""
    if tools is not None and not tools:
        return _frame([], _DENIAL_RECORD, ("ts", "seq"))
    sql = _DENIALS_SQL.format(tools=_TOOLS_FILTER if tools is not None else "")
    return _frame(store.scan(_statement(sql, tools), _params(start, end, tools)), _DENIAL_RECORD, ("ts", "seq"))
