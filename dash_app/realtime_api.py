"""Read-only views of the recorded events: /realtime/stats (the buffer) and /realtime/export (buffer, or the stored history)."""

from flask import Blueprint, Response, jsonify, request

from dash_app import export, privacy
from dash_app.auth.viewer import current_viewer
from dash_app.state import get_state
from dash_app.web import ApiError, query_number

bp = Blueprint("realtime", __name__)


@bp.get("/realtime/stats")
def stats() -> Response:
    state = get_state()
    window = query_number("window", default=60, minimum=1, maximum=state.settings.retention_seconds)
    body = state.stats_summary()
    # Users, hosts and borrow ids as the reader may see them (the events are the buffer's fresh copies).
    body[f"recent_{window}s"] = privacy.recent_events(state.buffer.get_recent_events(window), current_viewer().names)
    return jsonify(body)


@bp.get("/realtime/export")
def export_data() -> Response:
    state = get_state()
    fmt = request.args.get("format", "csv")
    if fmt not in export.FORMATS:
        raise ApiError(400, "invalid_query", "format: must be csv or json")
    kind = request.args.get("kind", "buckets")
    if kind not in export.KINDS:
        raise ApiError(400, "invalid_query", "kind: must be buckets or events")
    # Buckets reach back through the stored history; raw events only through the buffer's window.
    longest = state.settings.history_days * 86400 if kind == "buckets" else state.buffer.retention_seconds
    window = query_number("window", default=state.buffer.retention_seconds, minimum=60, maximum=longest)
    tools = request.args.getlist("tool") or None
    text, filename, mimetype = export.render(state, kind, fmt, window, tools, names=current_viewer().names)
    return Response(text, content_type=mimetype, headers={"Content-Disposition": f'attachment; filename="{filename}"'})
