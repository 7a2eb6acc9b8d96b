"""GET /sources: every source of events (FlexLM logs, polled servers, the REST API, the demo) and how it is doing."""

from __future__ import annotations

from flask import Blueprint, Response, jsonify, request

from dash_app import privacy
from dash_app.auth.viewer import ADMIN, current_viewer
from dash_app.reports.page import reports_card
from dash_app.sources.flexlm import COUNTERS, follower_of
from dash_app.sources.health import list_sources
from dash_app.sources.page import sources_page
from dash_app.state import get_state
from dash_app.web import ApiError

bp = Blueprint("sources", __name__)


@bp.get("/sources")
def sources() -> Response:
    """Every source and how it is doing, as the reader may see it (dash_app.privacy.sources).

    A browser (an Accept that prefers text/html) gets it as a page, unless it asks for ?format=json; every other
    client gets JSON.
    """
    state, viewer = get_state(), current_viewer()
    shown = privacy.sources(list_sources(state), viewer)
    fmt = request.args.get("format")
    if fmt not in (None, "json", "html"):
        raise ApiError(400, "invalid_query", "format: must be json or html")
    wants_page = request.accept_mimetypes.best_match(("application/json", "text/html")) == "text/html"
    if fmt == "html" or (fmt is None and wants_page):
        # Admins also see the scheduled reports' state (GET /reports) at the foot of the page.
        reports = state.reports.status() if state.reports is not None and viewer.role == ADMIN else []
        return Response(sources_page(shown, reports_card(reports)), mimetype="text/html", headers={"Vary": "Accept"})
    response = jsonify({"sources": shown})
    response.vary.add("Accept")
    return response


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
