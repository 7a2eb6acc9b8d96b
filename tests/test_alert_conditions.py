"""Which conditions hold, from the facts the listeners keep, equals a brute-force reading of every recorded event."""

import time

from hypothesis import given, settings
from hypothesis import strategies as st

from dash_app.alerts.conditions import Facts, evaluate
from dash_app.alerts.engine import AlertEngine
from dash_app.alerts.facts import DenialWindow, OpenCheckouts, OverageLedger, period_start
from dash_app.alerts.rules import KINDS, parse_rules
from dash_app.buffer import RealtimeMetricsBuffer
from dash_app.events import BORROW, FAILURE, RETURN
from dash_app.licenses import LicensePool
from dash_app.licenses.inventory import parse_inventory
from dash_app.recording import EventRecorder

NOW = float(int(time.time()))
TOOLS = [
    {"tool": "A", "total": 4, "commit_qty": 2, "max_overage": 2, "commit_price": 10, "overage_price_per_license": 100},
    {"tool": "B", "total": 2, "commit_qty": 1, "max_overage": 1, "commit_price": 10, "overage_price_per_license": 300},
]
RULES = parse_rules(
    {
        "rules": [
            {"name": "half", "kind": "in_use_percent", "tool": "*", "above": 50},
            {"name": "full", "kind": "in_use_percent", "tool": "B", "above": 100},
            {"name": "denials", "kind": "denials", "tool": "*", "count": 2, "within_seconds": 600},
            {"name": "held", "kind": "held_longer_than", "tool": "*", "seconds": 3600},
            {"name": "budget", "kind": "overage_cost", "tool": "*", "above": 250, "period": "day"},
        ]
    },
    lambda url: None,
)

# One step: borrow (tool, user, seconds ago), return the n-th open borrow, or a denial (tool, seconds ago).
step = st.one_of(
    st.tuples(st.just("borrow"), st.sampled_from("AB"), st.integers(0, 3), st.floats(0, 3 * 86400)),
    st.tuples(st.just("return"), st.sampled_from("AB"), st.integers(0, 9), st.floats(0, 0)),
    st.tuples(st.just("deny"), st.sampled_from("AB"), st.integers(0, 3), st.floats(0, 1200)),
)


def reference(events, status, now):
    """Every key that holds, read from the whole list of recorded events."""
    keys = set()
    held = {e.borrow_id: e for e in events if e.kind == BORROW}
    for e in events:
        if e.kind == RETURN:
            held.pop(e.borrow_id, None)
    for entry in status:
        tool, total = entry["tool"], entry["total"]
        in_use = sum(1 for b in held.values() if b.tool == tool)
        if total and 100 * in_use / total >= 50:
            keys.add(f"half|{tool}")
        if tool == "B" and total and 100 * in_use / total >= 100:
            keys.add("full|B")
        denials = sum(1 for e in events if e.kind == FAILURE and e.tool == tool and e.ts >= now - 600)
        if denials >= 2:
            keys.add(f"denials|{tool}")
        start = period_start("day", now)
        overage = sum(1 for e in events if e.kind == BORROW and e.tool == tool and e.is_overage and e.ts >= start)
        if overage * entry["overage_price_per_license"] > 250:
            keys.add(f"budget|{tool}")
    keys.update(f"held|{b.borrow_id}" for b in held.values() if b.ts < now - 3600)
    return keys


@settings(max_examples=200, deadline=None)
@given(steps=st.lists(step, max_size=40))
def test_the_conditions_that_hold_are_those_a_brute_force_reading_finds(steps):
    recorded = []

    class Keep:
        def on_events(self, events):
            recorded.extend(events)

    denials, checkouts = DenialWindow(600), OpenCheckouts()
    overage = OverageLedger(["day"], lambda start: {}, NOW)
    recorder = EventRecorder(RealtimeMetricsBuffer(retention_seconds=4 * 86400), [Keep(), denials, checkouts, overage])
    pool = LicensePool(parse_inventory(TOOLS), recorder)
    for kind, tool, n, ago in steps:
        if kind == "borrow":
            # Observed borrows: the server decided, late and out of order (a log read behind), past the limits too.
            pool.observe_borrow(tool, f"u{n}", NOW - ago)
        elif kind == "return":
            open_ = [b for b in pool.active_borrows() if b.tool == tool]
            if open_:
                pool.observe_return(open_[n % len(open_)].id, NOW)
        else:
            pool.observe_failure(tool, f"u{n}", "exhausted", NOW - ago)
    facts = Facts(NOW, pool.status(), True, denials, checkouts, overage, lambda: [])
    assert {o.key for o in evaluate(RULES.rules, facts)} == reference(recorded, pool.status(), NOW)


def test_an_overage_budget_alert_resolves_when_its_period_ends():
    denials, checkouts = DenialWindow(0), OpenCheckouts()
    day = period_start("day", NOW)
    # The store holds one overage borrow of B today, none since tomorrow began.
    overage = OverageLedger(["day"], lambda start: {"B": 1} if start == day else {}, day + 3600)
    recorder = EventRecorder(RealtimeMetricsBuffer(retention_seconds=4 * 86400), [denials, checkouts, overage])
    pool = LicensePool(parse_inventory(TOOLS), recorder)
    engine = AlertEngine(
        RULES, None, None, "http://x", lambda now, tools, p: Facts(now, tools, p, denials, checkouts, overage, list)
    )
    engine.on_tick(day + 3600, pool.status(), True)
    assert [a.key for a in engine.firing()] == ["budget|B"]  # 300 > 250
    engine.on_tick(day + 86400, pool.status(), True)  # a new day: nothing spent yet; false from this tick
    engine.on_tick(day + 86401, pool.status(), True)
    assert engine.firing() == [] and [a.key for a in engine.recent()] == ["budget|B"]


def test_after_a_restart_a_firing_alert_waits_for_its_source_to_say_how_it_is(tmp_path):
    from dash_app.alerts.storage import AlertStorage
    from dash_app.store import Store

    rules = parse_rules({"rules": [{"name": "down", "kind": "source_down"}]}, lambda url: None)
    store = Store(tmp_path / "a.db")
    store.start()
    sources = [{"kind": "lmstat", "name": "27000@lic01", "state": "down", "down_since": None, "last_error": "x"}]

    def facts(now, tools, persisted):
        return Facts(now, tools, persisted, DenialWindow(0), OpenCheckouts(), None, lambda: sources)

    first = AlertEngine(rules, None, AlertStorage(store), "http://x", facts, grace_seconds=30)
    first.on_tick(NOW, [], True)
    assert [a.key for a in first.firing()] == ["down|27000@lic01"]
    assert store.flush()
    # Restarted: the source counts as up until its first poll fails. Within the grace time that resolves nothing.
    sources[0]["state"] = "up"
    again = AlertEngine(rules, None, AlertStorage(store), "http://x", facts, grace_seconds=30)
    for second in (100, 101, 120, 129):
        again.on_tick(NOW + second, [], True)
    assert [a.key for a in again.firing()] == ["down|27000@lic01"]
    sources[0]["state"] = "down"  # the poll failed: still the same firing alert, not a new one
    again.on_tick(NOW + 130, [], True)
    assert [(a.key, a.fired_at) for a in again.firing()] == [("down|27000@lic01", NOW)]
    sources[0]["state"] = "up"  # seen since the restart: from now on it resolves as usual
    again.on_tick(NOW + 131, [], True)
    again.on_tick(NOW + 132, [], True)
    assert again.firing() == []
    store.stop()


def test_a_source_down_alert_says_the_errors_kind_and_never_its_own_words():
    rules = parse_rules({"rules": [{"name": "down", "kind": "source_down"}]}, lambda url: None)
    line = "alice.realname ws-secret-host ws-secret-host (v5.0) (lic01/27000 4200), start Sun 12/6 9:30"
    error = {"kind": "exit status 1", "server": "27000@lic01", "detail": line}
    polled = {"kind": "lmstat", "name": "27000@lic01", "state": "down", "last_error": f"exit status 1: {line}", "error": error}
    # An entry of an older leader (--redis) has no structured error: its last_error is never said.
    older = {"kind": "rlmstat", "name": "5053@rlm01", "state": "down", "last_error": f"exit status 1: {line}"}
    facts = Facts(NOW, [], True, DenialWindow(0), OpenCheckouts(), None, lambda: [polled, older])
    said = {seen.key: seen.text for seen in evaluate(rules.rules, facts)}
    assert said == {
        "down|27000@lic01": "lmstat 27000@lic01 is down: exit status 1",
        "down|5053@rlm01": "rlmstat 5053@rlm01 is down",
    }


def test_a_rule_of_every_kind_is_evaluated_and_the_down_sources_are_asked_for_once_a_tick():
    asked = []
    sources = [{"kind": "lmstat", "name": "27000@lic01", "state": "down", "down_since": None, "error": {"kind": "timeout"}}]
    every = [
        {"name": "in-use", "kind": "in_use_percent", "above": 0},
        {"name": "denials", "kind": "denials", "count": 1, "within_seconds": 60},
        {"name": "held", "kind": "held_longer_than", "seconds": 60},
        {"name": "budget", "kind": "overage_cost", "above": 0, "period": "day"},
        {"name": "down", "kind": "source_down"},
        {"name": "down-too", "kind": "source_down", "for_seconds": 60},
        {"name": "expiring", "kind": "expires_within", "days": 30},
        {"name": "disk", "kind": "not_persisting"},
    ]
    rules = parse_rules({"rules": every}, lambda url: None)
    assert {rule.kind for rule in rules.rules} == set(KINDS)
    denials, checkouts = DenialWindow(60), OpenCheckouts([(NOW - 120, "b1", "A", "u1")])
    denials.load([(NOW - 1, "A")])
    overage = OverageLedger(["day"], lambda start: {"B": 1}, NOW)
    status = [{"tool": "A", "total": 4, "borrowed": 1, "expiry": "2000-01-01"}, {"tool": "B", "total": 2, "borrowed": 0}]
    status[1]["overage_price_per_license"] = 300

    def down():
        asked.append(1)
        return sources

    facts = Facts(NOW, status, False, denials, checkouts, overage, down)
    keys = [o.key for o in evaluate(rules.rules, facts)]
    assert keys == [
        "in-use|A",
        "in-use|B",
        "denials|A",
        "held|b1",
        "budget|B",
        "down|27000@lic01",
        "down-too|27000@lic01",
        "expiring|A",
        "disk",
    ]
    assert asked == [1]
    evaluate(rules.rules, facts)
    assert asked == [1, 1]  # asked again on the next tick: what is down changes
