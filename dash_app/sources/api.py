"""GET /sources: every source of events (FlexLM logs, polled servers, the REST API, the demo) and how it is doing."""

from __future__ import annotations

from flask import Blueprint, Response, jsonify

from dash_app.sources.flexlm import COUNTERS, follower_of
from dash_app.sources.health import list_sources
from dash_app.state import get_state

bp = Blueprint("sources", __name__)


@bp.get("/sources")
def sources() -> Response:
    return jsonify({"sources": list_sources(get_state())})


@bp.get("/sources/flexlm")
def flexlm_status() -> Response:
    """Every followed FlexLM log in detail (position, rotations, counters), with totals."""
    follower = follower_of(get_state())
    if follower is None:
        totals = dict.fromkeys(COUNTERS, 0)
        totals["open_borrows"] = 0
        return jsonify({"enabled": False, "logs": [], "totals": totals})
    return jsonify(follower.snapshot())
