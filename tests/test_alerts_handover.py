"""Alerts across a change of lease holder (--redis): what fired or resolved while no process led is stored and notified
once by the next leader, which goes on with the rows the old one stored. Each process here has its own store on one
database file and its own delivery queue to one real webhook receiver, as processes of a deployment do."""

import sqlite3
import time

import pytest

from dash_app.alerts.conditions import Facts
from dash_app.alerts.delivery import Deliveries
from dash_app.alerts.engine import HANDOVER_SECONDS, AlertEngine, episode_id
from dash_app.alerts.facts import DenialWindow, OpenCheckouts
from dash_app.alerts.redaction import check_url
from dash_app.alerts.rules import parse_rules
from dash_app.alerts.storage import AlertStorage
from dash_app.store import Store
from dash_app.testing.receivers import WebhookReceiver

T = float(int(time.time()))
KEY = "disk"  # a not_persisting rule's key is its name: it holds while a tick says writes fail
FIRING, RESOLVED = "[licenses] FIRING disk", "[licenses] RESOLVED disk"


def tick_id(at):
    return round(at * 1000)


def facts(now, tools, persisted):
    return Facts(now, tools, persisted, DenialWindow(0), OpenCheckouts(), None, list)


class Process:
    """One process of a deployment on Redis, as far as alerts go: its store, its delivery queue, its engine."""

    def __init__(self, db, rules, leads):
        self.store = Store(db)
        self.store.start()
        self.deliveries = Deliveries()  # one channel: delivered in the order sent
        self.deliveries.start()
        self.leads = leads  # whether it holds the lease now; tests hand it over by setting this
        storage = AlertStorage(self.store)
        self.engine = AlertEngine(rules, self.deliveries, storage, "http://x", facts, leading=lambda: self.leads)

    def tick(self, at, failing):
        """Run the tick at `at` (its id from its time, as the ticker's are), with the database failing or not."""
        self.engine.on_tick(at, [], not failing, tick_id(at))

    def lose_lease(self):
        """Stop leading, with what it stored written (what a dead leader had not written is lost, and not tested)."""
        assert self.store.flush()
        self.leads = False

    def stop(self):
        self.deliveries.stop()
        self.store.stop()


@pytest.fixture
def deployment(tmp_path):
    """Start processes on one database, notifying one webhook receiver; yield (start, heard, stored)."""
    db = tmp_path / "alerts.db"
    started = []
    with WebhookReceiver() as hook:
        rules = parse_rules({"notify": [hook.url()], "rules": [{"name": KEY, "kind": "not_persisting"}]}, check_url)

        def start(leads):
            process = Process(db, rules, leads)
            started.append(process)
            return process

        def heard():
            """Return the titles the receiver got, once every process delivered all it sent."""
            for process in started:
                assert process.deliveries.wait_idle(30)
            return [request.body["title"] for request in hook.requests]

        def stored():
            """Return (episode, state) of every row of the alert, oldest first, once every process wrote all it queued."""
            for process in started:
                assert process.store.flush()
            with sqlite3.connect(db) as conn:
                return conn.execute("SELECT episode, state FROM alerts WHERE key = ? ORDER BY fired_at", (KEY,)).fetchall()

        yield start, heard, stored
        for process in started:
            process.stop()


def test_the_next_leader_goes_on_with_the_old_leaders_firing_and_resolves_its_row(deployment):
    start, heard, stored = deployment
    a, b = start(leads=True), start(leads=False)
    a.tick(T, failing=True)
    assert heard() == [FIRING] and stored() == [(episode_id(KEY, tick_id(T)), "firing")]
    # B ticks from later on (it started late): it fires the alert on another tick, so under another episode id.
    b.tick(T + 10, failing=True)
    a.lose_lease()  # A dies; B takes the lease
    b.leads = True
    b.tick(T + 20, failing=True)
    assert heard() == [FIRING]  # told once already, by A
    b.tick(T + 30, failing=False)
    b.tick(T + 31, failing=False)
    assert heard() == [FIRING, RESOLVED]
    assert stored() == [(episode_id(KEY, tick_id(T)), "resolved")]  # A's row, not a second one left firing


def test_an_alert_that_fires_while_nobody_leads_is_stored_and_notified_once_by_the_next_leader(deployment):
    start, heard, stored = deployment
    a, b = start(leads=True), start(leads=False)
    for process in (a, b):
        process.tick(T, failing=False)
    a.lose_lease()  # A dies; nobody holds the lease for a few seconds
    b.tick(T + 1, failing=True)
    b.tick(T + 2, failing=True)
    assert heard() == [] and stored() == []
    b.leads = True
    b.tick(T + 3, failing=True)
    b.tick(T + 4, failing=True)
    assert heard() == [FIRING]
    assert stored() == [(episode_id(KEY, tick_id(T + 1)), "firing")]
    b.tick(T + 5, failing=False)
    b.tick(T + 6, failing=False)
    assert heard() == [FIRING, RESOLVED]
    assert stored() == [(episode_id(KEY, tick_id(T + 1)), "resolved")]


def test_an_alert_that_resolves_while_nobody_leads_is_resolved_in_the_store_and_notified_by_the_next_leader(deployment):
    start, heard, stored = deployment
    a, b = start(leads=True), start(leads=False)
    for process in (a, b):
        process.tick(T, failing=True)
    assert heard() == [FIRING]
    a.lose_lease()  # A dies; the database works again before B takes the lease
    b.tick(T + 1, failing=False)
    b.tick(T + 2, failing=False)
    assert b.engine.firing() == [] and heard() == [FIRING]
    b.leads = True
    b.tick(T + 4, failing=False)
    b.tick(T + 5, failing=False)
    assert heard() == [FIRING, RESOLVED]
    assert stored() == [(episode_id(KEY, tick_id(T)), "resolved")]


def test_a_process_that_loses_and_regains_the_lease_tells_what_ended_and_began_meanwhile(deployment):
    start, heard, stored = deployment
    a = start(leads=True)
    a.tick(T, failing=True)
    a.lose_lease()  # Redis was away for a while: the lease is lost, and nobody else took it
    a.tick(T + 1, failing=False)
    a.tick(T + 2, failing=False)  # resolved
    a.tick(T + 3, failing=True)  # fires again: a new episode
    assert heard() == [FIRING]
    a.leads = True
    a.tick(T + 4, failing=True)
    assert heard() == [FIRING, RESOLVED, FIRING]
    assert stored() == [(episode_id(KEY, tick_id(T)), "resolved"), (episode_id(KEY, tick_id(T + 3)), "firing")]
    a.tick(T + 5, failing=True)
    assert heard() == [FIRING, RESOLVED, FIRING]  # led since: nothing is told twice


def test_what_the_old_leader_told_is_not_told_again(deployment):
    start, heard, stored = deployment
    a, b = start(leads=True), start(leads=False)
    for at, failing in ((T, True), (T + 1, False), (T + 2, False), (T + 3, True)):  # fired, resolved, fired again
        for process in (a, b):
            process.tick(at, failing)
    assert heard() == [FIRING, RESOLVED, FIRING]
    a.lose_lease()
    b.leads = True
    b.tick(T + 5, failing=True)
    assert heard() == [FIRING, RESOLVED, FIRING]
    assert stored() == [(episode_id(KEY, tick_id(T)), "resolved"), (episode_id(KEY, tick_id(T + 3)), "firing")]


def test_a_process_that_does_not_lead_holds_resolves_for_handover_seconds_only(deployment):
    start, heard, stored = deployment
    a, b = start(leads=True), start(leads=False)
    for process in (a, b):
        process.tick(T, failing=True)
    a.lose_lease()
    b.tick(T + 1, failing=False)
    b.tick(T + 2, failing=False)  # resolved here, while nobody leads
    b.tick(T + 2 + HANDOVER_SECONDS + 1, failing=False)
    b.leads = True
    b.tick(T + 2 + HANDOVER_SECONDS + 2, failing=False)
    assert heard() == [FIRING]  # too long ago to be a handover's: not kept
