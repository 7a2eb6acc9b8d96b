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

import logging
import threading
from collections import deque
from collections.abc import Callable, Iterable, Sequence
from typing import TYPE_CHECKING, Any

from dash_app.alerts.alert import FIRING, PENDING, RESOLVED, Alert, episode_id, new_alert, shown_key
from dash_app.alerts.conditions import Facts, Observation, evaluate
from dash_app.alerts.notices import Notification, notification
from dash_app.alerts.rules import AlertConfig
from dash_app.auth.viewer import ANONYMOUS, Viewer
from dash_app.store.database import DATABASE_ERRORS
from dash_app.timeutil import iso_utc

if TYPE_CHECKING:
    from dash_app.alerts.delivery import Deliveries
    from dash_app.alerts.storage import AlertStorage, StoredAlert

log = logging.getLogger(__name__)

RECENT = 50  # resolved alerts kept for GET /alerts and the page
# Resolves seen while not leading are kept this long for a takeover: a lease moves within seconds (TTL), so this is
# ample, and a process that never leads keeps only a minute's worth.
HANDOVER_SECONDS = 60.0


class AlertEngine:
    """Evaluates the rules on each tick's snapshot and moves every alert through pending, firing and resolved."""

    def __init__(
        self,
        config: AlertConfig,
        deliveries: Deliveries | None,
        storage: AlertStorage | None,
        public_url: str,
        facts: Callable[[float, Sequence[Any], bool], Facts],
        grace_seconds: float = 0.0,
        leading: Callable[[], bool] = lambda: True,
    ) -> None:
        self.config = config
        self.rules = {rule.name: rule for rule in config.rules}
        self.deliveries = deliveries
        self.storage = storage
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
        if storage is not None:
            self._restore(storage)

    # -------------------------------------------------------------- restart

    def _restore(self, storage: AlertStorage) -> None:
        """Take the firing alerts and the recent history from the store: firing ones are not notified again."""
        for alert in storage.firing():
            if alert.rule in self.rules:
                self._alerts[alert.key] = alert
                self._restored.add(alert.key)
            else:
                # Its rule left the rules file: nobody asked to hear of it any more.
                alert.state, alert.resolved_at = RESOLVED, alert.notified_at or alert.since
                storage.save(alert)
                log.info("alert %s: its rule is gone from the rules file; resolved without a notification", alert.key)
        self._recent.extend(storage.resolved(RECENT))

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
            for key, seen in observed.items():
                notifications.extend(self._seen(key, seen, now, tick_id, leading))
            warming = now < self._grace_until
            for key in [key for key in self._alerts if key not in observed]:
                notifications.extend(self._unseen(key, now, warming, leading))
            if self._held:
                self._held = [(at, alert) for at, alert in self._held if at >= now - HANDOVER_SECONDS]
        if leading:
            self._send(notifications)

    def _seen(self, key: str, seen: Observation, now: float, tick_id: int | None, leading: bool) -> list[Notification]:
        """Move on the alert of a condition that holds: it fires once held long enough, and repeats (with the lock held)."""
        self._restored.discard(key)
        alert = self._alerts.get(key)
        if alert is None:
            alert = self._alerts[key] = new_alert(seen, now)
        alert.value, alert.threshold, alert.message, alert.false_since = seen.value, seen.threshold, seen.text, None
        if alert.state == PENDING and now - alert.since >= seen.rule.for_seconds:
            alert.state, alert.fired_at, alert.notified_at = FIRING, now, now
            alert.episode = episode_id(key, tick_id)
            event = "fire"
        elif alert.state == FIRING and now - (alert.notified_at or now) >= self.config.repeat_seconds:
            alert.notified_at = now
            event = "repeat"
        else:
            return []
        if leading:
            self._save(alert)
        return [notification(alert, seen.rule, event, self.public_url)]

    def _unseen(self, key: str, now: float, warming: bool, leading: bool) -> list[Notification]:
        """Move on the alert of a condition that no longer holds: it resolves once false long enough (with the lock held)."""
        alert = self._alerts[key]
        if alert.state == PENDING:
            del self._alerts[key]
            return []
        if warming and key in self._restored:
            return []  # firing before the restart, and not yet seen either way since
        self._restored.discard(key)
        if alert.false_since is None:
            alert.false_since = now  # false from this tick on; it resolves at a later tick at the earliest
            return []
        if now - alert.false_since < self.rules[alert.rule].for_seconds:
            return []
        alert.state, alert.resolved_at = RESOLVED, now
        if leading:
            self._save(alert)
        else:
            # Kept for a takeover: the store may hold it firing, stored by a leader now gone.
            self._held.append((now, alert))
        del self._alerts[key]
        self._recent.append(alert)
        return [self._notification(alert, "resolve")]

    def _send(self, notifications: Iterable[Notification]) -> None:
        """Queue each notification that has channels for delivery."""
        for message in notifications:
            if self.deliveries is not None and message.urls:
                self.deliveries.send(message)

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
                notifications.append(self._notification(alert, "resolve"))
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
                notifications.append(self._notification(alert, "fire"))
            self._held = []
        return notifications

    def _stored(self, keys: Sequence[str]) -> dict[str, StoredAlert]:
        """Return the store's latest row of each of `keys` it has a row of (none without a store)."""
        return self.storage.latest(keys) if self.storage is not None else {}

    def _notification(self, alert: Alert, event: str) -> Notification:
        """Return what to send for `alert` on `event` ("fire", "repeat" or "resolve")."""
        return notification(alert, self.rules[alert.rule], event, self.public_url)

    def _save(self, alert: Alert) -> None:
        """Queue `alert`'s row for the store (its callers save only while leading)."""
        if self.storage is not None:
            self.storage.save(alert)

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
