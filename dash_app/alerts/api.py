"""GET /alerts: the alerts firing now, the recent ones, and the outcome of their notifications."""

from flask import Blueprint, Response, jsonify

from dash_app.state import get_state

bp = Blueprint("alerts", __name__)


@bp.get("/alerts")
def alerts() -> Response:
    return jsonify(get_state().alerts.snapshot())
