"""The pool's state in the store: the inventory it was given, the borrows still open and the overage charges."""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from sqlalchemy import select

from dash_app.store import tables as t
from dash_app.store.statements import read_position, tuples

if TYPE_CHECKING:  # for the annotations only
    from dash_app.licenses.inventory import ToolSpec
    from dash_app.store.database import Store

OpenBorrowRow = tuple[str, str, str, float, int, str | None, str | None]

_b = t.borrows.c
_OPEN_BORROWS = (
    select(_b.id, _b.tool, _b.user, _b.borrowed_at, _b.is_overage, _b.host, _b.version)
    .where(_b.returned_at.is_(None))
    .order_by(_b.borrowed_at)
)
_CHARGES = select(t.charges.c.tool, t.charges.c.overage_borrows)
_TOOL_COLUMNS = ("tool", "total", "commit_qty", "max_overage", "commit_price", "overage_price_per_license")


class PoolStorage:
    """Saves and loads the pool's state in `store` (the pool's PoolStore)."""

    def __init__(self, store: Store) -> None:
        self.store = store

    def save_tools(self, specs: Mapping[str, ToolSpec]) -> None:
        """Replace the stored inventory with `specs` (at start-up, before the writer runs)."""
        with self.store.writing() as conn:
            conn.execute(t.tools.delete())
            if specs:
                conn.execute(t.tools.insert(), [{name: getattr(s, name) for name in _TOOL_COLUMNS} for s in specs.values()])

    def load_open_borrows(self) -> list[OpenBorrowRow]:
        """Return [(id, tool, user, borrowed_at, is_overage, host, version)] of borrows not yet returned."""
        return [tuple(row) for row in self.store.read(_OPEN_BORROWS)]

    def load_charges(self) -> dict[str, int]:
        """Return {tool: overage_borrows}."""
        return {tool: n for tool, n in self.store.read(_CHARGES)}

    def load_pool_state(self, log_name: str) -> tuple[list[tuple[Any, ...]], dict[str, int], str | None]:
        """Return the open borrows, the charges and the position in the shared log `log_name` they are at, read at once."""
        with self.store.snapshot() as conn:
            position = read_position(conn, log_name)
            borrows = tuples(conn, _OPEN_BORROWS)
            charges = dict(tuples(conn, _CHARGES))
        return borrows, charges, position
