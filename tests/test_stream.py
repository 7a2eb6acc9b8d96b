"""The SSE stream /realtime/stream against a real gunicorn started with the Procfile's line."""

import json
import socket
import threading
import time

import pytest
import requests

from dash_app.testing.sse_client import SseClient
from tests.stream_client import DELTA_KEYS, MESSAGE_KEYS, apply_delta, new_client, parse_iso, replayed, replayed_keys

TOOL = "GreenHills Multi IDE"


def borrow(server, tool, user):
    body = {"tool": tool, "user": user}
    response = requests.post(server.url + "/licenses/borrow", json=body, headers=server.headers(), timeout=5)
    assert response.status_code == 200, response.text
    return response.json()["id"]


def stream_clients(server):
    return requests.get(server.url + "/realtime/stream/clients", timeout=5).json()


def test_stream_contract_cadence_and_a_rest_borrow(start_server):
    server = start_server()
    url = server.url + "/realtime/stream"
    with SseClient(url, headers={"Accept-Encoding": "identity"}) as client:
        headers = client.response.headers
        assert client.response.status_code == 200
        assert headers["Content-Type"] == "text/event-stream; charset=utf-8"
        assert headers["Cache-Control"] == "no-cache"
        assert headers["X-Accel-Buffering"] == "no"
        assert "Content-Encoding" not in headers

        # The first message is the latest tick, sent at once; then one message per tick.
        messages = [client.next_message(), client.next_message()]
        assert client.raw_start.startswith(b"retry: 3000\n")
        borrow(server, TOOL, "alice")
        messages += [client.next_message(), client.next_message()]
        status = requests.get(server.url + "/licenses/status", timeout=5).json()
        # A stopping server ends open streams cleanly (the last chunk arrives) instead of waiting them out.
        server.stop()
        assert server.process.returncode == 0
        with pytest.raises(StopIteration):
            while True:
                client.next_block()

    for message in messages:
        data = message["data"]
        assert set(data) == MESSAGE_KEYS and data["mode"] == "full"
        assert data["timestamp"].endswith("Z") and parse_iso(data["timestamp"]) > 0
        assert set(data["rates"]) == {"borrow_per_min", "return_per_min", "failure_per_min", "overage_percent"}
        assert set(data["recent_events"]) == {"borrows", "returns", "failures"}
        assert set(data["buffer_stats"]) == {
            "total_events",
            "borrow_count",
            "return_count",
            "failure_count",
            "retention_hours",
            "oldest_event",
            "persisted",
        }
        assert data["buffer_stats"]["persisted"] is True
        assert [entry["tool"] for entry in data["tools"]] == [entry["tool"] for entry in status]
    # Ids are the ticks' times in ms, on boundaries of the (1 s) interval: every process of a deployment agrees on them.
    assert [m["id"] for m in messages] == list(range(messages[0]["id"], messages[0]["id"] + 4000, 1000))
    assert messages[0]["id"] % 1000 == 0
    # From the second on, ticks are taken on the boundaries (the first may be the one taken when the server started).
    stamps = [parse_iso(m["data"]["timestamp"]) for m in messages[1:]]
    for earlier, later in zip(stamps, stamps[1:]):
        assert abs(later - earlier - 1.0) <= 0.3
    for earlier, later in zip(messages[1:], messages[2:]):
        assert abs(later["at"] - earlier["at"] - 1.0) <= 0.3

    after = messages[2]["data"]
    [bucket] = after["tool_metrics"][TOOL]
    assert bucket["users"] == ["alice"] and bucket["count"] == 1 and bucket["overage_count"] == 0
    assert bucket["timestamp"] == after["recent_events"]["borrows"][-1]["timestamp"][:16] + ":00Z"
    assert [e["user"] for e in after["recent_events"]["borrows"]] == ["alice"]
    assert after["rates"]["borrow_per_min"] == 1.0
    assert after["buffer_stats"]["borrow_count"] == 1
    assert next(e for e in after["tools"] if e["tool"] == TOOL)["borrowed"] == 1
    assert TOOL not in messages[1]["data"]["tool_metrics"]


def test_delta_stream_replays_to_the_full_stream_and_resumes_after_reconnect(start_server):
    server = start_server()
    url = server.url + "/realtime/stream"
    # requests asks for gzip, so the delta client also reads the shared compressed blocks.
    full = SseClient(url)
    delta = SseClient(url + "?delta=1")
    assert delta.response.headers["Content-Encoding"] == "gzip"
    fulls = {}

    def full_at(tick_id):
        while tick_id not in fulls:
            got = full.next_message()
            fulls[got["id"]] = got["data"]
        return fulls[tick_id]

    state, last_id = new_client(), None
    try:
        for step in range(6):
            message = delta.next_message()
            data = message["data"]
            assert set(data) == (MESSAGE_KEYS if step == 0 else DELTA_KEYS)
            assert data["mode"] == ("full" if step == 0 else "delta")
            apply_delta(state, data)
            last_id = message["id"]
            whole = full_at(last_id)
            assert replayed(state) == replayed_keys(whole), f"step {step}"
            for key in ("timestamp", "rates", "buffer_stats"):
                assert data[key] == whole[key]
            if step:
                # Only what changed travels: the borrow made since the previous message, and its tool's pool entry.
                assert data["recent_events_full"] is False and data["tools_full"] is False
                assert [e["user"] for e in data["recent_events"]["borrows"]] == [f"user{(step - 1) % 2}"]
                assert data["recent_events"]["returns"] == data["recent_events"]["failures"] == []
                [change] = data["tools"]
                assert change["tool"] == TOOL and change["borrowed"] == step and "commit" not in change
                assert len(whole["recent_events"]["borrows"]) == step and len(whole["tools"]) == 6
            borrow(server, TOOL, f"user{step % 2}")
        delta.close()

        # Offline for a couple of ticks while borrows happen, then back with Last-Event-ID.
        borrow(server, "CAN Bus Analyzer Pro", "carol")
        full_at(last_id + 2000)
        with SseClient(url + "?delta=1", headers={"Last-Event-ID": str(last_id)}) as resumed:
            message = resumed.next_message()
        data = message["data"]
        assert data["mode"] == "delta" and message["id"] >= last_id + 2000
        assert set(data["tool_metrics"]) == {TOOL, "CAN Bus Analyzer Pro"} and len(data["tool_metrics"][TOOL]) == 1
        assert [e["user"] for e in data["recent_events"]["borrows"]] == ["user1", "carol"]
        assert [e["tool"] for e in data["tools"]] == [TOOL, "CAN Bus Analyzer Pro"]
        assert replayed(apply_delta(state, data)) == replayed_keys(full_at(message["id"]))

        # An id this server never sent starts over with a full message.
        with SseClient(url + "?delta=1", headers={"Last-Event-ID": "12"}) as fresh:
            assert fresh.next_message()["data"]["mode"] == "full"
    finally:
        full.close()
        delta.close()


def stalled_client(server, path):
    """Open a stream and never read it; a tiny receive buffer makes the server's sends block soon."""
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.connect(("127.0.0.1", server.port))
    sock.sendall(f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nAccept-Encoding: identity\r\n\r\n".encode())
    return sock


def big_inventory(path, count):
    """Write a tools file of `count` tools: every unfiltered message then carries about 300 bytes per tool."""
    tools = [
        {
            "tool": f"Tool {n:04d}",
            "total": 10,
            "commit_qty": 5,
            "max_overage": 5,
            "commit_price": 1000,
            "overage_price_per_license": 100,
        }
        for n in range(count)
    ]
    path.write_text(json.dumps(tools))
    return path


def test_hundred_clients_get_every_tick_while_one_stalls(start_server, tmp_path):
    # 3,000 tools make an unfiltered message about 1 MB, so the stalled client fills its socket within seconds.
    server = start_server(DASH_APP_TOOLS=big_inventory(tmp_path / "tools.json", 3000))
    stalled = stalled_client(server, "/realtime/stream")
    paths = ["/realtime/stream?tool=Tool%200001", "/realtime/stream?delta=1&tool=Tool%200002&window=600", "/realtime/stream"]
    received = [[] for _ in range(99)]
    errors = []
    stop_at = time.monotonic() + 12

    def read(index):
        # A few readers share the stalled client's variant (gzip keeps their bytes small).
        path = paths[2] if index < 4 else paths[index % 2]
        try:
            with SseClient(server.url + path) as client:
                while time.monotonic() < stop_at:
                    received[index].append(client.next_message(parse=False)["id"])
        except Exception as exc:  # reported below, with the reader's index
            errors.append((index, repr(exc)))

    readers = [threading.Thread(target=read, args=(i,)) for i in range(99)]
    for reader in readers:
        reader.start()
    deadline = time.monotonic() + 10
    while stream_clients(server)["clients"] < 100 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert stream_clients(server)["clients"] == 100
    for reader in readers:
        reader.join()
    assert errors == []
    # A tick is 1 s apart (its id is its time in ms); a busy machine may make the ticker skip a boundary, which every
    # client misses alike and the ticker counts. What the stall must not do is cost any reader a tick the others got.
    made = sorted(set().union(*received))
    for ids in received:
        assert len(ids) >= 5
        assert ids == [tick for tick in made if ids[0] <= tick <= ids[-1]]
    assert all(later % 1000 == 0 and later > earlier for earlier, later in zip(made, made[1:]))
    assert sum((later - earlier) // 1000 - 1 for earlier, later in zip(made, made[1:])) <= stream_clients(server)["skipped"]
    # Every reader saw the same ticks over the common span.
    common = [tick for tick in made if max(ids[0] for ids in received) <= tick <= min(ids[-1] for ids in received)]
    assert len(common) >= 5
    assert all(set(common) <= set(ids) for ids in received)

    # The stalled client is dropped and its thread let go; closed readers are freed within seconds.
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        stats = stream_clients(server)
        if stats["dropped"] == 1 and stats["clients"] == 0:
            break
        time.sleep(0.2)
    assert stats["dropped"] == 1 and stats["clients"] == 0, stats
    stalled.settimeout(10)
    try:
        while stalled.recv(1 << 20):
            pass
    except ConnectionResetError:
        pass  # the server shut the connection with unread data in flight: either way it is closed
    stalled.close()
