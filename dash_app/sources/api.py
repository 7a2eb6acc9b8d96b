"""GET /sources: every source of events (FlexLM logs, polled servers, the REST API, the demo) and how it is doing."""

from __future__ import annotations

from typing import Any

from flask import Blueprint, Response, jsonify

from dash_app.sources.flexlm import COUNTERS, follower_of
from dash_app.sources.health import DOWN, UP, SourceHealth
from dash_app.state import DEMO, FLEXLM, POLLER, AppState, get_state

bp = Blueprint("sources", __name__)


def _flexlm(state: AppState) -> list[dict[str, Any]]:
    follower = state.service(FLEXLM)
    if follower is None:
        return []
    entries = []
    for log in follower.snapshot()["logs"]:
        waiting = log["state"] == "waiting"
        behind = log["size"] is not None and log["offset"] is not None and log["offset"] < log["size"]
        state_name = DOWN if log["state"].startswith("error") or waiting else "catching_up" if behind else UP
        entries.append(
            {
                "kind": "flexlm",
                "name": log["path"],
                "state": state_name,
                "last_ok": log["last_event_at"],
                "last_error": log["state"][len("error: ") :] if log["state"].startswith("error") else None,
                "down_since": None,
                "counters": {
                    "polls": 0,
                    "borrows": log.get("borrows", 0),
                    "returns": log.get("returns", 0),
                    "denials": log.get("denials", 0),
                    "malformed": log.get("malformed", 0),
                },
            }
        )
    return entries


def sources_of(state: AppState) -> list[dict[str, Any]]:
    """Return the JSON entries of every source the app has."""
    entries = [state.api_source.as_dict()]
    if state.service(DEMO) is not None:
        entries.append(SourceHealth("demo", "demo traffic").as_dict())
    entries += _flexlm(state)
    poller = state.service(POLLER)
    if poller is not None:
        entries += [health.as_dict() for health in poller.health()]
    return entries


@bp.get("/sources")
def sources() -> Response:
    return jsonify({"sources": sources_of(get_state())})


@bp.get("/sources/flexlm")
def flexlm_status() -> Response:
    """Every followed FlexLM log in detail (position, rotations, counters), with totals."""
    follower = follower_of(get_state())
    if follower is None:
        totals = dict.fromkeys(COUNTERS, 0)
        totals["open_borrows"] = 0
        return jsonify({"enabled": False, "logs": [], "totals": totals})
    return jsonify(follower.snapshot())
