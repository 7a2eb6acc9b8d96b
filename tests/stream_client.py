"""A delta client of /realtime/stream, rebuilt as the README tells a consumer to: the message keys and its state."""

from datetime import datetime

MESSAGE_KEYS = {"mode", "timestamp", "tools", "rates", "recent_events", "buffer_stats", "tool_metrics"}
DELTA_KEYS = MESSAGE_KEYS | {"expired", "tools_full", "recent_events_full"}


def new_client():
    """Return an empty delta client: {"tool_metrics": {tool: {timestamp: bucket}}, "tools": {tool: entry}, "recent_events"}."""
    return {"tool_metrics": {}, "tools": {}, "recent_events": {}}


def apply_delta(state, message):
    """Apply a stream message to a client's state, as the README tells a consumer to."""
    whole = message["mode"] == "full"
    metrics = state["tool_metrics"]
    if whole:
        metrics.clear()
    for tool, buckets in message["tool_metrics"].items():
        metrics.setdefault(tool, {}).update({bucket["timestamp"]: bucket for bucket in buckets})
    for tool, stamps in message.get("expired", {}).items():
        for stamp in stamps:
            del metrics[tool][stamp]
        if not metrics[tool]:
            del metrics[tool]
    if whole or message["tools_full"]:
        state["tools"].clear()
    for change in message["tools"]:
        # A known tool keeps its place and takes the changed fields; a new one goes last.
        state["tools"][change["tool"]] = {**state["tools"].get(change["tool"], {}), **change}
    recent = state["recent_events"]
    if whole or message["recent_events_full"]:
        recent.clear()
        recent.update(message["recent_events"])
    else:
        since = millis(message["timestamp"]) - 60_000
        for kind, events in message["recent_events"].items():
            recent[kind] = [event for event in recent[kind] + events if millis(event["timestamp"]) >= since][-10:]
    return state


def replayed(state):
    """Return a client's state in the shape of a full message's tool_metrics, tools and recent_events."""
    return {
        "tool_metrics": {tool: [buckets[t] for t in sorted(buckets)] for tool, buckets in sorted(state["tool_metrics"].items())},
        "tools": list(state["tools"].values()),
        "recent_events": state["recent_events"],
    }


def replayed_keys(message):
    """Return the keys of a full message that a delta client rebuilds."""
    return {key: message[key] for key in ("tool_metrics", "tools", "recent_events")}


def millis(text):
    """Return an ISO 8601 UTC timestamp in epoch milliseconds."""
    return round(parse_iso(text) * 1000)


def parse_iso(text):
    """Return an ISO 8601 timestamp ("Z" or an offset) in epoch seconds."""
    return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()
