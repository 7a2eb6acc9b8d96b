"""The one path in: every source's events go through EventRecorder into the buffer and its listeners.

`record` takes one event, `record_many` a batch (one buffer lock, one call per listener).
"""

import logging
from collections.abc import Sequence
from typing import Protocol

from dash_app.buffer import RealtimeMetricsBuffer
from dash_app.events import Event

log = logging.getLogger(__name__)


class EventListener(Protocol):
    """Anything that wants every recorded event: the store's writer, the Prometheus counters."""

    def on_events(self, events: Sequence[Event]) -> None:
        """Take the events of one record call, in order."""


class EventRecorder:
    """Adds events to the buffer, then hands them to listeners, each called once per record call, in order."""

    def __init__(self, buffer: RealtimeMetricsBuffer, listeners: Sequence[EventListener] = ()) -> None:
        self.buffer = buffer
        self.listeners = list(listeners)

    def add_listener(self, listener: EventListener) -> None:
        """Hand every recorded event to `listener.on_events` from now on."""
        self.listeners.append(listener)

    def record(self, event: Event) -> None:
        """Record one event from any source."""
        self.record_many((event,))

    def record_many(self, events: Sequence[Event]) -> None:
        """Record events in order, with one buffer lock and one call per listener."""
        self.buffer.add_events(events)
        for listener in self.listeners:
            try:
                listener.on_events(events)
            except Exception:  # a listener's fault must not lose the events for the others
                log.exception("event listener %r failed", listener)
