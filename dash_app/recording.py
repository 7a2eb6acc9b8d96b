"""The one path in: every source's events go through EventRecorder (record, or record_many for a batch) into the buffer and its listeners."""

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
    """Adds events to the buffer, then hands them to listeners (store writer, Prometheus counters).

    A listener is any object with `on_events(events)`, called with the events of each record call, in order.
    """

    def __init__(self, buffer, listeners=()):
        self.buffer = buffer
        self.listeners = list(listeners)

    def add_listener(self, listener):
        """Hand every recorded event to `listener.on_events` from now on."""
        self.listeners.append(listener)

    def record(self, event):
        """Record one event from any source."""
        self.record_many((event,))

    def record_many(self, events):
        """Record events in order, with one buffer lock and one call per listener."""
        self.buffer.add_events(events)
        for listener in self.listeners:
            try:
                listener.on_events(events)
            except Exception:  # a listener's fault must not lose the events for the others
                log.exception("event listener %r failed", listener)
