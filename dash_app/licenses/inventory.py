"""The tools file: which tools the pool has, with their limits and prices."""

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from dash_app.events import name_problem
from dash_app.jsonfile import read_json

DEFAULT_TOOLS_FILE = Path(__file__).resolve().parent / "default_tools.json"

_NUMBER_FIELDS = ("total", "commit_qty", "max_overage", "commit_price", "overage_price_per_license")


class InventoryError(ValueError):
    """The tools file is missing or invalid; the message says where."""


@dataclass(frozen=True)
class ToolSpec:
    """One tool's limits and prices as the tools file gives them."""

    tool: str
    total: int
    commit_qty: int
    max_overage: int
    commit_price: float
    overage_price_per_license: float
    feature: str | None = None  # the FlexLM feature name, when the display name differs


def load_inventory(path: str | os.PathLike[str] | None = None) -> dict[str, ToolSpec]:
    """Read and check a tools file (the bundled one when `path` is None); return {tool: ToolSpec}."""
    path = Path(path) if path else DEFAULT_TOOLS_FILE
    raw = read_json(path, f"tools file {path}", InventoryError)
    return parse_inventory(raw, source=f"tools file {path}")


def parse_inventory(raw: object, source: str = "tools file") -> dict[str, ToolSpec]:
    """Check a decoded tools list and return {tool: ToolSpec}."""
    if not isinstance(raw, list):
        raise InventoryError(f"{source}: expected a JSON list of tools")
    specs: dict[str, ToolSpec] = {}
    for index, entry in enumerate(raw):
        where = f"{source}: entry {index}"
        if not isinstance(entry, dict):
            raise InventoryError(f"{where}: expected an object")
        name = entry.get("tool")
        problem = name_problem(name)
        if problem is not None or not isinstance(name, str):  # name_problem refuses every non-string
            raise InventoryError(f"{where}: 'tool' {problem}")
        where = f"{source}: tool {name!r}"
        values: dict[str, Any] = {}  # ToolSpec's number fields: ints, and floats for the prices
        for key in _NUMBER_FIELDS:
            value = entry.get(key)
            integral = key in ("total", "commit_qty", "max_overage")
            if isinstance(value, bool) or not isinstance(value, int if integral else (int, float)):
                kind = "a whole number" if integral else "a number"
                raise InventoryError(f"{where}: '{key}' must be {kind}")
            if value < 0:
                raise InventoryError(f"{where}: '{key}' must not be negative")
            values[key] = value
        if values["commit_qty"] > values["total"]:
            raise InventoryError(f"{where}: 'commit_qty' must not exceed 'total'")
        feature = entry.get("feature")
        if feature is not None and not isinstance(feature, str):
            raise InventoryError(f"{where}: 'feature' must be text")
        if name in specs:
            raise InventoryError(f"{where}: listed twice")
        specs[name] = ToolSpec(tool=name, feature=feature, **values)
    return specs
