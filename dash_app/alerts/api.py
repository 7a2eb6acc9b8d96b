"""GET /alerts: the alerts firing now, the recent ones, and the outcome of their notifications."""

from flask import Blueprint, Response, jsonify

from dash_app.auth.viewer import current_viewer
from dash_app.state import get_state

bp = Blueprint("alerts", __name__)


@bp.get("/alerts")
def alerts() -> Response:
    # Names, borrow ids and sources as this reader may see them; the deliveries for admins only.
    return jsonify(get_state().alerts.snapshot(current_viewer()))
