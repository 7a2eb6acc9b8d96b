"""One table's rows as the analyses' copy of the history keeps them (analytics/mirror.py): NumPy columns in rowid order."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np


@dataclass
class Table:
    """Columns of one table's rows, in rowid order; text columns are codes into the mirror's names."""

    columns: dict[str, np.ndarray[Any, Any]] = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.columns["rowid"]) if self.columns else 0

    def keep(self, mask: np.ndarray[Any, Any]) -> None:
        """Keep the rows where `mask` is true."""
        if not mask.all():
            self.columns = {name: column[mask] for name, column in self.columns.items()}

    def upsert(self, delta: dict[str, np.ndarray[Any, Any]]) -> None:
        """Put in `delta`'s rows: those whose rowid is held replace it, the rest are added; rowid order is kept."""
        if not len(delta["rowid"]):
            return
        if not self.columns:
            self.columns = delta
        else:
            rowid = self.columns["rowid"]
            at = np.searchsorted(rowid, delta["rowid"])
            held = at < len(rowid)
            held[held] = rowid[at[held]] == delta["rowid"][held]
            for name, column in self.columns.items():
                column[at[held]] = delta[name][held]
            fresh = ~held
            if fresh.any():
                self.columns = {name: np.concatenate((column, delta[name][fresh])) for name, column in self.columns.items()}
        rowid = self.columns["rowid"]
        if len(rowid) > 1 and not (rowid[1:] > rowid[:-1]).all():
            order = np.argsort(rowid, kind="stable")
            self.columns = {name: column[order] for name, column in self.columns.items()}


def holds(table: Table, rows: dict[str, np.ndarray[Any, Any]]) -> bool:
    """Return whether `table` holds each of `rows` (columns as the mirror keeps them) as it is there."""
    if not len(rows["rowid"]):
        return True
    if not len(table):
        return False
    held = table.columns
    at = np.searchsorted(held["rowid"], rows["rowid"])
    if (at >= len(held["rowid"])).any():
        return False
    return all(np.array_equal(held[name][at], column, equal_nan=column.dtype.kind == "f") for name, column in rows.items())
