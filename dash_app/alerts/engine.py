"""The alerts' state: each alert pending, firing or resolved, changed once per tick, stored, and notified.

An alert whose condition holds is pending until it has held for its rule's `for_seconds`, then firing: notified once,
again every `repeat_seconds` while it fires, and once when it resolves, which it does only after its condition has
been false for `for_seconds` and at least one tick (no flapping). Notifications go to the delivery queue, never
waited for; the state goes to the store through its writer, so a restart neither forgets a firing alert nor
notifies it again.

With --redis every process runs the engine, and only the lease holder stores and notifies. When the lease moves, the
new holder reconciles with the store on its first tick as leader: a resolve it saw in the last HANDOVER_SECONDS while
not leading is stored and sent if the store still has that alert firing, and an alert firing here either takes the
stored firing row's episode (the old holder told everyone already) or is stored and sent as fired.
"""

from __future__ import annotations

import hashlib
import logging
import threading
import urllib.parse
import uuid
from collections import deque
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, NamedTuple

from sqlalchemy import bindparam, text

from dash_app import privacy
from dash_app.alerts.conditions import Facts, HeldText, Observation, down_said, evaluate, held_text
from dash_app.alerts.delivery import DeliveryRecord, Notification
from dash_app.alerts.rules import HELD_LONGER_THAN, SOURCE_DOWN, AlertConfig, Rule
from dash_app.auth.viewer import ANONYMOUS, Viewer
from dash_app.store import tables
from dash_app.store.database import DATABASE_ERRORS, upsert
from dash_app.timeutil import iso_utc

if TYPE_CHECKING:
    from dash_app.alerts.delivery import Deliveries
    from dash_app.store.database import Store

log = logging.getLogger(__name__)

PENDING, FIRING, RESOLVED = "pending", "firing", "resolved"
RECENT = 50  # resolved alerts kept for GET /alerts and the page
# Resolves seen while not leading are kept this long for a takeover: a lease moves within seconds (TTL), so this is
# ample, and a process that never leads keeps only a minute's worth.
HANDOVER_SECONDS = 60.0
KEYS_PER_READ = 500  # keys per `IN (...)` of a takeover's read: well under SQLite's limit on parameters

# The columns of an alerts row, in the order _alert_of takes them.
_COLUMNS = "episode, key, rule, subject, tool, state, since, fired_at, resolved_at, value, threshold, message, notified_at"
# The rows of some keys, oldest firing first (a takeover keeps the last of each).
_LATEST = text(
    "SELECT key, episode, state, fired_at, notified_at FROM alerts WHERE key IN :keys ORDER BY fired_at, rowid"
).bindparams(bindparam("keys", expanding=True))


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


class _Stored(NamedTuple):
    """The store's latest row of one alert key, as a takeover reads it."""

    episode: str
    state: str
    fired_at: float
    notified_at: float | None


class AlertEngine:
    """Evaluates the rules on each tick's snapshot and moves every alert through pending, firing and resolved."""

    def __init__(
        self,
        config: AlertConfig,
        deliveries: Deliveries | None,
        store: Store | None,
        public_url: str,
        facts: Callable[[float, Sequence[Any], bool], Facts],
        grace_seconds: float = 0.0,
        leading: Callable[[], bool] = lambda: True,
    ) -> None:
        self.config = config
        self.rules = {rule.name: rule for rule in config.rules}
        self.deliveries = deliveries
        self.store = store
        self.public_url = public_url.rstrip("/")
        self._facts = facts  # (now, the tick's tool status, persisted) -> Facts
        # With --redis every process evaluates the same log on the same ticks, so all show the same alerts; only the
        # process holding the lease stores and notifies them (see eventlog.lease). Whatever fired or resolved while no
        # process led is caught up on by the next holder's first tick as leader (_take_over).
        self.leading = leading
        self._led = False  # whether the last tick led: one that leads after one that did not takes over
        self._held: list[tuple[float, Alert]] = []  # (tick time, alert) of resolves not sent while not leading
        self._alerts: dict[str, Alert] = {}  # pending and firing, by key
        self._recent: deque[Alert] = deque(maxlen=RECENT)  # resolved, newest last
        self._lock = threading.Lock()
        # After a restart, the facts start afresh (a server counts as up until its first poll fails): alerts that were
        # firing are not resolved until this long after the first tick, unless their condition is seen again first.
        self.grace_seconds = grace_seconds
        self._grace_until: float | None = None
        self._restored: set[str] = set()
        if store is not None:
            self._restore(store)

    # -------------------------------------------------------------- restart

    def _restore(self, store: Store) -> None:
        """Take the firing alerts and the recent history from the store: firing ones are not notified again."""
        for row in store.read(f"SELECT {_COLUMNS} FROM alerts WHERE state = :state ORDER BY fired_at", {"state": FIRING}):
            alert = _alert_of(row)
            if alert.rule in self.rules:
                self._alerts[alert.key] = alert
                self._restored.add(alert.key)
            else:
                # Its rule left the rules file: nobody asked to hear of it any more.
                alert.state, alert.resolved_at = RESOLVED, alert.notified_at or alert.since
                self._save(alert)
                log.info("alert %s: its rule is gone from the rules file; resolved without a notification", alert.key)
        rows = store.read(
            f"SELECT {_COLUMNS} FROM alerts WHERE state = :state ORDER BY resolved_at DESC LIMIT :n",
            {"state": RESOLVED, "n": RECENT},
        )
        self._recent.extend(_alert_of(row) for row in reversed(rows))

    # ----------------------------------------------------------------- ticks

    def on_tick(self, now: float, tools: Sequence[Any], persisted: bool, tick_id: int | None = None) -> None:
        """Evaluate every rule on one tick's snapshot and move the alerts on (the stream ticker's listener).

        With the tick's id, a firing's episode is named by its key and tick: every process of a deployment on Redis
        names it alike, so the one that stores it after a change of lease holder updates the same row.
        """
        if not self.rules:
            return
        leading = self.leading()  # asked once: what a tick stores and what it sends must agree
        notifications: list[Notification] = []
        if not leading:
            self._led = False
        elif not self._led:
            taken = self._take_over(now, tick_id)
            if taken is not None:  # else the store could not be read: tried again on the next tick
                self._led = True
                notifications.extend(taken)
        observed = {o.key: o for o in evaluate(self.rules.values(), self._facts(now, tools, persisted))}
        with self._lock:
            if self._grace_until is None:
                self._grace_until = now + self.grace_seconds
            warming = now < self._grace_until
            for key, seen in observed.items():
                self._restored.discard(key)
                alert = self._alerts.get(key)
                if alert is None:
                    alert = self._alerts[key] = _new_alert(seen, now)
                alert.value, alert.threshold, alert.message, alert.false_since = seen.value, seen.threshold, seen.text, None
                rule = seen.rule
                if alert.state == PENDING and now - alert.since >= rule.for_seconds:
                    alert.state, alert.fired_at, alert.notified_at = FIRING, now, now
                    alert.episode = episode_id(key, tick_id)
                    notifications.append(self._notification(alert, rule, "fire"))
                    if leading:
                        self._save(alert)
                elif alert.state == FIRING and now - (alert.notified_at or now) >= self.config.repeat_seconds:
                    alert.notified_at = now
                    notifications.append(self._notification(alert, rule, "repeat"))
                    if leading:
                        self._save(alert)
            for key in [key for key in self._alerts if key not in observed]:
                alert = self._alerts[key]
                if alert.state == PENDING:
                    del self._alerts[key]
                    continue
                rule = self.rules[alert.rule]
                if warming and key in self._restored:
                    continue  # firing before the restart, and not yet seen either way since
                self._restored.discard(key)
                if alert.false_since is None:
                    alert.false_since = now  # false from this tick on; it resolves at a later tick at the earliest
                elif now - alert.false_since >= rule.for_seconds:
                    alert.state, alert.resolved_at = RESOLVED, now
                    notifications.append(self._notification(alert, rule, "resolve"))
                    if leading:
                        self._save(alert)
                    else:
                        # Kept for a takeover: the store may hold it firing, stored by a leader now gone.
                        self._held.append((now, alert))
                    del self._alerts[key]
                    self._recent.append(alert)
            if self._held:
                self._held = [(at, alert) for at, alert in self._held if at >= now - HANDOVER_SECONDS]
        if not leading:
            return
        self._send(notifications)

    def _send(self, notifications: Iterable[Notification]) -> None:
        """Queue each notification that has channels for delivery."""
        for notification in notifications:
            if self.deliveries is not None and notification.urls:
                self.deliveries.send(notification)

    # -------------------------------------------------------------- takeover

    def _take_over(self, now: float, tick_id: int | None) -> list[Notification] | None:
        """Reconcile with the store on becoming the leader; return what to send, or None if the store cannot be read.

        While no process led, alerts may have fired or resolved with nobody storing or notifying them, and this
        process may have fired an alert on another tick than the old leader (so under another episode id).
        """
        with self._lock:
            held = list(self._held)
            firing = self._firing()
        if not held and not firing:
            return []  # nothing can differ from the store (a process leading from its first tick, usually)
        try:
            stored = self._stored(sorted({alert.key for _, alert in held} | {alert.key for alert in firing}))
        except DATABASE_ERRORS as exc:
            log.warning("alerts: cannot read the store to take over from the last leader (%s); trying again", exc)
            return None
        notifications: list[Notification] = []
        with self._lock:
            for at, alert in held:
                row = stored.get(alert.key)
                if row is None or row.state != FIRING or row.fired_at >= at:
                    # Never stored (no one was told it fired), or resolved by the old leader; a stored firing that
                    # began after this resolve means the old leader lived past it, and stored it.
                    continue
                # The stored episode is the one everyone was told of: resolve that row, and say when it fired.
                alert.episode, alert.fired_at = row.episode, row.fired_at
                self._save(alert)
                notifications.append(self._notification(alert, self.rules[alert.rule], "resolve"))
                stored[alert.key] = row._replace(state=RESOLVED)
            for alert in self._firing():
                row = stored.get(alert.key)
                if row is not None and row.state == FIRING:
                    # Stored and notified by the old leader: go on with its row, and repeat when it would have.
                    alert.episode, alert.fired_at = row.episode, row.fired_at
                    alert.notified_at = row.notified_at if row.notified_at is not None else alert.notified_at
                    continue
                if row is not None and row.episode == alert.episode:
                    alert.episode = episode_id(alert.key, tick_id)  # that firing is stored resolved: this is a new one
                # Fired while no process led (or resolved by the old leader, not here): a missed fire is worse than a
                # rare duplicate.
                alert.notified_at = now
                self._save(alert)
                notifications.append(self._notification(alert, self.rules[alert.rule], "fire"))
            self._held = []
        return notifications

    def _stored(self, keys: Sequence[str]) -> dict[str, _Stored]:
        """Return the store's latest row (the last fired) of each of `keys` it has a row of."""
        if self.store is None:
            return {}
        self.store.flush(timeout=1.0)  # this process's saves from an earlier lead may still be queued
        latest: dict[str, _Stored] = {}
        for start in range(0, len(keys), KEYS_PER_READ):
            chunk = keys[start : start + KEYS_PER_READ]
            for key, episode, state, fired_at, notified_at in self.store.read(_LATEST, {"keys": chunk}):
                latest[key] = _Stored(episode, state, fired_at, notified_at)  # later rows replace earlier ones
        return latest

    def _notification(self, alert: Alert, rule: Rule, event: str) -> Notification:
        """Return what to send for `alert`: its rule, subject, value, threshold and a link to the dashboard's view."""
        headline = {"fire": "FIRING", "repeat": "STILL FIRING", "resolve": "RESOLVED"}[event]
        subject = f": {alert.subject}" if alert.subject else ""
        link = self.public_url + "/" + (f"?tool={urllib.parse.quote_plus(alert.tool)}" if alert.tool else "")
        state = "no longer holds" if event == "resolve" else "holds"
        held = f", for {rule.for_seconds:g} s" if rule.for_seconds else ""
        body = (
            f"{alert.message}.\n"
            f"Rule {rule.name} ({rule.kind}) {state}: value {alert.value:g}, threshold {alert.threshold:g}{held}. "
            f"Firing since {iso_utc(alert.fired_at or alert.since)}.\n"
            f"{link}"
        )
        return Notification(alert.key, event, f"[licenses] {headline} {rule.name}{subject}", body, rule.notify)

    def _save(self, alert: Alert) -> None:
        """Queue `alert`'s row for the store (its callers save only while leading)."""
        if self.store is not None:
            self.store.submit(
                upsert(self.store.dialect, tables.alerts, ["episode"]),
                {name: getattr(alert, name) for name in _COLUMNS.split(", ")},
            )

    def on_delivery(self, record: DeliveryRecord) -> None:
        """Keep a delivery's outcome in the store (the Deliveries' callback, from its worker threads)."""
        if self.store is not None:
            self.store.submit(
                tables.alert_deliveries.insert(),
                {
                    "at": record.at,
                    "key": record.key,
                    "event": record.event,
                    "channel": record.channel,
                    "ok": int(record.ok),
                    "tries": record.tries,
                    "error": record.error,
                },
            )

    # ----------------------------------------------------------------- reads

    def _firing(self) -> list[Alert]:
        """Return the firing alerts, oldest first (with the lock held)."""
        return sorted((a for a in self._alerts.values() if a.state == FIRING), key=lambda a: (a.fired_at or 0, a.key))

    def firing(self) -> list[Alert]:
        """Return the firing alerts, oldest first."""
        with self._lock:
            return self._firing()

    def rows(self, viewer: Viewer = ANONYMOUS) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
        """Return GET /alerts' `firing` and `recent` (firing and resolved, newest first), built while no tick runs.

        Each as `viewer` may see it (see Alert.as_dict); by default, everything.
        """
        with self._lock:
            firing = self._firing()
            recent = sorted([*firing, *self._recent], key=lambda a: a.resolved_at or a.fired_at or 0, reverse=True)[:RECENT]
            return (
                [a.as_dict(viewer, self._kind(a.rule)) for a in firing],
                [a.as_dict(viewer, self._kind(a.rule)) for a in recent],
            )

    def _kind(self, rule: str) -> str | None:
        """Return the kind of rule `rule`, or None when it has left the rules file."""
        found = self.rules.get(rule)
        return found.kind if found is not None else None

    def recent(self) -> list[Alert]:
        """Return the resolved alerts kept, newest first."""
        with self._lock:
            return list(reversed(self._recent))

    def snapshot(self, viewer: Viewer = ANONYMOUS) -> dict[str, Any]:
        """Return GET /alerts: firing alerts, recent ones (firing and resolved, newest first) and recent deliveries.

        Each as `viewer` may see it (by default, everything); the deliveries (channels, their errors) are the alerts'
        configuration, left out for readers who may not see it.
        """
        firing_rows, recent_rows = self.rows(viewer)
        if not viewer.sees_sources:
            return {"firing": firing_rows, "recent": recent_rows}
        deliveries = self.deliveries.recent() if self.deliveries is not None else []
        return {
            "firing": firing_rows,
            "recent": recent_rows,
            "deliveries": [
                {
                    "key": shown_key(d.key, self._kind(d.key.partition("|")[0]), viewer),
                    "event": d.event,
                    "channel": d.channel,
                    "ok": d.ok,
                    "tries": d.tries,
                    "error": d.error,
                    "at": iso_utc(d.at),
                }
                for d in deliveries
            ],
        }


def episode_id(key: str, tick_id: int | None) -> str:
    """Return the id of a firing of alert `key` on tick `tick_id` (a random one without a tick)."""
    if tick_id is None:
        return uuid.uuid4().hex
    return hashlib.sha256(f"{key}|{tick_id}".encode()).hexdigest()[:32]


def _new_alert(seen: Observation, now: float) -> Alert:
    since = seen.since if seen.since is not None and seen.since <= now else now
    return Alert(seen.key, seen.rule.name, seen.subject, seen.tool, PENDING, since, seen.value, seen.threshold, seen.text)


def _alert_of(row: Iterable[Any]) -> Alert:
    episode, key, rule, subject, tool, state, since, fired_at, resolved_at, value, threshold, message, notified_at = row
    return Alert(key, rule, subject, tool, state, since, value, threshold, message, episode, fired_at, resolved_at, notified_at)


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
