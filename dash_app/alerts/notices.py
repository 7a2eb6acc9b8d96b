"""What an alert says to its channels: the notification's title and body, and the record of each delivery's outcome."""

from __future__ import annotations

import urllib.parse
from dataclasses import dataclass

from dash_app.alerts.alert import Alert
from dash_app.alerts.rules import Rule
from dash_app.timeutil import iso_utc

HEADLINES = {"fire": "FIRING", "repeat": "STILL FIRING", "resolve": "RESOLVED"}


@dataclass(frozen=True)
class Notification:
    """One message of one alert, to be delivered to each of its apprise URLs."""

    key: str  # the alert's key, e.g. "near-full|GreenHills Multi IDE"
    event: str  # "fire", "repeat" or "resolve"
    title: str
    body: str
    urls: tuple[str, ...]  # apprise URLs to deliver to (one channel each)


@dataclass
class DeliveryRecord:
    """The outcome of one try, or the final outcome, of delivering a notification to one channel."""

    key: str
    event: str
    channel: str  # the URL with any password or token redacted
    ok: bool
    tries: int
    error: str | None
    at: float  # the time of the last try (epoch seconds)


def notification(alert: Alert, rule: Rule, event: str, public_url: str) -> Notification:
    """Return what to send for `alert`: its rule, subject, value, threshold and a link to the dashboard's view."""
    subject = f": {alert.subject}" if alert.subject else ""
    link = public_url + "/" + (f"?tool={urllib.parse.quote_plus(alert.tool)}" if alert.tool else "")
    state = "no longer holds" if event == "resolve" else "holds"
    held = f", for {rule.for_seconds:g} s" if rule.for_seconds else ""
    body = (
        f"{alert.message}.\n"
        f"Rule {rule.name} ({rule.kind}) {state}: value {alert.value:g}, threshold {alert.threshold:g}{held}. "
        f"Firing since {iso_utc(alert.fired_at or alert.since)}.\n"
        f"{link}"
    )
    return Notification(alert.key, event, f"[licenses] {HEADLINES[event]} {rule.name}{subject}", body, rule.notify)
