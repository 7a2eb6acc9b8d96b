"""Read-only JSON views of the buffer: /realtime/stats."""

from flask import Blueprint, current_app, jsonify

from dash_app.web import query_number, register_error_handler

bp = Blueprint("realtime", __name__)
register_error_handler(bp)


@bp.get("/realtime/stats")
def stats():
    buffer = current_app.extensions["dash_app"].buffer
    window = query_number("window", default=60, minimum=1, maximum=21600)
    body = buffer.get_stats_summary()
    body[f"recent_{window}s"] = buffer.get_recent_events(window)
    return jsonify(body)
