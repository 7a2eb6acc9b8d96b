"""The page's Bootstrap (a copy of its CSS in assets/, which Dash links before style.css) and /healthz."""

from typing import Any

from flask import Blueprint

from dash_app.state import get_state

# Bootstrap 5.3.8's own bootstrap.min.css (MIT, its header kept) and its source map, as Bootstrap-Flask 2.6.0 shipped
# them: Dash links every stylesheet in assets/ in name order, so it comes before style.css, which builds on it.
BOOTSTRAP_CSS = "/assets/bootstrap.min.css"

bp = Blueprint("site", __name__)


@bp.get("/healthz")
def healthz() -> dict[str, Any] | tuple[dict[str, Any], int]:
    shared = get_state().shared
    if shared is None:
        return {"status": "ok"}
    # With --redis: reads still serve from memory, but writes fail and nothing new arrives while Redis is away.
    body = {"status": "ok" if shared.healthy() else "degraded", **shared.status()}
    return body, 200 if shared.healthy() else 503
