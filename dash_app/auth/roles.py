"""Roles from what an identity provider or proxy says of a user: role or group names, mapped by the site's config."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from dash_app.auth.viewer import ROLES, VIEWER, rank


def claim_values(value: Any) -> list[str]:
    """Return a roles or groups claim or header as a list of names (a list, or a string split on commas and spaces)."""
    if value is None:
        return []
    if isinstance(value, str):
        return [part for part in value.replace(",", " ").split() if part]
    if isinstance(value, (list, tuple)):
        return [str(v) for v in value if isinstance(v, (str, int))]
    return []


def role_of(names: Iterable[str], role_map: Mapping[str, str]) -> str:
    """Return the highest role any of `names` maps to: through `role_map`, or by being a role's own name; else viewer."""
    best = VIEWER
    for name in names:
        role = role_map.get(name) or (name if name in ROLES else None)
        if role is not None and rank(role) > rank(best):
            best = role
    return best
