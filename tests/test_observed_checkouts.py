"""Polls diffed into pool events: after every good poll the pool holds exactly what the server reported, checkouts
that stay keep their borrow, a failed poll changes nothing, and a restart counts nothing twice."""

import time
from collections import Counter

from hypothesis import given, settings
from hypothesis import strategies as st

from dash_app.buffer import RealtimeMetricsBuffer
from dash_app.licenses import LicensePool
from dash_app.licenses.inventory import parse_inventory
from dash_app.recording import EventRecorder
from dash_app.sources.observed import ObservedCheckouts
from dash_app.sources.status import Checkout

NOW = float(int(time.time()) - 3600)  # the buffer refuses events from the future
CFG = {"tool": "Cfg", "feature": "DaVinciCfg", "total": 50, "commit_qty": 5, "max_overage": 45}
INVENTORY = parse_inventory([{**CFG, "commit_price": 1, "overage_price_per_license": 1}])

checkout = st.builds(
    Checkout,
    feature=st.sampled_from(["DaVinciCfg", "MULTI"]),
    user=st.sampled_from(["ann", "bob"]),
    host=st.sampled_from(["ws-1", "ws-2", None]),
    version=st.sampled_from(["v5.0", None]),
    handle=st.sampled_from(["lic01/27000 101", "lic01/27000 102"]),
    started_at=st.sampled_from([NOW - 600, NOW - 60, None]),
    licenses=st.integers(1, 3),
)
# A poll is the checkouts it reports, or None for a failed poll.
poll = st.one_of(st.none(), st.lists(checkout, max_size=6))


def expected(checkouts):
    """The licenses held per (tool, user, host, version), counting each checkout's licenses."""
    tools = {"DaVinciCfg": "Cfg"}
    return Counter(
        {
            key: n
            for key, n in Counter(
                (tools.get(c.feature, c.feature), c.user, c.host, c.version) for c in checkouts for _ in range(c.licenses)
            ).items()
        }
    )


def held(pool):
    return Counter((b.tool, b.user, b.host, b.version) for b in pool.active_borrows())


@settings(max_examples=150, deadline=None)
@given(polls=st.lists(poll, min_size=1, max_size=8), restart_at=st.integers(0, 8))
def test_the_pool_holds_what_the_last_good_poll_reported(polls, restart_at):
    pool = LicensePool(INVENTORY, EventRecorder(RealtimeMetricsBuffer()))
    observed = ObservedCheckouts(pool, "lmstat", "27000@lic01")
    last_good: list[Checkout] = []
    ids_by_checkout: dict = {}
    for step, report in enumerate(polls):
        now = NOW + step
        if step == restart_at:
            # A restart: the pool kept its open borrows (as the store restores them); a new observer takes them.
            observed = ObservedCheckouts(pool, "lmstat", "27000@lic01")
            assert observed.held == sum(held(pool).values())
        if report is None:
            continue  # a failed poll: nothing is applied
        before = {b.id for b in pool.active_borrows()}
        observed.apply(report, now)
        last_good = report
        assert held(pool) == expected(last_good)
        after = {b.id: b for b in pool.active_borrows()}
        # Borrowed at the start the server printed (or at the poll), never in the future.
        for borrow_id in after.keys() - before:
            assert after[borrow_id].borrowed_at <= now
        ids_by_checkout = {}
        for borrow in after.values():
            ids_by_checkout.setdefault(borrow.id.rsplit("|", 1)[0], set()).add(borrow.id)
    # The same poll again changes nothing: no borrow comes or goes.
    before = {b.id for b in pool.active_borrows()}
    applied = observed.apply(last_good, NOW + 100)
    assert (applied.borrows, applied.returns) == (0, 0)
    assert {b.id for b in pool.active_borrows()} == before


def test_each_license_of_a_checkout_is_a_borrow_at_its_start_and_returns_come_at_the_poll():
    pool = LicensePool(INVENTORY, EventRecorder(RealtimeMetricsBuffer()))
    observed = ObservedCheckouts(pool, "lmstat", "27000@lic01")
    two = Checkout("DaVinciCfg", "ann", "ws-1", None, "v5.0", "lic01/27000 101", NOW - 600, licenses=2)
    applied = observed.apply([two], NOW)
    assert (applied.borrows, applied.returns) == (2, 0)
    assert [(b.tool, b.borrowed_at, b.host, b.version) for b in pool.active_borrows()] == [("Cfg", NOW - 600, "ws-1", "v5.0")] * 2
    assert all(b.id.startswith("lmstat|27000@lic01|") for b in pool.active_borrows())
    applied = observed.apply([], NOW + 60)
    assert (applied.borrows, applied.returns) == (0, 2)
    assert pool.active_borrows() == []


def test_the_streams_borrow_events_carry_host_version_and_source():
    buffer = RealtimeMetricsBuffer()
    pool = LicensePool(INVENTORY, EventRecorder(buffer))
    observed = ObservedCheckouts(pool, "rlmstat", "5053@rlm01")
    now = time.time()
    observed.apply([Checkout("DaVinciCfg", "ann", "ws-1", None, "5.0", "41", now - 10)], now)
    [event] = buffer.get_recent_events(60)["borrows"]
    assert (event["tool"], event["host"], event["version"], event["source"]) == ("Cfg", "ws-1", "5.0", "rlmstat")


def test_after_a_restart_new_borrow_ids_never_repeat_a_restored_one():
    pool = LicensePool(INVENTORY, EventRecorder(RealtimeMetricsBuffer()))
    first = ObservedCheckouts(pool, "lmstat", "27000@lic01")
    gone = Checkout("DaVinciCfg", "ann", "ws-1", None, "5.0", "h1", NOW - 60)
    kept = Checkout("DaVinciCfg", "bob", "ws-2", None, "5.0", "h2", NOW - 60)
    first.apply([gone, kept], NOW)
    first.apply([kept], NOW + 1)  # ann's serial 1 is returned; bob's 2 stays
    restarted = ObservedCheckouts(pool, "lmstat", "27000@lic01")
    restarted.apply([kept._replace(licenses=2)], NOW + 2)  # bob now holds two: one new borrow
    ids = [b.id for b in pool.active_borrows()]
    assert len(ids) == len(set(ids)) == 2
    restarted.apply([], NOW + 3)
    assert pool.active_borrows() == [] and pool.tool_status("Cfg")["borrowed"] == 0


def test_after_a_restart_an_empty_field_and_a_missing_one_are_two_checkouts():
    """A display "" and no display are different checkouts: after a restart each finds its own borrow again."""
    pool = LicensePool(INVENTORY, EventRecorder(RealtimeMetricsBuffer()))
    without = Checkout("MULTI", "ann", "ws-2", None, None, "lic01/27000 101", NOW - 60)
    empty = without._replace(display="")
    ObservedCheckouts(pool, "lmstat", "27000@lic01").apply([without, empty], NOW)
    before = {b.id for b in pool.active_borrows()}
    applied = ObservedCheckouts(pool, "lmstat", "27000@lic01").apply([without, empty], NOW + 1)
    assert (applied.borrows, applied.returns) == (0, 0)
    assert {b.id for b in pool.active_borrows()} == before


def test_a_feature_served_by_two_servers_has_their_issued_licenses_summed_and_the_earliest_expiry():
    pool = LicensePool(INVENTORY, EventRecorder(RealtimeMetricsBuffer()))
    pool.observe_total("F", 10, "27000@lic01")
    pool.observe_total("F", 10, "27000@lic02")
    pool.observe_expiry("F", "permanent", "27000@lic01")
    pool.observe_expiry("F", "2027-03-31", "27000@lic02")
    entry = pool.tool_status("F")
    assert (entry["total"], entry["available"], entry["expiry"]) == (20, 20, "2027-03-31")
    pool.observe_total("F", 12, "27000@lic01")  # a poll later: lic01 issues more now
    assert pool.tool_status("F")["total"] == 22


@settings(max_examples=60, deadline=None)
@given(st.lists(st.lists(checkout.map(lambda c: c._replace(user="bad\x01") if c.licenses == 3 else c), max_size=8), max_size=8))
def test_a_poll_diffed_by_its_changes_borrows_and_returns_as_one_counted_whole(polls):
    """Whole polls are diffed by the checkouts that changed: the same borrows (ids and all), returns and refusals.

    The other observer is told each poll is whole for every feature, which counts every checkout again; a user name
    the pool refuses (here every checkout of 3 licenses) leaves its key short, and each poll tries it again.
    """
    every = {"DaVinciCfg", "MULTI"}
    pools = [LicensePool(INVENTORY, EventRecorder(RealtimeMetricsBuffer())) for _ in range(2)]
    observers = [ObservedCheckouts(pool, "lmstat", "27000@lic01") for pool in pools]
    for step, report in enumerate(polls + polls[:1]):
        applied = [observer.apply(report, NOW + step, only) for observer, only in zip(observers, (None, every))]
        assert applied[0] == applied[1]
        first, second = ([(b.id, b.tool, b.user, b.host, b.version, b.borrowed_at) for b in p.active_borrows()] for p in pools)
        assert first == second
