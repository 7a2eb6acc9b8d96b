"""GET /sources: every source of events (FlexLM logs, polled servers, the REST API, the demo) and how it is doing."""

from __future__ import annotations

from flask import Blueprint, Response, jsonify

from dash_app.auth.viewer import current_viewer
from dash_app.sources.flexlm import COUNTERS, follower_of
from dash_app.sources.health import list_sources
from dash_app.state import get_state
from dash_app.web import ApiError

bp = Blueprint("sources", __name__)


# What a reader who may not see the sources' details sees of each: its kind and whether it is up. Names, paths, errors
# (a poll's last error may quote a checkout line, user and host included), counters and features are admins' only.
PUBLIC_FIELDS = ("kind", "state")


@bp.get("/sources")
def sources() -> Response:
    entries = list_sources(get_state())
    if not current_viewer().sees_sources:
        entries = [{key: entry.get(key) for key in PUBLIC_FIELDS} for entry in entries]
    return jsonify({"sources": entries})


@bp.get("/sources/flexlm")
def flexlm_status() -> Response:
    """Every followed FlexLM log in detail (position, rotations, counters), with totals; for admins only."""
    if not current_viewer().sees_sources:
        raise ApiError(403, "forbidden", "the FlexLM logs' details are shown to admins only")
    follower = follower_of(get_state())
    if follower is None:
        totals = dict.fromkeys(COUNTERS, 0)
        totals["open_borrows"] = 0
        return jsonify({"enabled": False, "logs": [], "totals": totals})
    return jsonify(follower.snapshot())
