"""Several app processes on one real Redis (--redis): one pool, one event log, the store written once, failover."""

import json
import os
import signal
import threading
import time
import uuid
from collections import Counter

import pytest
import requests
from sqlalchemy import text

from dash_app.store import Store
from dash_app.testing import RedisServer, ServerProcess
from dash_app.testing.commands import run_refused
from dash_app.testing.servers import stop_all
from dash_app.testing.sse_client import SseClient
from tests.flexlm_expected import LIC01, LIC01_EVENTS, LIC01_STATUS, RETENTION_HOURS, TOOLS_FILE
from tests.stream_client import apply_delta, new_client, replayed, replayed_keys
from tests.test_flexlm_backfill import ingest, ingest_here
from tests.test_server_polling import FAKE_LMUTIL, lmstat_output, starts, wait_for

TOOL = "GreenHills Multi IDE"


@pytest.fixture
def redis_server(tmp_path):
    """A real redis-server on a free port, stopped after the test."""
    server = RedisServer(tmp_path)
    yield server
    server.stop()


@pytest.fixture
def shared_db(request, tmp_path):
    """The database the cluster shares: a SQLite file, or (parametrised indirectly) one on the session's PostgreSQL."""
    if getattr(request, "param", "sqlite") == "sqlite":
        return str(tmp_path / "shared.db")
    return request.getfixturevalue("postgres").create_database(f"shared_{uuid.uuid4().hex[:10]}")


@pytest.fixture
def cluster(tmp_path, redis_server, shared_db):
    """Start app processes on the test's Redis and one shared database; all are stopped after the test."""
    processes = []

    def start(**env):
        settings = {"DASH_APP_REDIS_URL": redis_server.url, "DASH_APP_DB": shared_db}
        settings.update({k: str(v) for k, v in env.items()})
        process = ServerProcess(settings, tmp_path)
        processes.append(process)
        return process

    yield start
    stop_all(processes)


def health(server):
    response = requests.get(server.url + "/healthz", timeout=5)
    return response.status_code, response.json()


def borrowed(server, tool=TOOL):
    return requests.get(f"{server.url}/licenses/{tool}/status", timeout=5).json()["borrowed"]


def events_export(server):
    return requests.get(server.url + "/realtime/export?kind=events&format=json", timeout=10).json()


def caught_up(*servers):
    """Wait until every server has applied the same last entry of the log; return it."""

    def same():
        entries = {health(s)[1]["last_entry"] for s in servers}
        return len(entries) == 1 and entries.pop()

    return wait_for(same, "every process at the same entry of the log")


def stored_events(db):
    """Return the events in the shared database, and its position in the log."""
    store = Store(db)
    try:
        with store.snapshot() as conn:
            rows = [tuple(r) for r in conn.execute(text('SELECT kind, borrow_id, "user", tool FROM events'))]
            position = [tuple(r) for r in conn.execute(text("SELECT entry_id FROM log_positions"))]
    finally:
        store.close()
    return rows, position


def persisted(db_path, entry):
    """Wait until the store holds the log up to `entry`; return its events."""

    def done():
        rows, position = stored_events(db_path)
        return position == [(entry,)] and rows

    return wait_for(done, f"the store at entry {entry}")


def polled_entries(server, name):
    """Return the /sources entries of the polled server `name` (none until the leader has shared them)."""
    return [e for e in requests.get(server.url + "/sources", timeout=5).json()["sources"] if e["name"] == name]


def leader_and_other(a, b):
    """Return the process that holds the lease first, then the other."""
    wait_for(lambda: health(a)[1]["leader"] or health(b)[1]["leader"], "a leader")
    return (a, b) if health(a)[1]["leader"] else (b, a)


def test_a_borrow_through_one_process_shows_in_the_others_status_stream_and_page(cluster, dash_duo):
    a, b = cluster(DASH_APP_STREAM_INTERVAL=0.25), cluster(DASH_APP_STREAM_INTERVAL=0.25)
    with SseClient(b.url + "/realtime/stream?delta=1") as stream:
        first = stream.next_message()["data"]
        assert first["mode"] == "full" and first["recent_events"]["borrows"] == []
        response = requests.post(a.url + "/licenses/borrow", json={"tool": TOOL, "user": "ada"}, headers=a.headers(), timeout=5)
        assert response.status_code == 200
        borrow_id = response.json()["id"]
        # The other process's REST view, then its stream, show the borrow made through the first.
        wait_for(lambda: borrowed(b) == 1, "the borrow in the other process's status")
        assert [x["id"] for x in requests.get(b.url + "/borrows", timeout=5).json()] == [borrow_id]
        message = wait_for(lambda: (m := stream.next_message()["data"])["recent_events"]["borrows"] and m, "a stream delta")
        assert [e["id"] for e in message["recent_events"]["borrows"]] == [borrow_id]
        assert next(t for t in message["tools"] if t["tool"] == TOOL)["borrowed"] == 1
    # And the other process's dashboard: its open checkouts list ada.
    dash_duo.driver.get(b.url + "/")
    users_js = "return [...document.querySelectorAll('#checkouts-table .ag-cell[col-id=user]')].map(c => c.textContent)"
    wait_for(lambda: dash_duo.driver.execute_script(users_js) == ["ada"], "ada in the other process's open checkouts")
    # A return through the second process ends it in the first.
    assert requests.post(b.url + "/licenses/return", json={"id": borrow_id}, headers=b.headers(), timeout=5).status_code == 200
    assert borrowed(b) == 0
    wait_for(lambda: borrowed(a) == 0, "the return in the first process")
    # Both processes are healthy, exactly one of them leads.
    states = [health(s) for s in (a, b)]
    assert [code for code, _ in states] == [200, 200]
    assert sorted(body["leader"] for _, body in states) == [False, True]


def test_concurrent_borrows_split_over_two_processes_hold_every_invariant(cluster, tmp_path, shared_db):
    """8 threads x 250 attempts on a pool of 6, half through each process: the limits hold across both.

    2,000 requests keep both processes at the pool's limits for seconds, long enough for every interleaving of a
    borrow, a return and the other process's log that the shared pool guards against to happen many times.
    """
    tools = tmp_path / "small.json"
    tools.write_text(
        '[{"tool": "Small", "total": 6, "commit_qty": 2, "max_overage": 3, "commit_price": 10, "overage_price_per_license": 1}]'
    )
    a, b = cluster(DASH_APP_TOOLS=tools), cluster(DASH_APP_TOOLS=tools)
    outcomes = Counter()
    lock = threading.Lock()
    peaks = {"borrowed": 0, "overage": 0}
    stop = threading.Event()
    errors = []

    def watch(server):
        with requests.Session() as session:
            while not stop.is_set():
                entry = session.get(server.url + "/licenses/Small/status", timeout=5).json()
                with lock:
                    peaks["borrowed"] = max(peaks["borrowed"], entry["borrowed"])
                    peaks["overage"] = max(peaks["overage"], entry["overage"])

    def worker(n):
        mine = []
        counts = Counter()
        servers = (a, b)
        try:
            with requests.Session() as session:
                session.headers.update(a.headers())
                for i in range(250):
                    server = servers[(n + i) % 2]  # every thread alternates between the processes
                    if mine and (i % 3 == 2 or len(mine) > 1):
                        r = session.post(server.url + "/licenses/return", json={"id": mine.pop(0)}, timeout=10)
                        assert r.status_code == 200, r.text
                        counts["returned"] += 1
                        continue
                    r = session.post(server.url + "/licenses/borrow", json={"tool": "Small", "user": f"t{n}"}, timeout=10)
                    if r.status_code == 200:
                        mine.append(r.json()["id"])
                        counts["ok"] += 1
                        counts["overage"] += r.json()["is_overage"]
                    else:
                        assert r.status_code == 409 and r.json()["error"] in ("exhausted", "max_overage"), r.text
                        counts["fail"] += 1
        except AssertionError as exc:
            errors.append(exc)
        with lock:
            outcomes.update(counts)

    watchers = [threading.Thread(target=watch, args=(s,)) for s in (a, b)]
    threads = [threading.Thread(target=worker, args=(n,)) for n in range(8)]
    for t in watchers + threads:
        t.start()
    for t in threads:
        t.join()
    stop.set()
    for t in watchers:
        t.join()
    assert errors == []

    entry = caught_up(a, b)
    open_now = outcomes["ok"] - outcomes["returned"]
    for server in (a, b):
        status = requests.get(server.url + "/licenses/Small/status", timeout=5).json()
        active = requests.get(server.url + "/borrows?tool=Small", timeout=5).json()
        stats = requests.get(server.url + "/realtime/stats", timeout=5).json()
        assert status["borrowed"] == len(active) == open_now
        # Every overage borrow is charged once, whichever process granted it.
        assert status["overage_borrows"] == outcomes["overage"]
        assert stats["borrow_count"] == outcomes["ok"] and stats["failure_count"] == outcomes["fail"]
        assert stats["return_count"] == outcomes["returned"]
    assert peaks["borrowed"] <= 5 and peaks["overage"] <= 3  # commit + max_overage stops at 5, in both processes
    assert outcomes["fail"] > 0
    # The store holds every event once.
    rows = persisted(shared_db, entry)
    kinds = Counter(kind for kind, *_ in rows)
    assert kinds == {"borrow": outcomes["ok"], "return": outcomes["returned"], "failure": outcomes["fail"]}


@pytest.mark.parametrize("shared_db", ["sqlite", "postgresql"], indirect=True)
def test_exports_match_after_a_burst_and_a_killed_process_loses_nothing_acknowledged(cluster, shared_db):
    a, b = cluster(), cluster()
    acknowledged = []  # (kind, borrow id) of every write that answered 200
    lock = threading.Lock()

    def burst(server, user, count):
        with requests.Session() as session:
            session.headers.update(server.headers())
            for i in range(count):
                r = session.post(server.url + "/licenses/borrow", json={"tool": TOOL, "user": user}, timeout=10)
                if r.status_code != 200:
                    continue
                borrow_id = r.json()["id"]
                with lock:
                    acknowledged.append(("borrow", borrow_id))
                if i % 2:
                    assert session.post(server.url + "/licenses/return", json={"id": borrow_id}, timeout=10).status_code == 200
                    with lock:
                        acknowledged.append(("return", borrow_id))

    threads = [threading.Thread(target=burst, args=(s, f"u{n}", 60)) for n, s in enumerate((a, b, a, b))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    caught_up(a, b)
    exported = events_export(a)
    assert exported == events_export(b)
    assert Counter(e["type"] for e in exported) >= Counter(kind for kind, _ in acknowledged)

    # kill -9 the leader while writes go on through the other: nothing acknowledged is lost, the other takes over.
    leader, other = leader_and_other(a, b)
    leader.stop(signal.SIGKILL)
    burst(other, "after", 20)
    wait_for(lambda: health(other)[1]["leader"], "the survivor taking the lease", timeout=15)
    entry = caught_up(other)
    rows = persisted(shared_db, entry)
    stored = Counter((kind, borrow_id) for kind, borrow_id, _user, _tool in rows if kind in ("borrow", "return"))
    for op in acknowledged:
        assert stored[op] == 1, op  # stored, and stored once
    assert all(n == 1 for n in stored.values())

    # A restarted process catches up: the same history as the survivor's.
    again = cluster()
    caught_up(again, other)
    assert events_export(again) == events_export(other)
    assert borrowed(again) == borrowed(other)


def test_a_stream_client_moved_to_another_process_resumes_with_one_delta(cluster):
    a, b = cluster(), cluster()
    state, last_id = new_client(), None
    with SseClient(a.url + "/realtime/stream?delta=1") as stream:
        for step in range(3):
            message = stream.next_message()
            apply_delta(state, message["data"])
            last_id = message["id"]
            requests.post(a.url + "/licenses/borrow", json={"tool": TOOL, "user": f"u{step}"}, headers=a.headers(), timeout=5)
    # Two borrows on the other process while the client is away, then it reconnects there.
    for user in ("v1", "v2"):
        requests.post(b.url + "/licenses/borrow", json={"tool": TOOL, "user": user}, headers=b.headers(), timeout=5)
    caught_up(a, b)
    with SseClient(b.url + "/realtime/stream?delta=1", headers={"Last-Event-ID": str(last_id)}) as resumed:
        message = resumed.next_message()
    assert message["data"]["mode"] == "delta" and message["id"] > last_id
    with SseClient(b.url + "/realtime/stream") as full:
        wanted = wait_for(lambda: (m := full.next_message())["id"] >= message["id"] and m, "the same tick in full")
    if wanted["id"] == message["id"]:
        assert replayed(apply_delta(state, message["data"])) == replayed_keys(wanted["data"])
    users = {e["user"] for e in apply_delta(new_client(), wanted["data"])["recent_events"]["borrows"]}
    assert {"v1", "v2"} <= users


def test_redis_stopped_and_restarted_under_load(cluster, redis_server, tmp_path, shared_db):
    a, b = cluster(), cluster()
    ledger = []  # (server, status, borrow id or None, kind) of every write
    lock = threading.Lock()
    stop = threading.Event()

    def load(server, user):
        with requests.Session() as session:
            session.headers.update(server.headers())
            while not stop.is_set():
                r = session.post(server.url + "/licenses/borrow", json={"tool": TOOL, "user": user}, timeout=10)
                body = r.json()
                if r.status_code == 503:
                    assert body["error"] == "unavailable" and "Redis" in body["detail"]
                with lock:
                    ledger.append((r.status_code, body.get("id"), "borrow"))
                if r.status_code == 200:
                    r = session.post(server.url + "/licenses/return", json={"id": body["id"]}, timeout=10)
                    with lock:
                        ledger.append((r.status_code, body["id"], "return"))
                time.sleep(0.02)

    threads = [threading.Thread(target=load, args=(s, f"load{n}")) for n, s in enumerate((a, b))]
    for t in threads:
        t.start()
    try:
        wait_for(lambda: sum(1 for status, *_ in ledger if status == 200) > 20, "load going")
        redis_server.stop()
        # Reads go on from memory; writes answer 503; health says degraded.
        for server in (a, b):
            wait_for(lambda s=server: health(s)[0] == 503, "degraded health")
            code, body = health(server)
            assert body["status"] == "degraded" and body["redis"] == "down"
            assert requests.get(server.url + "/licenses/status", timeout=5).status_code == 200
            assert requests.get(server.url + "/realtime/stats", timeout=5).status_code == 200
        wait_for(lambda: any(status == 503 for status, *_ in ledger[-5:]), "writes answering 503")
        redis_server.start()
        restarted = time.monotonic()
        for server in (a, b):
            wait_for(lambda s=server: health(s)[0] == 200, "health back", timeout=5 - (time.monotonic() - restarted) + 1)
        count = len(ledger)
        wait_for(lambda: any(status == 200 for status, *_ in ledger[count:]), "writes working again", timeout=5)
    finally:
        stop.set()
        for t in threads:
            t.join()
    entry = caught_up(a, b)
    # Every acknowledged write is in both processes and in the store, once.
    rows = persisted(shared_db, entry)
    stored = Counter((kind, borrow_id) for kind, borrow_id, _user, _tool in rows)
    exported = Counter((e["type"], e.get("id")) for e in events_export(a))
    assert exported == Counter((e["type"], e.get("id")) for e in events_export(b))
    acked = [(kind, borrow_id) for status, borrow_id, kind in ledger if status == 200]
    assert acked
    for op in acked:
        assert stored[op] == 1 and exported[op] == 1, op
    # Nothing was granted that is not recorded: what both processes count open is what the log left open.
    opened = {borrow_id for kind, borrow_id in stored if kind == "borrow"} - {bid for kind, bid in stored if kind == "return"}
    assert borrowed(a) == borrowed(b) == len(opened)


def test_sources_run_in_one_process_and_move_when_it_dies(cluster, tmp_path):
    start_a, start_b, _ = starts()
    server_name = "27000@lic01"
    fakes = tmp_path / "fake"
    fakes.mkdir()
    (fakes / f"{server_name}.txt").write_text(
        lmstat_output(server_name, [("ann", "ws-17", 1, start_a), ("bob", "ws-18", 2, start_b)])
    )
    tools = tmp_path / "tools.json"
    spec = {"tool": TOOL, "feature": "DaVinciCfg", "total": 20, "commit_qty": 10, "max_overage": 10}
    tools.write_text(json.dumps([{**spec, "commit_price": 1000, "overage_price_per_license": 50}]))
    env = {
        "DASH_APP_LMSTAT": server_name,
        "DASH_APP_LMUTIL": str(FAKE_LMUTIL),
        "DASH_APP_POLL_SECONDS": "1",
        "DASH_APP_TOOLS": str(tools),
        "FAKE_LMUTIL_DIR": str(fakes),
    }
    a, b = cluster(**env), cluster(**env)
    # Both processes poll-configured, one polls: three licenses, not six, and both show the server's health.
    for server in (a, b):
        wait_for(lambda s=server: borrowed(s) == 3, "three borrows")
        entries = wait_for(lambda s=server: polled_entries(s, server_name), "the polled server's health")
        assert entries[0]["state"] == "up"
    ids = sorted(x["id"] for x in requests.get(a.url + "/borrows", timeout=5).json())
    leader, other = leader_and_other(a, b)
    leader.stop(signal.SIGKILL)
    wait_for(lambda: health(other)[1]["leader"], "the survivor taking over the polls", timeout=15)
    # The new poller matches what is open: the same three borrows, none twice, and a change is seen.
    (fakes / f"{server_name}.txt").write_text(lmstat_output(server_name, [("ann", "ws-17", 1, start_a)]))
    wait_for(lambda: borrowed(other) == 1, "bob's returns seen by the new leader")
    [left] = requests.get(other.url + "/borrows", timeout=5).json()
    assert left["user"] == "ann" and left["id"] in ids


def test_several_workers_need_redis_and_share_it(redis_server, tmp_path):
    args = ["--workers", "2", "--db", str(tmp_path / "x.db"), "--port", "0"]
    result = run_refused(args)
    assert result.returncode == 2
    [line] = result.stderr.strip().splitlines()
    assert "--workers" in line and "--redis" in line
    unreachable = run_refused([*args, "--redis", "redis://:secret@127.0.0.1:1/0"])
    assert unreachable.returncode == 2
    [line] = unreachable.stderr.strip().splitlines()
    assert "--redis" in line and "secret" not in line

    # The Procfile's line with DASH_APP_WORKERS=2: two worker processes answer, with one pool between them.
    env = {"DASH_APP_WORKERS": "2", "DASH_APP_REDIS_URL": redis_server.url, "DASH_APP_DB": str(tmp_path / "w.db")}
    server = ServerProcess(env, tmp_path)
    try:
        for i in range(3):
            response = requests.post(
                server.url + "/licenses/borrow", json={"tool": TOOL, "user": f"w{i}"}, headers=server.headers()
            )
            assert response.status_code == 200
        # One keep-alive connection stays with one worker: ask each new connection's worker what it counts, until
        # both workers have answered (and applied the log, within milliseconds).
        counted = {}
        for _ in range(400):
            with requests.Session() as session:
                pid = health_of(session, server)["pid"]
                counted[pid] = session.get(f"{server.url}/licenses/{TOOL}/status", timeout=5).json()["borrowed"]
            if len(counted) == 2 and set(counted.values()) == {3}:
                break
        assert len(counted) == 2 and set(counted.values()) == {3}, counted
    finally:
        server.stop()


def health_of(session, server):
    return session.get(server.url + "/healthz", timeout=5).json()


def test_ingest_flexlm_on_redis_reaches_a_running_server_and_the_store_once(
    cluster, redis_server, tmp_path, shared_db, monkeypatch
):
    keep = {"DASH_APP_RETENTION_HOURS": RETENTION_HOURS, "DASH_APP_HISTORY_DAYS": RETENTION_HOURS / 24 + 1}
    server = cluster(DASH_APP_TOOLS=TOOLS_FILE, **keep)
    env = {"DASH_APP_REDIS_URL": redis_server.url, "DASH_APP_DB": shared_db}
    env.update({k: str(v) for k, v in keep.items()})
    done = ingest(LIC01, "--tools", TOOLS_FILE, env=env)
    assert done.returncode == 0, done.stderr
    assert "14 borrows, 6 returns, 3 denials" in done.stdout
    # The running server saw the lines as they were read; the store holds them once, written by the lease holder.
    entries = {e["tool"]: e for e in requests.get(server.url + "/licenses/status", timeout=5).json()}
    got = {tool: (entries[tool]["total"], entries[tool]["borrowed"], entries[tool]["overage_borrows"]) for tool in LIC01_STATUS}
    assert got == LIC01_STATUS
    rows, _position = stored_events(shared_db)
    assert len(rows) == LIC01_EVENTS
    # Run again (its main in this process: the subprocess above was the entry point), it reads nothing twice.
    for name in [k for k in os.environ if k.startswith("DASH_APP_")]:
        monkeypatch.delenv(name)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    again = ingest_here(LIC01, "--tools", TOOLS_FILE)
    assert again.returncode == 0 and "total: 0 lines" in again.stdout, again.stdout + again.stderr
