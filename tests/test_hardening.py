"""Bad input and bad luck: names no event may carry, a writer that cannot die, oversized and malformed requests."""

import json
import os
import socket
import sqlite3
import subprocess
import sys
import threading
import time

import pytest
import requests

from dash_app.events import InvalidName, failure_event, name_problem
from dash_app.state import get_state
from dash_app.testing import ROOT, TEST_TOKEN, free_port

GH = "GreenHills Multi IDE"
AUTH = {"Authorization": f"Bearer {TEST_TOKEN}"}
BAD_NAMES = {
    "lone surrogate": "\ud800",
    "surrogate inside": "al\udfffice",
    "non-character U+FFFE": "bob\ufffe",
    "non-character U+FDD0": "\ufdd0carol",
    "plane-1 non-character": "dave\U0001ffff",
    "C1 control": "eve\x85",
    "C0 control": "fay\x00",
}


def wait_for(predicate, timeout=10.0):
    """Wait until `predicate()` is true, checking every 50 ms; fail the test after `timeout`."""
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.05)


def raw_json(obj):
    """Serialise with lone surrogates kept as JSON escapes, as any client may send them."""
    return json.dumps(obj, ensure_ascii=True).encode()


# ------------------------------------------------------------------------------------------------- names


@pytest.mark.parametrize("name", BAD_NAMES.values(), ids=BAD_NAMES.keys())
def test_the_name_rule_refuses_what_no_store_or_stream_can_carry(name):
    assert name_problem(name) is not None
    for ok in ("alice", "Jürgen", "山田", "ADas 2", "🦊 fox", "a" * 200):
        assert name_problem(ok) is None


@pytest.mark.parametrize("field", ["user", "tool"])
@pytest.mark.parametrize("name", BAD_NAMES.values(), ids=BAD_NAMES.keys())
def test_a_borrow_with_a_bad_name_is_refused_and_changes_nothing(make_app, field, name):
    app = make_app()
    state = get_state(app)
    client = app.server.test_client()
    before = client.get("/licenses/status").get_json()
    body = {"tool": GH, "user": "alice", field: name}
    response = client.post("/licenses/borrow", data=raw_json(body), headers={**AUTH, "Content-Type": "application/json"})
    assert response.status_code == 400
    error = response.get_json()
    assert error["error"] == "invalid_input" and error["detail"].startswith(f"{field}: ")
    assert client.get("/licenses/status").get_json() == before
    assert state.buffer.get_stats_summary()["total_events"] == 0
    assert state.store.flush(5) and state.store.read("SELECT COUNT(*) FROM events") == [(0,)]


def test_every_source_goes_through_the_same_rule(make_app):
    state = get_state(make_app())
    pool = state.pool
    with pytest.raises(InvalidName, match="^user: "):
        pool.borrow(GH, "\ud800")
    with pytest.raises(InvalidName, match="^user: "):
        pool.observe_borrow(GH, "x\ufffe", time.time())
    with pytest.raises(InvalidName, match="^id: "):
        pool.observe_borrow(GH, "bob", time.time(), borrow_id="a\udc80")
    with pytest.raises(InvalidName, match="^reason: "):
        pool.observe_failure(GH, "bob", "\x85", time.time())
    assert pool.active_borrows() == [] and state.buffer.get_stats_summary()["total_events"] == 0


def test_a_flexlm_line_with_a_bad_name_is_malformed_and_the_rest_is_read(make_app, tmp_path):
    from dash_app.sources.flexlm import follower_of

    log_path = tmp_path / "lmgrd.log"
    today = time.strftime("%m/%d/%Y")
    lines = [
        f" 0:00:01 (lmgrd) TIMESTAMP {today}",
        ' 0:00:02 (vendor) OUT: "GHS" eve\ufffe@host1',
        ' 0:00:03 (vendor) OUT: "GHS" \u0085mallory@host1',
        ' 0:00:04 (vendor) OUT: "GHS" alice@host1',
    ]
    log_path.write_bytes(("\n".join(lines) + "\n").encode("utf-8"))
    state = get_state(make_app(flexlm_logs=[str(log_path)], retention_hours=24))
    follower = follower_of(state)
    assert follower.wait_idle(15)
    [entry] = follower.snapshot()["logs"]
    assert entry["malformed"] == 2
    assert [b.user for b in state.pool.active_borrows()] == ["alice"]


def test_a_long_flexlm_line_is_skipped_up_to_its_newline(make_app, tmp_path):
    from dash_app.sources.flexlm import follower_of
    from dash_app.sources.flexlm.tailing import MAX_LINE_BYTES

    log_path = tmp_path / "lmgrd.log"
    today = time.strftime("%m/%d/%Y")
    forged = ' 0:00:02 (vendor) OUT: "GHOST" mallory@evil'
    with open(log_path, "wb") as fh:
        fh.write(f" 0:00:01 (lmgrd) TIMESTAMP {today}\n".encode())
        fh.write(b"X" * (2 * MAX_LINE_BYTES) + forged.encode() + b"\n")
        fh.write(b' 0:00:03 (vendor) OUT: "GHS" alice@host1\n')
    state = get_state(make_app(flexlm_logs=[str(log_path)], retention_hours=24))
    follower = follower_of(state)
    assert follower.wait_idle(15)
    [entry] = follower.snapshot()["logs"]
    assert [(b.tool, b.user) for b in state.pool.active_borrows()] == [("GHS", "alice")]
    assert entry["malformed"] == 1


# ------------------------------------------------------------------------------------------------ writer


def test_the_writer_survives_any_exception_and_loses_nothing(make_app, tmp_path, monkeypatch):
    db = tmp_path / "w.db"
    state = get_state(make_app(db=str(db)))
    store = state.store
    real_write = store._write
    failures = {"left": 3}

    def flaky_write(batch):
        # Fault injection at the seam to SQLite: an exception type the writer has never seen.
        if failures["left"]:
            failures["left"] -= 1
            raise RuntimeError("injected fault")
        return real_write(batch)

    monkeypatch.setattr(store, "_write", flaky_write)
    ids = [state.pool.borrow(GH, f"user{n}").id for n in range(3)]
    wait_for(lambda: not store.persisted)
    assert store._thread.is_alive()
    assert state.stats_summary()["persisted"] is False
    assert store.flush(15)  # the fault clears after three tries; everything queued is then written
    assert store.persisted and store._thread.is_alive()
    with sqlite3.connect(db) as conn:
        stored = {row[0] for row in conn.execute("SELECT borrow_id FROM events WHERE kind = 'borrow'")}
    assert stored == set(ids)


def test_one_bad_item_cannot_hold_back_the_items_around_it(make_app, tmp_path):
    db = tmp_path / "w.db"
    state = get_state(make_app(db=str(db)))
    store = state.store
    good = failure_event(GH, "ok", "exhausted", time.time())
    bad = good._replace(user="\ud800")  # past every check: only a bug could bring it here
    store.on_events([good])
    store.on_events([bad])
    store.on_events([good._replace(user="ok2")])
    wait_for(lambda: store.read("SELECT COUNT(*) FROM events") == [(2,)])
    assert store._thread.is_alive() and not store.persisted  # the bad item is kept, and said to be unwritten
    state.pool.borrow(GH, "later")
    wait_for(lambda: store.read("SELECT COUNT(*) FROM events") == [(3,)])


# ------------------------------------------------------------------------------------------------ the file


@pytest.mark.parametrize("how", ["deleted", "replaced"])
def test_a_deleted_or_replaced_database_file_is_written_again(make_app, tmp_path, how):
    db = tmp_path / "site.db"
    state = get_state(make_app(db=str(db)))
    store = state.store
    first = [state.pool.borrow(GH, f"early{n}").id for n in range(3)]
    assert store.flush(5)
    os.remove(db)
    if how == "replaced":
        with sqlite3.connect(db) as other:
            other.execute("CREATE TABLE foreign_data (x)")
    later = state.pool.borrow(GH, "later").id
    wait_for(lambda: store.recreations == 1, timeout=5)  # noticed, and the file written again, within 5 s
    assert store.flush(5) and store.persisted
    with sqlite3.connect(db) as conn:
        ids = {row[0] for row in conn.execute("SELECT borrow_id FROM events")}
        open_borrows = conn.execute("SELECT COUNT(*) FROM borrows WHERE returned_at IS NULL").fetchone()[0]
    assert ids == {*first, later} and open_borrows == 4
    if how == "replaced":
        [aside] = [p for p in tmp_path.iterdir() if ".replaced-" in p.name and not p.name.endswith(("-wal", "-shm"))]
        with sqlite3.connect(aside) as conn:
            assert conn.execute("SELECT name FROM sqlite_master").fetchall() == [("foreign_data",)]


def test_a_database_locked_by_another_process_ends_with_one_line(tmp_path):
    from dash_app.store import Store

    db = tmp_path / "locked.db"
    Store(str(db)).close()
    holder = sqlite3.connect(db, isolation_level=None)
    holder.execute("BEGIN EXCLUSIVE")
    try:
        env = {k: v for k, v in os.environ.items() if not k.startswith("DASH_APP_")}
        result = subprocess.run(
            [sys.executable, "-m", "dash_app", "--db", str(db), "--no-demo", "--port", str(free_port())],
            cwd=ROOT,
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
        )
    finally:
        holder.execute("ROLLBACK")
        holder.close()
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "locked.db" in lines[0] and "Traceback" not in result.stderr


# ---------------------------------------------------------------------------------------------- requests


def test_deeply_nested_json_is_a_400(make_app):
    client = make_app().server.test_client()
    for route in ("/licenses/borrow", "/licenses/return"):
        response = client.post(route, data=b"[" * 30_000 + b"]" * 30_000, headers={**AUTH, "Content-Type": "application/json"})
        assert response.status_code == 400 and response.get_json()["detail"].startswith("body: ")


def callback_body(dependency, values, changed):
    """Return the body the browser posts for `dependency`, with `values` {(id, property): value}."""
    output = dependency["output"]
    if output.startswith(".."):
        outputs = [dict(zip(("id", "property"), part.rsplit(".", 1))) for part in output.strip(".").split("...")]
    else:
        outputs = dict(zip(("id", "property"), output.rsplit(".", 1)))

    def entries(kind):
        return [{**d, "value": values.get((d["id"], d["property"]))} for d in dependency[kind]]

    return {
        "output": output,
        "outputs": outputs,
        "inputs": entries("inputs"),
        "state": entries("state"),
        "changedPropIds": [changed],
    }


@pytest.mark.parametrize("bad", [[1800], {"a": 1}, "1800", True])
def test_a_callback_with_a_malformed_time_range_is_a_400(make_app, bad):
    client = make_app().server.test_client()
    dependencies = client.get("/_dash-dependencies").get_json()
    page = [d for d in dependencies if "render-state.data" in d["output"] and d["clientside_function"] is None][0]
    values = {("refresh", "n_intervals"): 1, ("tool-filter", "value"): "__all__", ("time-range", "value"): 1800}
    assert client.post("/_dash-update-component", json=callback_body(page, values, "refresh.n_intervals")).status_code == 200
    values[("time-range", "value")] = bad
    response = client.post("/_dash-update-component", json=callback_body(page, values, "refresh.n_intervals"))
    assert response.status_code == 400 and response.get_json()["detail"].startswith("time-range: ")


@pytest.mark.parametrize("bad", [5, [GH], {"tool": GH}])
def test_a_download_with_a_malformed_tool_is_a_400(make_app, bad):
    client = make_app().server.test_client()
    dependencies = client.get("/_dash-dependencies").get_json()
    [download] = [d for d in dependencies if d["output"] == "download.data"]
    values = {("download-csv", "n_clicks"): 1, ("tool-filter", "value"): GH, ("time-range", "value"): 1800}
    body = callback_body(download, values, "download-csv.n_clicks")
    assert client.post("/_dash-update-component", json=body).status_code == 200
    values[("tool-filter", "value")] = bad
    response = client.post("/_dash-update-component", json=callback_body(download, values, "download-csv.n_clicks"))
    assert response.status_code == 400 and response.get_json()["detail"].startswith("tool-filter: ")


@pytest.mark.parametrize(
    "body", [[], {"output": 1}, {"output": "a.b", "outputs": {}, "inputs": 5}, {"output": "a.b", "outputs": {}, "inputs": [7]}]
)
def test_a_callback_payload_of_the_wrong_shape_is_a_400(make_app, body):
    response = make_app().server.test_client().post("/_dash-update-component", json=body)
    assert response.status_code == 400 and response.get_json()["error"] == "invalid_input"


def exchange(port, request_bytes, timeout=10):
    """Send raw bytes to the server and return the status line and body of its answer."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
        sock.sendall(request_bytes)
        data = b""
        while b"\r\n\r\n" not in data:
            chunk = sock.recv(65536)
            if not chunk:
                break
            data += chunk
        head, _, body = data.partition(b"\r\n\r\n")
        lengths = (int(line.split(b":")[1]) for line in head.split(b"\r\n") if line.lower().startswith(b"content-length:"))
        length = next(lengths, 0)
        while len(body) < length:
            chunk = sock.recv(65536)
            if not chunk:
                break
            body += chunk
    return head.split(b"\r\n")[0].decode(), body


@pytest.fixture
def server(start_server):
    return start_server()


def test_oversized_bodies_are_refused_before_they_are_read(server):
    port = server.port
    # Only the head is sent: an answer proves the server did not wait for (or buffer) the 100 MiB announced.
    for route, limit in (("/_dash-update-component", 1 << 20), ("/licenses/borrow", 64 << 10)):
        head = (
            f"POST {route} HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {TEST_TOKEN}\r\n"
            f"Content-Type: application/json\r\nContent-Length: {100 << 20}\r\n\r\n"
        )
        status, body = exchange(port, head.encode() + b"{")
        assert status.split()[1] == "413", status
        assert json.loads(body) == {"error": "body_too_large", "detail": f"body: at most {limit} bytes"}
    # A chunked body has no length to check up front: it is cut at the limit.
    chunk = b"x" * 65536
    chunked = b"".join(b"%x\r\n%s\r\n" % (len(chunk), chunk) for _ in range(20)) + b"0\r\n\r\n"
    head = (
        b"POST /_dash-update-component HTTP/1.1\r\nHost: x\r\n"
        b"Content-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n"
    )
    status, body = exchange(port, head + chunked)
    assert status.split()[1] == "413" and json.loads(body)["error"] == "body_too_large"
    assert requests.get(server.url + "/licenses/status", timeout=5).status_code == 200


def test_a_malformed_chunked_body_is_a_400(server):
    head = (
        f"POST /licenses/borrow HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {TEST_TOKEN}\r\n"
        "Content-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n"
    )
    status, body = exchange(server.port, head.encode() + b"ZZ\r\n{}\r\n0\r\n\r\n")
    assert status.split()[1] == "400", status
    assert json.loads(body)["detail"].startswith("body: ")


def test_no_refused_name_reaches_a_reader(server):
    url, headers = server.url, server.headers()
    data = raw_json({"tool": GH, "user": "\ud800"})
    json_headers = {**headers, "Content-Type": "application/json"}
    response = requests.post(url + "/licenses/borrow", data=data, headers=json_headers, timeout=5)
    assert response.status_code == 400 and response.json() == {"error": "invalid_input", "detail": response.json()["detail"]}
    borrowed = requests.post(url + "/licenses/borrow", json={"tool": GH, "user": "Jürgen"}, headers=headers, timeout=5)
    assert borrowed.status_code == 200
    export = requests.get(url + "/realtime/export?format=csv", timeout=5)
    assert export.status_code == 200 and export.headers["Content-Type"] == "text/csv; charset=utf-8"
    assert "Jürgen" in export.text
    json_export = requests.get(url + "/realtime/export?format=json", timeout=5)
    assert json_export.headers["Content-Type"] == "application/json; charset=utf-8"
    assert requests.get(url + "/metrics", timeout=5).status_code == 200
    with requests.get(url + "/realtime/stream", stream=True, timeout=5) as stream:
        assert stream.headers["Content-Type"] == "text/event-stream; charset=utf-8"
        assert stream.encoding == "utf-8"  # a generic client decodes names right
        messages = (line for line in stream.iter_lines(decode_unicode=True) if line.startswith("data: "))
        # The first message may be the tick before the borrow; the one after it must carry the name.
        assert any("Jürgen" in next(messages) for _ in range(3))
    assert requests.get(url + "/realtime/stats", timeout=5).json()["persisted"] is True


def test_writes_from_many_threads_with_bad_names_leave_the_pool_consistent(make_app):
    state = get_state(make_app())
    errors = []

    def hammer(n):
        for k in range(200):
            try:
                state.pool.borrow(GH, "\ud800" if k % 2 else f"u{n}")
            except InvalidName:
                pass
            except Exception as exc:  # noqa: BLE001 - BorrowDenied when the pool is full is expected
                if type(exc).__name__ != "BorrowDenied":
                    errors.append(exc)

    threads = [threading.Thread(target=hammer, args=(n,)) for n in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    status = state.pool.tool_status(GH)
    assert status["borrowed"] == len(state.pool.active_borrows(tool=GH))
    assert state.store.flush(5) and state.store.persisted
