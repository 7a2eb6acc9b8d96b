"""GET /sources: every source of events (FlexLM logs, polled servers, the REST API, the demo) and how it is doing."""

from __future__ import annotations

from flask import Blueprint, Response, jsonify

from dash_app import privacy
from dash_app.auth.viewer import current_viewer
from dash_app.sources.flexlm import COUNTERS, follower_of
from dash_app.sources.health import list_sources
from dash_app.state import get_state
from dash_app.web import ApiError

bp = Blueprint("sources", __name__)


@bp.get("/sources")
def sources() -> Response:
    """Every source and how it is doing, as the reader may see it (dash_app.privacy.sources)."""
    return jsonify({"sources": privacy.sources(list_sources(get_state()), current_viewer())})


@bp.get("/sources/flexlm")
def flexlm_status() -> Response:
    """Every followed FlexLM log in detail (position, rotations, counters), with totals; for admins only."""
    viewer = current_viewer()
    if not viewer.sees_sources:
        raise ApiError(403, "forbidden", "the FlexLM logs' details are shown to admins only")
    follower = follower_of(get_state())
    if follower is None:
        totals = dict.fromkeys(COUNTERS, 0)
        totals["open_borrows"] = 0
        return jsonify({"enabled": False, "logs": [], "totals": totals})
    return jsonify(privacy.flexlm_logs(follower.snapshot(), viewer))
