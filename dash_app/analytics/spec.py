"""A tool's limits and prices as the analyses take them, read from the tools file's inventory."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any, NamedTuple


class Spec(NamedTuple):
    """A tool's inventory entry: pool size, committed licenses, their price per billing period, the price of an overage borrow."""

    total: int | None
    commit: int | None
    commit_price: float | None
    overage_price: float | None


NO_SPEC = Spec(None, None, None, None)


def specs_from_tools(tools: Iterable[Mapping[str, Any]]) -> dict[str, Spec]:
    """Return the specs of a tools-file inventory (`tool`, `total`, `commit_qty`, `commit_price`, `overage_price_per_license`)."""

    def number(entry: Mapping[str, Any], key: str) -> float | None:
        value = entry.get(key)
        return None if value is None else float(value)

    def count(entry: Mapping[str, Any], key: str) -> int | None:
        value = entry.get(key)
        return None if value is None else int(value)

    return {
        str(t["tool"]): Spec(
            count(t, "total"), count(t, "commit_qty"), number(t, "commit_price"), number(t, "overage_price_per_license")
        )
        for t in tools
    }
