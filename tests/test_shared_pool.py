"""The pool on a real Redis, in this process: two pools on one ledger against the embedded pool as the reference."""

import shutil
import signal
import sqlite3
import time
import uuid

import pytest
import redis
from dash.testing.wait import until
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from dash_app.buffer import RealtimeMetricsBuffer
from dash_app.eventlog.connection import Keys, connect
from dash_app.eventlog.follower import LogFollower
from dash_app.eventlog.lease import Leadership, Lease
from dash_app.eventlog.ledger import NotLeader, RedisLedger
from dash_app.eventlog.persister import LogPersister
from dash_app.eventlog.progress import LogProgress
from dash_app.eventlog.recovery import Recovery
from dash_app.eventlog.setup import SideStateSharer
from dash_app.eventlog.shared import SharedLog
from dash_app.eventlog.shared_pool import SharedLicensePool
from dash_app.licenses import LicensePool
from dash_app.licenses.inventory import ToolSpec
from dash_app.licenses.pool import BorrowDenied, PoolUnavailable, UnknownBorrow
from dash_app.recording import EventRecorder
from dash_app.store import Store
from dash_app.testing import RedisServer
from dash_app.testing.clock import FakeClock

SPECS = {
    "Tight": ToolSpec("Tight", total=3, commit_qty=1, max_overage=1, commit_price=10.0, overage_price_per_license=2.0),
    "Roomy": ToolSpec("Roomy", total=8, commit_qty=4, max_overage=4, commit_price=20.0, overage_price_per_license=3.0),
}


@pytest.fixture(scope="module")
def redis_url(tmp_path_factory):
    server = RedisServer(tmp_path_factory.mktemp("redis"))
    yield server.url
    server.stop()


class Process:
    """One app process's data path on the shared log: its pool (a mirror), buffer and follower."""

    def __init__(self, url, prefix, clock):
        self.url = url
        keys = Keys(prefix)
        self.buffer = RealtimeMetricsBuffer(retention_seconds=3600, clock=clock)
        ledger = RedisLedger(connect(url), keys)
        ledger.seed_once([], {})  # a new Redis: as the first process does at start
        snapshot = ledger.snapshot()
        self.progress = LogProgress(snapshot.last_id)
        # Unfenced: these tests send sources' batches without a lease.
        self.pool = SharedLicensePool(
            SPECS, EventRecorder(self.buffer), ledger, clock=clock, progress=self.progress, fence=lambda: ""
        )
        self.pool.load(snapshot)

        def apply(entry_id, events):
            self.pool.apply(events)
            self.pool.recorder.record_many(events)

        self.follower = LogFollower(connect(url), keys.events, self.progress, apply, block_ms=20)
        self.follower.start()

    def recovery(self, store):
        """Return this process's part in rebuilding the pool should Redis lose it, on `store` (not called by itself)."""
        ledger = self.pool.ledger
        return Recovery(connect(self.url), ledger.keys, ledger, self.pool, self.progress, store, "p")

    def stop(self):
        self.follower.stop()


def outcome(call, *args):
    try:
        borrow = call(*args)
    except BorrowDenied as denied:
        return ("denied", denied.reason)
    except UnknownBorrow:
        return ("unknown",)
    return ("ok", None if borrow is None else borrow.is_overage)


OPS = st.lists(
    st.tuples(
        st.sampled_from(["borrow", "return", "observe", "observe_return", "failure", "batch"]),
        st.sampled_from([0, 1]),  # which process
        st.sampled_from(["Tight", "Roomy", "Nowhere"]),
        st.integers(0, 30),  # which borrow to return (index into those granted so far)
    ),
    max_size=40,
)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(ops=OPS)
def test_two_processes_on_one_ledger_decide_as_one_embedded_pool(redis_url, ops):
    clock = FakeClock(1_800_000_000.0)
    prefix = f"t{uuid.uuid4().hex[:12]}"
    processes = [Process(redis_url, prefix, clock), Process(redis_url, prefix, clock)]
    reference = LicensePool(SPECS, EventRecorder(RealtimeMetricsBuffer(retention_seconds=3600, clock=clock)), clock=clock)
    granted = []
    try:
        for n, (op, which, tool, pick) in enumerate(ops):
            clock.advance(1.0)
            pool = processes[which].pool
            if op == "borrow":
                got = outcome(pool.borrow, tool, f"u{n}")
                want = outcome(reference.borrow, tool, f"u{n}")
                assert got == want
                if got[0] == "ok":
                    granted.append((pool.active_borrows(user=f"u{n}")[0].id, reference.active_borrows(user=f"u{n}")[0].id))
            elif op in ("return", "observe_return") and granted:
                shared_id, reference_id = granted[pick % len(granted)]
                got = (
                    outcome(pool.return_license, shared_id)
                    if op == "return"
                    else outcome(pool.observe_return, shared_id, clock())
                )
                assert got == outcome(reference.return_license, reference_id)
            elif op == "observe":
                borrow_id = f"flexlm|x|{n}"
                got = pool.observe_borrow(tool, f"o{n}", clock(), borrow_id)
                want = reference.observe_borrow(tool, f"o{n}", clock(), borrow_id)
                assert got.is_overage == want.is_overage
                granted.append((borrow_id, borrow_id))
            elif op == "failure":
                pool.observe_failure(tool, f"f{n}", "denied by server", clock())
                reference.observe_failure(tool, f"f{n}", "denied by server", clock())
            elif op == "batch":
                # A source's batch: borrows and a return of one of them, sent as one script call.
                with pool.recording_batch(), reference.recording_batch():
                    for k in range(3):
                        borrow_id = f"lmstat|s|{n}|{k}"
                        pool.observe_borrow(tool, f"b{n}", clock(), borrow_id)
                        reference.observe_borrow(tool, f"b{n}", clock(), borrow_id)
                    pool.observe_return(f"lmstat|s|{n}|0", clock())
                    reference.observe_return(f"lmstat|s|{n}|0", clock())
                    with pytest.raises(UnknownBorrow):
                        pool.observe_return(f"lmstat|s|{n}|0", clock())
                    granted.extend((f"lmstat|s|{n}|{k}",) * 2 for k in (1, 2))
        # Each process, once it has applied the log, shows what the one embedded pool shows.
        last = max((p.pool.ledger.snapshot().last_id for p in processes[:1]), default="0-0")
        for process in processes:
            assert process.progress.wait_applied(last, timeout=5)
            assert process.pool.status() == reference.status()
            assert [(b.tool, b.user, b.is_overage) for b in process.pool.active_borrows()] == [
                (b.tool, b.user, b.is_overage) for b in reference.active_borrows()
            ]
            assert process.buffer.get_stats_summary() == reference.recorder.buffer.get_stats_summary()
    finally:
        for process in processes:
            process.stop()


def test_a_batch_sent_again_after_a_lost_answer_is_applied_once(redis_url):
    ledger = RedisLedger(connect(redis_url), Keys(f"t{uuid.uuid4().hex[:12]}"))
    ledger.seed_once([], {})
    commands = [["o", "Roomy", "Roomy", "ann", "1800000000.5", "id-1", None, None, 4], ["f", "Roomy", "bob", "1800000001.0", "x"]]
    first = ledger.apply(commands, once="batch-1")
    again = ledger.apply(commands, once="batch-1")
    assert again[0] == first[0] and first[1] == ["ok", "ok"]
    assert ledger.client.xlen(ledger.keys.events) == 1
    assert ledger.client.hget(ledger.keys.borrowed, "Roomy") == b"1"


def test_a_fenced_batch_of_a_process_without_the_lease_changes_nothing(redis_url):
    client = connect(redis_url)
    keys = Keys(f"t{uuid.uuid4().hex[:12]}")
    ledger = RedisLedger(client, keys)
    ledger.seed_once([], {})
    client.set(keys.lease, "someone-else")
    with pytest.raises(NotLeader):
        ledger.apply([["f", "Roomy", "bob", "1800000001.0", "x"]], fence="me")
    assert client.xlen(keys.events) == 0
    assert ledger.apply([["f", "Roomy", "bob", "1800000001.0", "x"]], fence="someone-else")[1] == ["ok"]


def test_one_of_two_processes_leads_and_the_other_takes_over_when_it_stops(redis_url):
    keys = Keys(f"t{uuid.uuid4().hex[:12]}")
    started = []

    class Service:
        def __init__(self, name):
            self.name = name

        def start(self):
            started.append(("start", self.name))

        def stop(self):
            started.append(("stop", self.name))

    first = Leadership(Lease(connect(redis_url), keys.lease), {"sources": lambda: Service("first")})
    second = Leadership(Lease(connect(redis_url), keys.lease), {"sources": lambda: Service("second")})
    for leadership in (first, second):
        leadership.step()
        leadership.sync_services()
    assert (first.leading, second.leading) == (True, False)
    assert first.lease.fence() == first.lease.token and second.lease.fence() is None
    second.step()
    second.sync_services()
    assert started == [("start", "first")]
    first.stop()  # gives the lease up at once
    second.step()
    second.sync_services()
    assert second.leading and started == [("start", "first"), ("stop", "first"), ("start", "second")]
    second.stop()
    assert started[-1] == ("stop", "second")


def test_two_persisters_sending_the_same_entries_store_them_once(redis_url, tmp_path):
    client = connect(redis_url)
    keys = Keys(f"t{uuid.uuid4().hex[:12]}")
    ledger = RedisLedger(client, keys)
    ledger.seed_once([], {})
    for n in range(5):
        ledger.apply([["o", "Roomy", "Roomy", f"u{n}", f"{1800000000 + n}.25", f"id-{n}", "ws-1", "2.0", 4]])
    stores = [Store(tmp_path / "shared.db"), Store(tmp_path / "shared.db")]
    for store in stores:
        store.start()
    try:
        persisters = [LogPersister(client, keys.events, store, keep_seconds=3600) for store in stores]
        for persister in persisters:
            assert persister.step() == 5  # both read all five entries from the same (empty) position
        for store in stores:
            assert store.flush()
        rows = sqlite3.connect(tmp_path / "shared.db").execute("SELECT borrow_id, ts, host FROM events ORDER BY ts").fetchall()
        assert rows == [(f"id-{n}", 1800000000 + n + 0.25, "ws-1") for n in range(5)]
        # A later start reads on from the stored position: nothing more to queue.
        assert LogPersister(client, keys.events, stores[0], keep_seconds=3600).step() == 0
    finally:
        for store in stores:
            store.stop()


def test_a_follower_reports_redis_down_and_goes_on_where_it_stopped(tmp_path):
    server = RedisServer(tmp_path)
    seen = []
    keys = Keys("f")
    follower = LogFollower(connect(server.url), keys.events, LogProgress(), lambda entry_id, events: seen.extend(events))
    ledger = RedisLedger(connect(server.url), keys)
    try:
        ledger.seed_once([], {})
        ledger.apply([["f", "Roomy", "ann", "1800000000.0", "x"]])
        assert follower.step() == 1
        server.stop()
        with pytest.raises(redis.RedisError):
            follower.step()
        server.start()
        ledger.apply([["f", "Roomy", "bob", "1800000001.0", "x"]])
        assert follower.step() == 1
        assert [e.user for e in seen] == ["ann", "bob"]
        assert seen[0].ts == 1800000000.0  # times come back exact
    finally:
        server.stop()


def test_a_redis_that_lost_its_data_decides_nothing_until_the_leader_fills_it_again(redis_url):
    clock = FakeClock(1_800_000_000.0)
    prefix = f"t{uuid.uuid4().hex[:12]}"
    process = Process(redis_url, prefix, clock)
    try:
        keys = Keys(prefix)
        held = [process.pool.borrow("Tight", f"u{n}") for n in range(2)]  # commit 1, max overage 1: full
        with pytest.raises(BorrowDenied):
            process.pool.borrow("Tight", "late")
        client = connect(redis_url)
        client.delete(*[key for key in client.keys(f"{prefix}:*") if key != keys.events.encode()])
        # Counts gone: deciding now would grant past the limit, so nothing is decided.
        with pytest.raises(PoolUnavailable):
            process.pool.borrow("Tight", "late")
        with pytest.raises(PoolUnavailable):
            process.pool.return_license(held[0].id)
        # The leader fills Redis again from its copy: the limit holds, and the open borrows can be returned.
        borrows, charges = process.pool.open_state()
        assert process.pool.ledger.seed_once(borrows, charges)
        with pytest.raises(BorrowDenied):
            process.pool.borrow("Tight", "late")
        assert process.pool.return_license(held[0].id).user == "u0"
        assert process.pool.status(tools={"Tight"})[0]["borrowed"] == 1
    finally:
        process.stop()


def test_a_borrow_whose_answer_was_lost_is_returned_if_granted_and_never_granted_later(redis_url):
    clock = FakeClock(1_800_000_000.0)
    prefix = f"t{uuid.uuid4().hex[:12]}"
    process = Process(redis_url, prefix, clock)
    try:
        ledger = process.pool.ledger

        def command(borrow_id):
            return ["b", "Roomy", "Roomy", "ann", "1800000000.0", borrow_id, None, None, 8, 4, 4]

        # As if the answers to these were lost on the way back: the script ran, the caller saw an error. The answer
        # key of the second one expired before Redis answered again.
        for borrow_id in ("lost-1", "expired-1"):
            entry, _answers = ledger.apply([command(borrow_id)], once=borrow_id)
            assert process.progress.wait_applied(entry, 5)
        connect(redis_url).delete(Keys(prefix).once("expired-1"))
        process.pool._in_doubt.extend(["lost-1", "expired-1", "still-queued"])
        process.pool.settle_doubts()
        assert process.pool.active_borrows() == [] and process.pool._in_doubt == []
        # The third request reaches Redis only now (it was still on its way): it grants nothing.
        assert ledger.apply([command("still-queued")], once="still-queued") == (None, ["cancelled"])
        assert process.pool.active_borrows() == []
        events = process.buffer.get_recent_events(3600 * 24 * 365)
        assert sorted(e["id"] for e in events["borrows"]) == sorted(e["id"] for e in events["returns"]) == ["expired-1", "lost-1"]
    finally:
        process.stop()


def test_a_redis_back_from_an_older_copy_refuses_until_the_pool_is_rebuilt(tmp_path):
    server = RedisServer(tmp_path)
    clock = FakeClock(1_800_000_000.0)
    prefix = f"t{uuid.uuid4().hex[:12]}"
    process = Process(server.url, prefix, clock)
    store = Store(tmp_path / "db.sqlite")
    store.start()
    recovery = process.recovery(store)
    try:
        first = process.pool.borrow("Tight", "u0")
        server.stop()  # its files are complete: the copy an operator (or a crash) may bring back later
        shutil.copytree(server.dir, tmp_path / "older")
        server.start()
        reconnect(process.pool.ledger.client, recovery.client)
        second = process.pool.borrow("Tight", "u1")  # commit 1, max overage 1: Tight is full now
        assert process.progress.wait_applied(process.pool.last_sent, 5)
        server.stop(signal.SIGKILL)
        shutil.rmtree(server.dir)
        shutil.copytree(tmp_path / "older", server.dir)
        server.start()
        reconnect(process.pool.ledger.client, recovery.client)
        # Redis holds one borrow of Tight where two are open: deciding now would grant past the limit.
        with pytest.raises(PoolUnavailable):
            process.pool.borrow("Tight", "late")
        recovery.check()  # what the follower does when Redis answers again, and every second
        with pytest.raises(BorrowDenied):
            process.pool.borrow("Tight", "late")
        assert process.pool.return_license(second.id).user == "u1"
        assert process.pool.status(tools={"Tight"})[0]["borrowed"] == 1
        # New entries come after every one this process has read, so its follower applies them.
        third = process.pool.borrow("Tight", "u2")
        assert process.progress.wait_applied(process.pool.last_sent, 5)
        assert sorted(b.id for b in process.pool.active_borrows()) == sorted([first.id, third.id])
    finally:
        process.stop()
        store.stop()
        server.stop()


def reconnect(*clients):
    """Drop the connections a restarted server closed: the next command opens a new one (clients never retry)."""
    for client in clients:
        client.connection_pool.disconnect()


def test_a_lease_whose_renewals_stall_stops_leading_before_it_can_expire(redis_url):
    prefix = f"t{uuid.uuid4().hex[:12]}"
    lease = Lease(connect(redis_url), Keys(prefix).lease, ttl=3.2, renew_every=0.1)
    assert lease.hold_seconds == pytest.approx(1.1)
    lease.step()  # taken; no thread renews it
    assert lease.leading and lease.fence() == lease.token
    time.sleep(lease.hold_seconds + 0.1)
    assert not lease.leading and lease.fence() is None  # the key still holds, but a renewal is overdue
    lease.step()
    assert lease.leading


def test_a_lease_is_renewed_and_given_up_only_by_its_holder_and_expires_when_the_holder_dies(redis_url):
    client = connect(redis_url)
    key = Keys(f"t{uuid.uuid4().hex[:12]}").lease
    first, second = (Lease(connect(redis_url), key, ttl=2.5, renew_every=0.1) for _ in range(2))
    assert first.step() and not second.step()  # first takes it; second sees it held
    client.pexpire(key, 300)
    assert not first.step() and client.pttl(key) > 1000  # renewed to its full time to live by its holder
    second.release()  # not its holder: the key stays
    assert client.get(key) == first.token.encode()
    # The holder dies (renews no more): the key expires and the other takes it.
    deadline = time.monotonic() + 10
    while not second.step():
        assert time.monotonic() < deadline, "the lease of a dead holder never expired"
        time.sleep(0.05)
    assert second.fence() == second.token and client.get(key) == second.token.encode()
    assert first.step() and not first.leading  # back: another holds it now, so it renews nothing and leads no more
    first.release()
    assert client.get(key) == second.token.encode()
    second.release()
    assert client.get(key) is None


def test_waiting_for_the_store_covers_this_process_s_own_entries_its_follower_has_not_read(redis_url, tmp_path):
    prefix = f"t{uuid.uuid4().hex[:12]}"
    keys = Keys(prefix)
    buffer = RealtimeMetricsBuffer(retention_seconds=3600)
    pool = SharedLicensePool(SPECS, EventRecorder(buffer), RedisLedger(connect(redis_url), keys))
    pool.ledger.seed_once([], {})
    follower = LogFollower(connect(redis_url), keys.events, LogProgress(), lambda entry_id, events: None)  # not started
    shared = SharedLog(connect(redis_url), keys, pool, follower, Leadership(Lease(connect(redis_url), keys.lease), {}), [])
    store = Store(str(tmp_path / "db.sqlite"))
    store.start()
    persister = LogPersister(connect(redis_url), keys.events, store, 3600)
    try:
        pool.borrow("Roomy", "ann")
        persister.start()
        assert shared.wait_persisted(store, 10)
        assert store.log_position(keys.events) == pool.last_sent
    finally:
        persister.stop()
        store.stop()


def test_a_log_line_read_again_counts_once(redis_url):
    clock = FakeClock(1_800_000_000.0)
    prefix = f"t{uuid.uuid4().hex[:12]}"
    process = Process(redis_url, prefix, clock)
    try:
        pool = process.pool
        for _ in range(2):  # the same lines twice, as a new leader reads what its predecessor had not checkpointed
            with pool.recording_batch():
                pool.observe_borrow("Roomy", "ann", clock(), "flexlm|lic|file:7")
                pool.observe_return("flexlm|lic|file:7", clock() + 1)
                pool.observe_failure("Roomy", "bob", "denied by server", clock(), "flexlm|lic|file:9")
        stats = process.buffer.get_stats_summary()
        assert (stats["borrow_count"], stats["return_count"], stats["failure_count"]) == (1, 1, 1)
        # An id from a poll is not a line: the same id again, once returned, is a new checkout.
        with pool.recording_batch():
            pool.observe_borrow("Roomy", "cy", clock(), "lmstat|s|d|1")
            pool.observe_return("lmstat|s|d|1", clock() + 1)
        with pool.recording_batch():
            pool.observe_borrow("Roomy", "cy", clock() + 2, "lmstat|s|d|1")
        assert [b.id for b in pool.active_borrows()] == ["lmstat|s|d|1"]
    finally:
        process.stop()


def test_a_borrow_its_process_has_not_applied_is_not_acknowledged_and_is_settled(redis_url):
    """An answer counts once the answering process holds the entry: only then could it hand it back to an empty Redis."""
    clock = FakeClock(1_800_000_000.0)
    prefix = f"t{uuid.uuid4().hex[:12]}"
    process = Process(redis_url, prefix, clock)
    process.follower.stop()  # this process reads the log no more: it cannot hold what it adds
    try:
        with pytest.raises(PoolUnavailable):
            process.pool.borrow("Roomy", "ann")
        [doubt] = process.pool._in_doubt
        ledger = process.pool.ledger
        assert ledger.snapshot().active[0].id == doubt  # granted in Redis all the same
        process.pool.settle_doubts()
        assert ledger.snapshot().active == []  # told 503, so returned again: no license is held by nobody
    finally:
        process.stop()


def test_a_process_taking_its_first_copy_of_the_pool_does_not_count_it_as_a_rebuild(redis_url, tmp_path, caplog):
    keys = Keys(f"t{uuid.uuid4().hex[:12]}")
    ledger = RedisLedger(connect(redis_url), keys)
    ledger.seed_once([], {})  # filled by the first process
    ledger.apply([["o", "Roomy", "Roomy", "ann", "1800000000.5", "id-1", None, None, 4]])
    progress = LogProgress()
    pool = SharedLicensePool(SPECS, EventRecorder(RealtimeMetricsBuffer(retention_seconds=3600)), ledger, progress=progress)
    store = Store(tmp_path / "db.sqlite")
    store.start()
    try:
        recovery = Recovery(connect(redis_url), keys, ledger, pool, progress, store, "second")
        with caplog.at_level("WARNING", logger="dash_app.eventlog.recovery"):
            recovery.take_first_copy()  # what a second process does at start
        assert [b.id for b in pool.active_borrows()] == ["id-1"]
        assert caplog.records == [] and progress.epoch == 0  # nothing was lost: nobody's wait is cut short
    finally:
        store.stop()


def test_reservations_and_queues_the_leader_polls_show_the_same_in_every_process(redis_url, tmp_path):
    prefix = f"t{uuid.uuid4().hex[:12]}"
    keys = Keys(prefix)
    clock = FakeClock(1_800_000_000.0)
    leader, other = Process(redis_url, prefix, clock), Process(redis_url, prefix, clock)
    store = Store(str(tmp_path / "db.sqlite"))
    store.start()
    sharers = []
    try:
        for process in (leader, other):
            leadership = Leadership(Lease(connect(redis_url), keys.lease), {})
            leadership.step()
            recovery = process.recovery(store)
            sharers.append(SideStateSharer(connect(redis_url), keys, process.pool, recovery, leadership, lambda running: [], []))
        assert [s.leadership.leading for s in sharers] == [True, False]
        leader.pool.observe_total("Polled", 10, "27000@lic01")
        leader.pool.observe_queue("Roomy", 2, 1, "27000@lic01")
        leader.pool.observe_queue("Roomy", 1, 4, "27001@lic02")
        leader.pool.observe_queue("Polled", 3, 2, "27000@lic01")

        def shown(tool):
            for sharer in sharers:  # each process's idle step: the leader shares, the other takes
                sharer.step()
            return {k: other.pool.tool_status(tool)[k] for k in ("total", "reserved", "queued", "available")}

        until(lambda: shown("Roomy") == {"total": 8, "reserved": 3, "queued": 5, "available": 5}, timeout=10)
        assert shown("Polled") == {"total": 10, "reserved": 3, "queued": 2, "available": 7}
        assert other.pool.status() == leader.pool.status()
        # lic02 reserves nothing now: it stops counting in every process.
        leader.pool.observe_queue("Roomy", 0, 0, "27001@lic02")
        until(lambda: shown("Roomy") == {"total": 8, "reserved": 2, "queued": 1, "available": 6}, timeout=10)
        assert other.pool.status() == leader.pool.status()
    finally:
        for sharer in sharers:
            sharer.leadership.stop()
        leader.stop()
        other.stop()
        store.stop()
