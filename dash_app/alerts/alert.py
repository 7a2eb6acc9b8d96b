"""One alert's state (pending, firing or resolved, what it last said), and what a reader may see of it."""

from __future__ import annotations

import hashlib
import uuid
from dataclasses import dataclass
from typing import Any

from dash_app import privacy
from dash_app.alerts.conditions import HeldText, Observation, down_said, held_text
from dash_app.alerts.rules import HELD_LONGER_THAN, SOURCE_DOWN
from dash_app.auth.viewer import ANONYMOUS, Viewer
from dash_app.timeutil import iso_utc

PENDING, FIRING, RESOLVED = "pending", "firing", "resolved"


@dataclass
class Alert:
    """One alert's state: its key, rule and subject, since when its condition holds, and what it last said."""

    key: str
    rule: str
    subject: str | None
    tool: str | None
    state: str
    since: float
    value: float
    threshold: float
    message: str
    episode: str = ""
    fired_at: float | None = None
    resolved_at: float | None = None
    notified_at: float | None = None
    false_since: float | None = None  # the first tick its condition was seen false, while firing

    def as_dict(self, viewer: Viewer = ANONYMOUS, kind: str | None = None) -> dict[str, Any]:
        """Return the JSON shape GET /alerts lists, as `viewer` may see it; `kind` is its rule's (None: the rule is gone).

        Readers without real names get a held_longer_than alert's user and borrow id as their Names show them, in
        its message and key; a source_down alert says only the source and its error's kind to them, and readers who may
        not see the sources' details get no log's path.
        """
        row = {
            "rule": self.rule,
            "tool": self.subject,
            "key": self.key,
            "state": self.state,
            "since": iso_utc(self.fired_at if self.fired_at is not None else self.since),
            "resolved_at": iso_utc(self.resolved_at) if self.resolved_at is not None else None,
            "value": self.value,
            "threshold": self.threshold,
            "message": self.message,
        }
        if viewer.names.real and viewer.sees_sources:
            return row
        message: str | None = self.message
        tool = self.subject
        if kind == HELD_LONGER_THAN:
            if not viewer.names.real:
                message = _held_message(self, viewer)
        elif kind == SOURCE_DOWN:
            message = down_said(self.message, self.subject, viewer.sees_sources)
            if not viewer.sees_sources:
                tool = None
        elif kind is None:
            message, tool = None, None  # its rule left the rules file: what its subject and message name is unknown
        return {**row, "tool": tool, "key": shown_key(self.key, kind, viewer), "message": message}


def episode_id(key: str, tick_id: int | None) -> str:
    """Return the id of a firing of alert `key` on tick `tick_id` (a random one without a tick)."""
    if tick_id is None:
        return uuid.uuid4().hex
    return hashlib.sha256(f"{key}|{tick_id}".encode()).hexdigest()[:32]


def new_alert(seen: Observation, now: float) -> Alert:
    """Return a pending alert for a condition first seen holding at `now` (since when the facts know it held, if earlier)."""
    since = seen.since if seen.since is not None and seen.since <= now else now
    return Alert(seen.key, seen.rule.name, seen.subject, seen.tool, PENDING, since, seen.value, seen.threshold, seen.text)


# ------------------------------------------------------------ as a reader sees it


def shown_key(key: str, kind: str | None, viewer: Viewer) -> str:
    """Return alert key `key` ("rule|subject") as `viewer` may see it: a borrow id or a hidden source name digested."""
    rule, bar, subject = key.partition("|")
    if not bar:
        return key
    names = viewer.names
    if kind == HELD_LONGER_THAN:
        return f"{rule}|{names.borrow_id(subject)}"
    if (kind == SOURCE_DOWN and not viewer.sees_sources) or (kind is None and not (names.real and viewer.sees_sources)):
        return f"{rule}|{names.digest('alert', subject)}"
    return key


def _held_message(alert: Alert, viewer: Viewer) -> str | None:
    """Return a held_longer_than alert's message with its user and borrow id as `viewer` may see them, or None.

    Its text keeps them (a HeldText) until a restart; one read back from the store gives its user back only when it is
    exactly what the one template makes of this alert's tool, figures and borrow id (its key's subject).
    """
    names, text = viewer.names, alert.message
    if isinstance(text, HeldText):
        return text.said_as(privacy.user(text.user, names), names.borrow_id(text.borrow_id))
    borrow_id, tool = alert.key.partition("|")[2], alert.subject
    if not borrow_id or tool is None:
        return None
    head = f"{tool}: "
    tail = held_text(tool, "", alert.value, alert.threshold, borrow_id)[len(head) :]
    if not text.startswith(head) or not text.endswith(tail) or len(text) <= len(head) + len(tail):
        return None
    user = text[len(head) : len(text) - len(tail)]
    return held_text(tool, privacy.user(user, names), alert.value, alert.threshold, names.borrow_id(borrow_id))
