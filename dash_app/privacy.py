"""What a read route shows its reader of people: the shared shapes, with user names, hosts and borrow ids as seen.

The sources' errors are shown by Viewer: their whole text (a poll's last output line may be a checkout line, user and
client host included) to admins of real names only, their kind and license server to everyone else.

The builders these shapes come from (events.public_event, Borrow.as_dict, the buffer's buckets, the capacity report)
keep every name for every caller; a route passes their output through these functions with its reader's Names
(dash_app.auth.viewer). Each returns its input itself for a reader of real names, else a copy: buckets and reports are
cached and shared, and are never changed in place.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from dash_app.auth.viewer import HIDDEN, Names, Viewer

# A pseudonym is an HMAC: the same few names come back on every tick, so each is worked out once per Names.
PSEUDONYMS_KEPT = 65536
_pseudonyms: dict[Names, dict[str, str]] = {}


def _known(names: Names) -> dict[str, str]:
    known = _pseudonyms.get(names)
    if known is None or len(known) >= PSEUDONYMS_KEPT:
        known = _pseudonyms[names] = {}
    return known


def user(name: str | None, names: Names) -> str | None:
    """Return user `name` as this reader sees it: itself, its pseudonym, or None."""
    if name is None or names.real:
        return name
    if names.mode == HIDDEN:
        return None
    known = _known(names)
    shown = known.get(name)
    if shown is None:
        shown = known[name] = names.user(name) or ""  # a pseudonym: never empty
    return shown


def users(found: list[str], names: Names) -> list[str]:
    """Return a bucket's sorted distinct users as this reader sees them (none when names are hidden)."""
    if names.real:
        return found
    if names.mode == HIDDEN:
        return []
    known = _known(names)
    shown = set()
    for name in found:
        pseudonym = known.get(name)
        if pseudonym is None:
            pseudonym = known[name] = names.user(name) or ""  # a pseudonym: never empty
        shown.add(pseudonym)
    return sorted(shown)


def event(found: dict[str, Any], names: Names) -> dict[str, Any]:
    """Return one public_event (or Borrow.as_dict) with its user, host and borrow id as this reader sees them.

    The `source` (pool, flexlm, lmstat, rlmstat, lmx, dsls) and the `version` are no one's name, and stay.
    """
    if names.real:
        return found
    shown = dict(found)
    if "user" in shown:
        shown["user"] = user(shown["user"], names)
    if "host" in shown:
        shown["host"] = names.host(shown["host"])
    if "id" in shown:
        shown["id"] = names.borrow_id(shown["id"])
    return shown


def recent_events(found: dict[str, list[dict[str, Any]]], names: Names) -> dict[str, list[dict[str, Any]]]:
    """Return {kind: [public_event, ...]} with each event as this reader sees it."""
    if names.real:
        return found
    return {kind: [event(e, names) for e in events] for kind, events in found.items()}


def bucket(found: Mapping[str, Any], names: Names) -> Mapping[str, Any]:
    """Return a bucket (or an export's bucket row) with its `users` as this reader sees them."""
    if names.real:
        return found
    return {**found, "users": users(found["users"], names)}


def tool_metrics(found: Mapping[str, list[Any]], names: Names) -> Mapping[str, list[Any]]:
    """Return {tool: [bucket, ...]} with each bucket's users as this reader sees them."""
    if names.real:
        return found
    return {tool: [bucket(b, names) for b in buckets] for tool, buckets in found.items()}


def capacity_tools(entries: list[dict[str, Any]], names: Names) -> list[dict[str, Any]]:
    """Return the capacity report's per-tool entries with each top user as this reader sees it (None when hidden).

    An entry whose user is hidden stays, with `user: null`, so the license hours still show.
    """
    if names.real:
        return entries
    return [
        {**entry, "top_users": [{**top, "user": user(top["user"], names)} for top in entry.get("top_users") or ()]}
        for entry in entries
    ]


def estate_users(entries: list[dict[str, Any]], names: Names) -> list[dict[str, Any]]:
    """Return /analytics/users' entries with each user as this reader sees it (None when hidden), as top users are."""
    if names.real:
        return entries
    return [estate_user(entry, names) for entry in entries]


def estate_user(found: dict[str, Any], names: Names) -> dict[str, Any]:
    """Return one user's figures (CapacityService.user, or an /analytics/users entry) with the user as this reader sees it."""
    return found if names.real else {**found, "user": user(found["user"], names)}


# What a reader who may not see the sources' details sees of each (as the page's source strip says it): its kind,
# whether it is up and since when, and its error in brief. Names (a log's path), counters and features are admins' only.
SOURCE_FIELDS = ("kind", "state", "down_since")


def source_error(error: Mapping[str, Any] | None) -> dict[str, Any] | None:
    """Return a GET /sources `error` without its detail: its kind and license server, for readers of no whole error."""
    return {"kind": error["kind"], "server": error.get("server")} if error else None


def sources(entries: list[dict[str, Any]], viewer: Viewer) -> list[dict[str, Any]]:
    """Return GET /sources entries as `viewer` may see them: whole, without their errors' detail, or in brief."""
    if viewer.sees_errors:
        return entries
    shown = []
    for entry in entries:
        error = source_error(entry.get("error"))
        if viewer.sees_sources:
            shown.append({**entry, "last_error": error and error["kind"], "error": error})
        else:
            shown.append({**{key: entry.get(key) for key in SOURCE_FIELDS}, "error": error})
    return shown


def flexlm_logs(snapshot: dict[str, Any], viewer: Viewer) -> dict[str, Any]:
    """Return GET /sources/flexlm's body with each log's error as `viewer` may see it (its kind only, or whole)."""
    if viewer.sees_errors:
        return snapshot
    logs = []
    for entry in snapshot["logs"]:
        error = source_error(entry.get("error"))
        logs.append({**entry, "error": error, **({"state": f"error: {error['kind']}"} if error else {})})
    return {**snapshot, "logs": logs}
