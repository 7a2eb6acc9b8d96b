"""A column-wise copy of the stored sessions and denials, brought up to date by reading only the rows changed since.

Reading a month of sessions from SQLite costs seconds (a million rows turned into Python objects); the analyses
themselves cost a fraction of that. So an analysis reads this copy: the first refresh reads every row once, and each
later one reads the rows whose `changed` stamp is newer than the newest it has seen (schema v2: the writer stamps every
row it inserts or updates with its transaction's number). Rows leave the database only by a prune, which records its
deleted rows' ids in `pruned_rows`; the copy removes them. Every refresh runs in one read transaction, so the
copy always equals one committed state of the database.

Names (tools, users, reasons) are kept once each, as codes into one table, so the copy costs about 40 bytes a
session; frames handed to the analyses have the shapes `store.sessions.load_sessions` / `load_denials` document.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Collection, Sequence
from contextlib import AbstractContextManager
from dataclasses import replace
from typing import Any

import numpy as np
import pandas as pd
from sqlalchemy import Connection

from dash_app.analytics.bytool import ByTool, Origin, build, mark, merge
from dash_app.analytics.capacity import DENIAL_COLUMNS, SESSION_COLUMNS
from dash_app.analytics.mirror_file import SavedCopy
from dash_app.analytics.mirror_table import Table, holds
from dash_app.store.database import last_stamp, tuples
from dash_app.store.tables import DATABASE_ID

log = logging.getLogger(__name__)

# A read transaction on the database: Store.snapshot, or Snapshots in a process of its own (analytics.runners).
Snapshots = Callable[[], AbstractContextManager[Connection]]

_OPEN = -math.inf  # an open session's returned_at in the rows (SQLite keeps no NaN)

# {indexed}: SQLite's NOT INDEXED for the first read (see refresh), nothing elsewhere.
_SESSIONS_SQL = (
    'SELECT rowid, tool, "user", borrowed_at, coalesce(returned_at, :open), is_overage FROM borrows {indexed} '
    "WHERE changed > :since"
)
_DENIALS_SQL = "SELECT rowid, ts, tool, \"user\", coalesce(reason, '') FROM denials {indexed} WHERE changed > :since"
_COMPLETE_SQL = "SELECT value FROM history_meta WHERE key = 'pruned_rows_complete_after'"
_PRUNED_SQL = 'SELECT tbl, "row" FROM pruned_rows WHERE stamp > :since'
_DATABASE_ID_SQL = f"SELECT value FROM history_meta WHERE key = '{DATABASE_ID}'"
# The newest rows a stamp's transaction left, for checking a loaded copy against the database (_same_tail): a few,
# for one transaction may have written every row (a history imported whole); the `changed` index has them in order.
_TAIL_ROWS = 64
_TAIL = f"changed = :since ORDER BY rowid DESC LIMIT {_TAIL_ROWS}"
_TAIL_SESSIONS_SQL = _SESSIONS_SQL.format(indexed="").replace("changed > :since", _TAIL)
_TAIL_DENIALS_SQL = _DENIALS_SQL.format(indexed="").replace("changed > :since", _TAIL)
_TAIL_PRUNED_SQL = f'SELECT tbl, "row" FROM pruned_rows WHERE stamp = :since ORDER BY "row" DESC LIMIT {_TAIL_ROWS}'

_SESSION_ROW = np.dtype(
    [
        ("rowid", np.int64),
        ("tool", object),
        ("user", object),
        ("borrowed", np.float64),
        ("returned", np.float64),
        ("overage", np.bool_),
    ]
)
_DENIAL_ROW = np.dtype([("rowid", np.int64), ("ts", np.float64), ("tool", object), ("user", object), ("reason", object)])


class HistoryMirror:
    """A copy of the `borrows` (sessions) and `denials` tables, refreshed from the rows changed since the last read."""

    def __init__(self, snapshots: Snapshots) -> None:
        self._snapshots = snapshots
        self._names: list[str] = []
        self._codes: dict[str, int] = {}
        self._name_array: np.ndarray[Any, Any] = np.empty(0, dtype=object)
        self.sessions = Table()
        self.denials = Table()
        self.stamp = -1  # the newest write stamp seen; -1 before the first read
        self.database_id: float | None = None  # the number of the database read (schema version 9)
        self.version = 0  # moves whenever a refresh changed the copy
        self.whole_reads = 0  # how many refreshes read every row (the first, and after a reset)
        self._unverified = False  # adopted from a file, and not yet checked against the database's last transaction
        self._index: ByTool | None = None  # the sessions sorted by tool, as of the last call of `index`
        self._stale: set[int] = set()  # codes of the tools whose rows changed since the index was built

    def reset(self) -> None:
        """Forget everything: the next refresh reads every row (the database file was replaced)."""
        self.sessions, self.denials, self.stamp = Table(), Table(), -1
        self._index, self._stale = None, set()
        self.version += 1

    def index(self) -> ByTool:
        """Return the copy's sessions sorted by tool (bytool.py), rebuilding only the tools whose rows changed."""
        if self._index is not None and not self._stale:
            return self._index
        c = self.sessions.columns or self._session_columns([])
        if self._index is None:
            self._index = self._build(c)
        else:
            stale = np.array(sorted(self._stale), dtype=np.int64)
            mine = np.isin(c["tool"], stale)
            self._index = merge(self._index.without(stale), self._build({name: column[mine] for name, column in c.items()}))
        self._stale = set()
        return self._index

    def refresh(self) -> bool:
        """Read what changed since the last refresh; return True when the copy changed."""
        with self._snapshots() as conn:
            newest = last_stamp(conn)
            database_id = conn.exec_driver_sql(_DATABASE_ID_SQL).scalar()
            if self.stamp >= 0 and (
                database_id != self.database_id or newest < self.stamp or (self._unverified and not self._same_tail(conn))
            ):
                # Another database, or another state of this one: a saved copy outlived a file put back by hand, whose
                # new writes may since have reached the copy's stamp (its last transaction's rows then differ).
                log.info("the copy of the history is not of this database's history: reading it whole")
                self.reset()
            self._unverified = False
            self.database_id = database_id
            if self.stamp >= 0 and newest <= self.stamp:
                return False
            complete_after = conn.exec_driver_sql(_COMPLETE_SQL).scalar_one()
            if self.stamp >= 0 and self.stamp < complete_after:
                self.reset()  # the log of pruned rows no longer reaches back to our last read
            first = self.stamp < 0
            self.whole_reads += first
            # The first read takes the whole table in its own order; later ones a range of the `changed` index.
            indexed = "NOT INDEXED" if first and conn.dialect.name == "sqlite" else ""
            params = {"since": self.stamp, "open": _OPEN}
            sessions = tuples(conn, _SESSIONS_SQL.format(indexed=indexed), params)
            denials = tuples(conn, _DENIALS_SQL.format(indexed=indexed), params)
            pruned = [] if first else tuples(conn, _PRUNED_SQL, params)
        if pruned:
            # Rows deleted since our last read go first: a row id the database gave again since is in the delta.
            for table, name in ((self.sessions, "borrows"), (self.denials, "denials")):
                gone = np.array([row for tbl, row in pruned if tbl == name], dtype=np.int64)
                if len(gone) and len(table):
                    leaving = np.isin(table.columns["rowid"], gone)
                    if table is self.sessions:
                        self._stale.update(table.columns["tool"][leaving].tolist())
                    table.keep(~leaving)
        delta = self._session_columns(sessions)
        if self._index is not None and len(delta["rowid"]):
            # The tools of the rows written, before and after (a row rewritten under another tool leaves its old one).
            self._stale.update(np.unique(delta["tool"]).tolist())
            if len(self.sessions):
                held = self.sessions.columns
                at = np.minimum(np.searchsorted(held["rowid"], delta["rowid"]), len(held["rowid"]) - 1)
                self._stale.update(np.unique(held["tool"][at[held["rowid"][at] == delta["rowid"]]]).tolist())
        self.sessions.upsert(delta)
        self.denials.upsert(self._denial_columns(denials))
        self.stamp = newest
        self.version += 1
        return True

    def saved(self) -> SavedCopy | None:
        """Return what a saved copy holds of this one, or None before a read of a numbered database.

        Only the names still in use go into it: a pruned session's user leaves the saved copy with the session.
        """
        if self.stamp < 0 or self.database_id is None:
            return None
        index = self.index()
        d = self.denials.columns or self._denial_columns([])
        used = np.unique(np.concatenate((index.code, index.user, d["tool"], d["user"], d["reason"])))
        recode = np.zeros(len(self._names), dtype=np.int32)
        recode[used] = np.arange(len(used), dtype=np.int32)
        names = [self._names[code] for code in used.tolist()]
        index = replace(
            index,
            code=recode[index.code],
            user=recode[index.user],
            step_code=recode[index.step_code],
            names=np.array(names, dtype=object),
        )
        denials = {name: recode[column] if name in ("tool", "user", "reason") else column for name, column in d.items()}
        return SavedCopy(names, index, denials, self.stamp, self.database_id)

    def adopt(self, copy: SavedCopy) -> None:
        """Take `copy` (saved by an earlier process) as this mirror's contents; the next refresh checks it is current."""
        self._names = list(copy.names)
        self._codes = {name: code for code, name in enumerate(self._names)}
        self._name_array = _texts(self._names)
        index = replace(copy.index, names=self._name_array)
        # The index holds every session column, in tool order: the copy's own order is rowid (seq).
        order = np.argsort(index.seq, kind="stable")
        returned = index.returned[order]
        self.sessions = (
            Table()
            if not len(order)
            else Table(
                {
                    "rowid": index.seq[order],
                    "tool": index.code[order],
                    "user": index.user[order],
                    "borrowed": index.borrowed[order],
                    "returned": np.where(np.isinf(returned), np.nan, returned),
                    "overage": index.overage[order],
                }
            )
        )
        self.denials = Table(dict(copy.denials)) if len(copy.denials["rowid"]) else Table()
        self.stamp, self.database_id = copy.stamp, copy.database_id
        self._index, self._stale = index, set()
        self._unverified = True
        self.version += 1

    def _same_tail(self, conn: Connection) -> bool:
        """Return whether the newest rows the database holds from the copy's last transaction (its stamp) are the copy's.

        A copy is the database as of its stamp: a row of that transaction is in it as it was then, unless written again
        since (its stamp moved on) or deleted since. A history that went back to a backup and on again numbers its rows
        and transactions the same way, but its rows are others: their content differs from the copy's.
        """
        params = {"since": self.stamp, "open": _OPEN}
        sessions = self._session_columns(tuples(conn, _TAIL_SESSIONS_SQL, params))
        denials = self._denial_columns(tuples(conn, _TAIL_DENIALS_SQL, params))
        if not (holds(self.sessions, sessions) and holds(self.denials, denials)):
            return False
        # What that transaction pruned, the copy no longer holds (a row id given again comes in a later transaction).
        for tbl, row in tuples(conn, _TAIL_PRUNED_SQL, params):
            rowids = (self.sessions if tbl == "borrows" else self.denials).columns.get("rowid", np.empty(0, np.int64))
            at = int(np.searchsorted(rowids, row))
            if at < len(rowids) and rowids[at] == row:
                return False
        return True

    def _build(self, c: dict[str, np.ndarray[Any, Any]]) -> ByTool:
        return build(c["tool"], c["borrowed"], c["returned"], c["rowid"], c["overage"], c["user"], self._name_array)

    def _intern(self, values: np.ndarray[Any, Any]) -> np.ndarray[Any, Any]:
        """Return the codes of `values` (strings) in the names table, adding the names not seen before."""
        if not len(values):
            return np.empty(0, dtype=np.int32)
        codes, uniques = pd.factorize(values, use_na_sentinel=False)
        mapping = np.empty(len(uniques), dtype=np.int32)
        added = False
        for i, name in enumerate(uniques):
            if isinstance(name, float) and name != name:
                name = np.nan  # a NULL: one NaN object, found again by identity (NaN equals nothing)
            code = self._codes.get(name)
            if code is None:
                code = self._codes[name] = len(self._names)
                self._names.append(name)
                added = True
            mapping[i] = code
        if added:
            self._name_array = _texts(self._names)
        return mapping[codes]

    def _session_columns(self, rows: Sequence[Any]) -> dict[str, np.ndarray[Any, Any]]:
        array = np.array(rows, dtype=_SESSION_ROW) if rows else np.empty(0, dtype=_SESSION_ROW)
        returned = array["returned"].copy()
        returned[returned == _OPEN] = np.nan
        return {
            "rowid": array["rowid"].copy(),
            "tool": self._intern(array["tool"]),
            "user": self._intern(array["user"]),
            "borrowed": array["borrowed"].copy(),
            "returned": returned,
            "overage": array["overage"].copy(),
        }

    def _denial_columns(self, rows: Sequence[Any]) -> dict[str, np.ndarray[Any, Any]]:
        array = np.array(rows, dtype=_DENIAL_ROW) if rows else np.empty(0, dtype=_DENIAL_ROW)
        return {
            "rowid": array["rowid"].copy(),
            "ts": array["ts"].copy(),
            "tool": self._intern(array["tool"]),
            "user": self._intern(array["user"]),
            "reason": self._intern(array["reason"]),
        }

    def _tool_mask(self, codes: np.ndarray[Any, Any], tools: Collection[str] | None) -> np.ndarray[Any, Any] | None:
        if tools is None:
            return None
        wanted = [self._codes[t] for t in tools if t in self._codes]
        return np.isin(codes, np.array(wanted, dtype=np.int32))

    def _text(self, codes: np.ndarray[Any, Any]) -> pd.Series:
        return pd.Series(self._name_array[codes], dtype=object, copy=False)

    def load_sessions(self, start: float, end: float, tools: Collection[str] | None = None) -> pd.DataFrame:
        """Return the held sessions overlapping [start, end) as `load_sessions(details=False)` does."""
        c = self.sessions.columns
        if not c:
            return _empty(SESSION_COLUMNS)
        keep = (c["borrowed"] < end) & ~(c["returned"] <= start)
        tool_mask = self._tool_mask(c["tool"], tools)
        if tool_mask is not None:
            keep &= tool_mask
        index = np.flatnonzero(keep)
        index = index[np.lexsort((c["rowid"][index], c["borrowed"][index]))]
        n = len(index)
        nothing = pd.Series(np.full(n, None, dtype=object), dtype=object, copy=False)
        frame = pd.DataFrame(
            {
                "tool": self._text(c["tool"][index]),
                "user": self._text(c["user"][index]),
                "host": nothing,
                "version": nothing,
                "source": nothing,
                "borrowed_at": c["borrowed"][index],
                "returned_at": c["returned"][index],
                "is_overage": c["overage"][index],
                "seq": c["rowid"][index],
            },
            copy=False,
        )
        # capacity() and commit_advice() of this frame read the index instead of hashing and sorting its rows.
        return mark(frame, Origin(self.index(), start, end, None if tools is None else frozenset(tools)))

    def load_denials(self, start: float, end: float, tools: Collection[str] | None = None) -> pd.DataFrame:
        """Return the held denials at times in [start, end) as `load_denials` does."""
        c = self.denials.columns
        if not c:
            return _empty(DENIAL_COLUMNS)
        keep = (c["ts"] >= start) & (c["ts"] < end)
        tool_mask = self._tool_mask(c["tool"], tools)
        if tool_mask is not None:
            keep &= tool_mask
        index = np.flatnonzero(keep)
        index = index[np.lexsort((c["rowid"][index], c["ts"][index]))]
        return pd.DataFrame(
            {
                "ts": c["ts"][index],
                "tool": self._text(c["tool"][index]),
                "user": self._text(c["user"][index]),
                "reason": self._text(c["reason"][index]),
                "seq": c["rowid"][index],
            },
            copy=False,
        )


def _texts(names: list[Any]) -> np.ndarray[Any, Any]:
    """Return the names table as the frames show it: a NULL as None, as the store's own readers give it."""
    return np.array([None if name is np.nan else name for name in names], dtype=object)


def _empty(columns: Sequence[str]) -> pd.DataFrame:
    floats = ("borrowed_at", "returned_at", "ts")
    return pd.DataFrame(
        {
            name: np.empty(
                0, dtype=np.float64 if name in floats else np.int64 if name == "seq" else bool if name == "is_overage" else object
            )
            for name in columns
        }
    )
