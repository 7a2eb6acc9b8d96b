"""REST API of the pool: borrow, return, status and active borrows, as JSON."""

from flask import Blueprint, Response, jsonify, request

from dash_app import privacy
from dash_app.auth.viewer import current_viewer
from dash_app.licenses.pool import UNKNOWN_TOOL, BorrowDenied, LicensePool, PoolUnavailable, UnknownBorrow
from dash_app.state import get_state
from dash_app.web import ApiError, error_response, json_body, name_field, require_token

bp = Blueprint("licenses", __name__)

# Seconds a client waits before trying a write again while the shared pool cannot decide (Redis away or rebuilding).
UNAVAILABLE_RETRY_SECONDS = 1


def _unavailable(down: PoolUnavailable) -> Response:
    response = error_response(503, "unavailable", str(down))
    response.headers["Retry-After"] = str(UNAVAILABLE_RETRY_SECONDS)
    return response


def _pool() -> LicensePool:
    return get_state().pool


@bp.post("/licenses/borrow")
@require_token
def borrow() -> Response:
    body = json_body()
    tool, user = name_field(body, "tool"), name_field(body, "user")
    # Optional: where the license is used and which version, shown in the dashboard's open checkouts.
    host = name_field(body, "host") if body.get("host") is not None else None
    version = name_field(body, "version") if body.get("version") is not None else None
    source = get_state().api_source
    try:
        granted = _pool().borrow(tool, user, host=host, version=version)
    except BorrowDenied as denied:
        source.count(denials=1)
        status = 404 if denied.reason == UNKNOWN_TOOL else 409
        raise ApiError(status, denied.reason, denied.detail) from None
    except PoolUnavailable as down:
        return _unavailable(down)
    source.count(borrows=1)
    source.ok(granted.borrowed_at)
    return jsonify(granted.as_dict())


@bp.post("/licenses/return")
@require_token
def return_license() -> Response:
    body = json_body()
    borrow_id = name_field(body, "id")
    try:
        returned = _pool().return_license(borrow_id)
    except UnknownBorrow:
        raise ApiError(404, "unknown_borrow", f"id: no active borrow {borrow_id!r}") from None
    except PoolUnavailable as down:
        return _unavailable(down)
    get_state().api_source.count(returns=1)
    return jsonify({"status": "ok", "tool": returned.tool})


@bp.get("/licenses/status")
def status() -> Response:
    return jsonify(_pool().status())


@bp.get("/licenses/<path:tool>/status")
def tool_status(tool: str) -> Response:
    entry = _pool().tool_status(tool)
    if entry is None:
        raise ApiError(404, UNKNOWN_TOOL, f"tool: no tool named {tool!r}")
    return jsonify(entry)


@bp.get("/borrows")
def active_borrows() -> Response:
    user = request.args.get("user") or None
    tool = request.args.get("tool") or None
    names = current_viewer().names
    if names.real:
        borrows = _pool().active_borrows(user=user, tool=tool)
    else:
        # `user` matches the name as this reader sees it (a pseudonym), so a real name cannot be probed; hidden: none.
        borrows = _pool().active_borrows(tool=tool)
        if user is not None:
            borrows = [b for b in borrows if privacy.user(b.user, names) == user]
    return jsonify([privacy.event(b.as_dict(), names) for b in borrows])
