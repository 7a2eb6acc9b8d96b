"""Persistence: restart after kill -9, long history, exports, and a database that stops taking writes."""

import io
import json
import random
import signal
import threading
import time

import pandas as pd
import pytest
import requests

from dash_app.state import get_state
from dash_app.store.history import MAX_POINTS, history_series, rebuild_hours_from
from dash_app.store.tables import minute_stats
from dash_app.testing import PostgresServer, free_port
from dash_app.timeutil import parse_iso

TOOLS = ["Vector - DaVinci Configurator SE", "GreenHills Multi IDE", "CAN Bus Analyzer Pro"]


def snapshot(server):
    buckets = requests.get(server.url + "/realtime/export?format=json&window=21600", timeout=10).json()
    status = requests.get(server.url + "/licenses/status", timeout=10).json()
    return buckets, status


class Traffic:
    """Borrow/return traffic over REST from a few threads, remembering when each answer arrived."""

    def __init__(self, server, threads=3):
        self.server = server
        self.stop = threading.Event()
        self.acked = []  # (monotonic time of the answer, kind, id)
        self.lock = threading.Lock()
        self.threads = [threading.Thread(target=self._run, args=(n,)) for n in range(threads)]

    def _run(self, n):
        rng = random.Random(n)
        mine = []
        with requests.Session() as session:
            session.headers.update(self.server.headers())
            while not self.stop.is_set():
                try:
                    if mine and (len(mine) >= 3 or rng.random() < 0.45):
                        borrow_id = mine.pop(0)
                        r = session.post(self.server.url + "/licenses/return", json={"id": borrow_id}, timeout=5)
                        kind = "return"
                    else:
                        body = {"tool": rng.choice(TOOLS), "user": f"user{n}"}
                        r = session.post(self.server.url + "/licenses/borrow", json=body, timeout=5)
                        kind = "borrow"
                        borrow_id = r.json().get("id") if r.status_code == 200 else None
                        if borrow_id:
                            mine.append(borrow_id)
                except requests.RequestException:
                    return  # the server was killed
                if r.status_code == 200:
                    with self.lock:
                        self.acked.append((time.monotonic(), kind, borrow_id))
                time.sleep(0.005)

    def wait_for_acked(self, n, older_than=0.0, timeout=60.0):
        """Wait until more than `n` answers arrived at least `older_than` seconds ago (a loaded machine answers slower)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self.lock:
                if sum(1 for at, _kind, _id in self.acked if at < time.monotonic() - older_than) > n:
                    return
            time.sleep(0.05)
        raise AssertionError(f"fewer than {n} answers in {timeout} s")

    def __enter__(self):
        for t in self.threads:
            t.start()
        return self

    def __exit__(self, *exc):
        self.stop.set()
        for t in self.threads:
            t.join()


def test_kill_9_restart_keeps_buckets_status_and_counting(start_server, database):
    db = database
    server = start_server(DASH_APP_DB=db)
    with Traffic(server) as traffic:
        traffic.wait_for_acked(100)  # (borrows and returns: more than 50 borrows)
    time.sleep(1.0)  # more than the writer's flush interval
    before = snapshot(server)
    assert sum(row["count"] for row in before[0]) > 50
    server.stop(signal.SIGKILL)

    server = start_server(DASH_APP_DB=db)
    assert snapshot(server) == before

    # Now kill in the middle of traffic: all that was answered a second before the kill survives.
    with Traffic(server) as traffic:
        traffic.wait_for_acked(50, older_than=1.0)
        killed_at = time.monotonic()
        server.stop(signal.SIGKILL)
    old_enough = {(kind, i) for at, kind, i in traffic.acked if at < killed_at - 1.0}
    assert len(old_enough) > 50

    server = start_server(DASH_APP_DB=db)
    events = requests.get(server.url + "/realtime/export?format=json&kind=events&window=21600", timeout=10).json()
    stored = {(e["type"], e["id"]) for e in events if e["type"] in ("borrow", "return")}
    assert old_enough <= stored
    active = {b["id"] for b in requests.get(server.url + "/borrows", timeout=10).json()}
    returned = {i for kind, i in stored if kind == "return"}
    assert active == {i for kind, i in stored if kind == "borrow"} - returned

    # New events count on from the restored numbers.
    stats = requests.get(server.url + "/realtime/stats", timeout=10).json()
    status = {e["tool"]: e for e in requests.get(server.url + "/licenses/status", timeout=10).json()}
    body = {"tool": TOOLS[0], "user": "after"}
    r = requests.post(server.url + "/licenses/borrow", json=body, headers=server.headers(), timeout=5)
    assert r.status_code == 200
    after = requests.get(server.url + "/realtime/stats", timeout=10).json()
    assert after["borrow_count"] == stats["borrow_count"] + 1
    tool_status = requests.get(server.url + f"/licenses/{TOOLS[0]}/status", timeout=10).json()
    assert tool_status["borrowed"] == status[TOOLS[0]]["borrowed"] + 1


def test_export_csv_round_trip_equals_the_buckets(make_app, database):
    state = get_state(make_app(db=database))
    now = time.time()
    rng = random.Random(4)
    for n in range(400):
        tool = rng.choice(TOOLS)
        user = rng.choice(["ann", "bob", "=cmd()", 'q"uote, comma', "ünï"])
        state.buffer.add_borrow(tool, user, rng.random() < 0.3, f"b{n}", timestamp=now - rng.uniform(0, 7000))
    client = state_client(state)
    for tool_query, tools in (("", None), ("&tool=CAN%20Bus%20Analyzer%20Pro", ["CAN Bus Analyzer Pro"])):
        response = client.get(f"/realtime/export?format=csv&window=3600{tool_query}")
        assert response.status_code == 200 and response.headers["Content-Type"].startswith("text/csv")
        frame = pd.read_csv(io.StringIO(response.get_data(as_text=True)))
        assert list(frame.columns) == ["tool", "timestamp", "count", "overage_count", "users"]
        expected = [
            {"tool": tool, **bucket}
            for tool, buckets in state.buffer.aggregate_tool_metrics(3600).items()
            if tools is None or tool in tools
            for bucket in buckets
        ]
        got = [
            {
                "tool": row.tool,
                "timestamp": row.timestamp,
                "count": row.count,
                "users": json.loads(row.users),
                "overage_count": row.overage_count,
            }
            for row in frame.itertuples()
        ]
        assert got == expected and len(got) > 10
    events = client.get("/realtime/export?format=csv&kind=events&window=600").get_data(as_text=True)
    assert "'=cmd()" in events and ",=cmd()" not in events  # no spreadsheet formulas


def state_client(state):
    from flask import Flask

    # The export route reads the state from the app it is mounted on; reuse the real blueprint.
    from dash_app import realtime_api

    app = Flask(__name__)
    app.extensions["dash_app"] = state
    app.register_blueprint(realtime_api.bp)
    return app.test_client()


def test_export_rejects_bad_parameters(make_app):
    client = make_app().server.test_client()
    bad = (
        ("format=xml", "format"),
        ("kind=rows", "kind"),
        ("window=5", "window"),
        ("kind=events&window=86400", "window"),
        ("window=x", "window"),
    )
    for query, field in bad:
        response = client.get("/realtime/export?" + query)
        assert response.status_code == 400 and response.get_json()["detail"].startswith(field + ":")


def test_thirty_day_history_is_downsampled_with_exact_sums(make_app, database):
    state = get_state(make_app(db=database))
    store = state.store
    now = time.time()
    rng = random.Random(9)
    rows = []
    expected = {}
    first_minute = int((now - 30 * 86400) // 60) + 1
    for minute in range(first_minute, int(now // 60) + 1, 7):  # every 7th minute over 30 days
        for tool in TOOLS[:2]:
            count = rng.randint(1, 5)
            users = sorted(rng.sample(["ann", "bob", "cy", "dee"], 2))
            rows.append((tool, minute, count, 1, json.dumps(users), 0, "{}"))
            expected.setdefault(tool, [0, 0, set()])
            expected[tool][0] += count
            expected[tool][1] += 1
            expected[tool][2].update(users)
    with store.writing() as conn:
        columns = ("tool", "minute", "count", "overage_count", "users", "returns", "failures")
        conn.execute(minute_stats.insert(), [dict(zip(columns, row)) for row in rows])
        rebuild_hours_from(conn, first_minute)

    for window in (86400, 604800, 2592000):
        size, series = history_series(store, window, now=now)
        assert set(series) == set(TOOLS[:2])
        for tool, points in series.items():
            assert len(points) <= MAX_POINTS
            starts = [parse_iso(p["timestamp"]) for p in points]
            assert starts == sorted(starts) and all(s % size == 0 for s in starts)
            if window == 2592000:
                assert sum(p["count"] for p in points) == expected[tool][0]
                assert sum(p["overage_count"] for p in points) == expected[tool][1]
                assert set().union(*(p["users"] for p in points)) == expected[tool][2]
            else:
                brute = sum(r[2] for r in rows if r[0] == tool and (r[1] * 60) // size * size + size > now - window)
                assert sum(p["count"] for p in points) == brute


def test_events_reach_history_through_the_writer(make_app, database):
    app = make_app(db=database)
    state = get_state(app)
    for n in range(5):
        state.pool.borrow(TOOLS[1], f"u{n}")
    state.store.run_tasks_now()
    size, series = history_series(state.store, 86400)
    assert size == 300
    assert sum(p["count"] for p in series[TOOLS[1]]) == 5
    assert set(series[TOOLS[1]][-1]["users"]) <= {f"u{n}" for n in range(5)}


def test_a_full_sqlite_file_keeps_serving_from_memory_and_recovers(make_app, tmp_path):
    app = make_app(db=str(tmp_path / "full.db"))
    state = get_state(app)
    client = app.server.test_client()
    state.pool.borrow(TOOLS[0], "first")
    assert state.store.flush(5)
    pages = state.store.read("PRAGMA page_count")[0][0]
    state.store.read(f"PRAGMA max_page_count = {pages}")  # SQLite now answers "database or disk is full"
    for n in range(150):
        borrow = state.pool.borrow(TOOLS[1], f"user-with-a-long-name-{n:04d}" * 3)
        state.pool.return_license(borrow.id)
    deadline = time.time() + 10
    while state.stats_summary()["persisted"] and time.time() < deadline:
        time.sleep(0.05)
    body = client.get("/realtime/stats").get_json()
    assert body["persisted"] is False and body["borrow_count"] == 151 and body["return_count"] == 150
    assert client.get("/licenses/status").status_code == 200

    state.store.read("PRAGMA max_page_count = 1073741823")
    assert state.store.flush(15)
    assert state.stats_summary()["persisted"] is True
    assert state.store.read("SELECT count(*) FROM events")[0][0] == 301


def test_retention_and_caps_are_configurable(make_app):
    state = get_state(make_app(retention_hours=0.5, max_borrows=3, max_returns=2, max_failures=1))
    assert state.buffer.retention_seconds == 1800
    for n in range(5):
        state.pool.borrow(TOOLS[0], f"u{n}")
    assert state.buffer.get_stats_summary()["borrow_count"] == 3
    assert state.buffer.get_stats_summary()["retention_hours"] == 0.5


def test_a_lost_database_server_keeps_serving_from_memory_and_catches_up(make_app):
    """PostgreSQL stopped under the app: answers go on from memory with persisted false, and every event is written
    once it is back."""
    with PostgresServer() as server:  # its own: this test stops it
        app = make_app(db=server.create_database("lost"))
        state = get_state(app)
        client = app.server.test_client()
        state.pool.borrow(TOOLS[0], "first")
        assert state.store.flush(5)
        server.kill()
        for n in range(20):
            borrow = state.pool.borrow(TOOLS[1], f"u{n}")
            state.pool.return_license(borrow.id)
        deadline = time.time() + 15
        while state.stats_summary()["persisted"] and time.time() < deadline:
            time.sleep(0.05)
        body = client.get("/realtime/stats").get_json()
        assert body["persisted"] is False and body["borrow_count"] == 21 and body["return_count"] == 20
        assert "OperationalError" in state.store.last_error and "dash@" not in state.store.last_error
        # What only the database can answer says so in JSON, the rest is served from memory.
        response = client.get("/realtime/export?format=json&window=86400")
        assert response.status_code == 503 and response.get_json()["error"] == "database_unavailable"
        assert client.get("/realtime/export?format=json&window=3600").status_code == 200
        server.restart()
        assert state.store.flush(30)
        assert state.stats_summary()["persisted"] is True
        assert state.store.read("SELECT count(*) FROM events")[0][0] == 41
        assert state.store.read("SELECT count(*) FROM borrows WHERE returned_at IS NULL")[0][0] == 1
        state.stop()


def run_with_db(db):
    """Start the server with `--db db` and return (exit status, stderr lines): it must end before serving."""
    from dash_app.testing.commands import run_refused

    result = run_refused(["--db", db])
    return result.returncode, result.stderr.strip().splitlines()


@pytest.mark.parametrize("db", ["/nonexistent-folder/x.db", "/"])
def test_bad_db_path_is_one_line(db):
    status, lines = run_with_db(db)
    assert status == 2 and len(lines) == 1 and lines[0].startswith("python -m dash_app: error: database")


def test_an_unusable_database_server_is_one_line_with_the_password_hidden(postgres):
    url = postgres.url_for("dash")
    cases = {
        "unreachable": (f"postgresql://dash:s3cret@127.0.0.1:{free_port()}/dash", "Connection refused"),
        "no such database": (
            url.replace("dash@", "dash:s3cret@").rsplit("/", 1)[0] + "/nosuch",
            'database "nosuch" does not exist',
        ),
        "no such user": (url.replace("dash@", "nobody:s3cret@"), 'role "nobody" does not exist'),
        "wrong password": (postgres.password_url_for("dash", "s3cret"), "password authentication failed"),
    }
    for what, (db, reason) in cases.items():
        status, lines = run_with_db(db)
        assert status == 2 and len(lines) == 1, what
        assert lines[0].startswith("python -m dash_app: error: database postgresql") and reason in lines[0], what
        assert "s3cret" not in lines[0] and ":***@" in lines[0], what


def test_a_graceful_stop_writes_everything_queued(start_server, database):
    db = database
    server = start_server(DASH_APP_DB=db)
    with requests.Session() as session:
        session.headers.update(server.headers())
        ids = [
            session.post(server.url + "/licenses/borrow", json={"tool": TOOLS[0], "user": f"u{n}"}, timeout=5).json()["id"]
            for n in range(15)
        ]
    server.stop()  # SIGTERM right after the last answer, well inside the writer's flush interval
    assert server.process.returncode == 0
    server = start_server(DASH_APP_DB=db)
    assert {b["id"] for b in requests.get(server.url + "/borrows", timeout=5).json()} == set(ids)


def test_export_of_a_non_ascii_tool_names_the_file_in_ascii(make_app, tmp_path):
    tools = tmp_path / "tools.json"
    pool = {"tool": "工具 Pro", "total": 2, "commit_qty": 1, "max_overage": 1, "commit_price": 1, "overage_price_per_license": 1}
    tools.write_text(json.dumps([pool]))
    app = make_app(tools_file=str(tools))
    get_state(app).pool.borrow("工具 Pro", "ann")
    response = app.server.test_client().get("/realtime/export?kind=events&window=600&tool=%E5%B7%A5%E5%85%B7%20Pro")
    assert response.status_code == 200
    assert response.headers["Content-Disposition"] == 'attachment; filename="licenses-events-___Pro-600s.csv"'
    assert "工具 Pro" in response.get_data(as_text=True)


def test_a_return_recorded_before_its_borrow_still_ends_it_in_the_store(make_app, database):
    """A log source holds its batch's events back; a REST return of one of its borrows is recorded at once."""
    db = database
    state = get_state(make_app(db=db))
    pool = state.pool
    observed, returned = threading.Event(), threading.Event()

    def log_source():
        with pool.recording_batch():
            pool.observe_borrow(TOOLS[1], "ann", time.time(), borrow_id="flexlm|race|1")
            observed.set()
            assert returned.wait(5)

    source = threading.Thread(target=log_source)
    source.start()
    assert observed.wait(5)
    pool.return_license("flexlm|race|1")  # the return reaches the writer before the borrow does
    assert state.store.flush(5)  # and is written in a batch of its own
    returned.set()
    source.join()
    assert state.store.flush(5)
    [(borrowed_at, returned_at, user)] = state.store.read('SELECT borrowed_at, returned_at, "user" FROM borrows')
    assert returned_at is not None and returned_at >= borrowed_at and user == "ann"
    state.stop()
    restarted = get_state(make_app(db=db))
    assert restarted.pool.active_borrows() == [] and restarted.pool.tool_status(TOOLS[1])["borrowed"] == 0
