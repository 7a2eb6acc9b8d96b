"""GET /reports: each scheduled report's next run, when it was last sent and its last error (admins only)."""

from flask import Blueprint, Response, jsonify

from dash_app.auth.viewer import ADMIN, current_viewer
from dash_app.state import get_state
from dash_app.web import ApiError

bp = Blueprint("reports", __name__)


@bp.get("/reports")
def reports() -> Response:
    # The channels (redacted) and the delivery errors are the site's configuration: admins only.
    if current_viewer().role != ADMIN:
        raise ApiError(403, "forbidden", "the scheduled reports are shown to admins only")
    scheduler = get_state().reports
    if scheduler is None:
        return jsonify({"reports": [], "last_pass": None, "error": None})
    return jsonify({"reports": scheduler.status(), **scheduler.health()})
