"""The one path in: every source's events go through EventRecorder.record into the buffer and its listeners."""

import logging

log = logging.getLogger(__name__)


def borrow_event(tool, user, is_overage, borrow_id, ts):
    """Return a plain, serialisable borrow event."""
    return {"type": "borrow", "ts": ts, "tool": tool, "user": user, "is_overage": bool(is_overage), "id": borrow_id}


def return_event(borrow_id, user, tool, ts):
    """Return a plain, serialisable return event."""
    return {"type": "return", "ts": ts, "id": borrow_id, "user": user, "tool": tool}


def failure_event(tool, user, reason, ts):
    """Return a plain, serialisable failure event."""
    return {"type": "failure", "ts": ts, "tool": tool, "user": user, "reason": reason}


class EventRecorder:
    """Adds each event to the buffer, then hands it to listeners (store writer, Prometheus counters)."""

    def __init__(self, buffer, listeners=()):
        self.buffer = buffer
        self.listeners = list(listeners)

    def add_listener(self, listener):
        """Call `listener(event)` after every recorded event."""
        self.listeners.append(listener)

    def record(self, event):
        """Record one event from any source."""
        kind = event["type"]
        if kind == "borrow":
            self.buffer.add_borrow(event["tool"], event["user"], event["is_overage"], event["id"], timestamp=event["ts"])
        elif kind == "return":
            self.buffer.add_return(event["id"], user=event["user"], timestamp=event["ts"], tool=event["tool"])
        elif kind == "failure":
            self.buffer.add_failure(event["tool"], event["user"], event["reason"], timestamp=event["ts"])
        else:
            raise ValueError(f"unknown event type {kind!r}")
        for listener in self.listeners:
            try:
                listener(event)
            except Exception:  # a listener's fault must not lose the event for the others
                log.exception("event listener %r failed", listener)
