"""Slow clients against real servers: the request deadline of our gunicorn worker, and nginx in front (deploy/run)."""

import json
import select
import time

import pytest
import requests

from dash_app.testing import ServerProcess
from dash_app.testing.slow_clients import (
    PARTIAL_HEAD,
    SLOW_BODY,
    PartialClients,
    StreamClients,
    connect,
    raise_open_file_limit,
    start_module_server,
    start_production,
    wait_closed,
)
from tests.listening import listening_addresses

HEADER_TIMEOUT = 1.0
# Far more than any deadline here: a connection still open after this was never going to be closed.
PATIENCE = 10.0


@pytest.fixture(scope="module")
def quick(tmp_path_factory):
    """Return the module's server of `kind` with a 1 s request deadline, started when first asked for.

    The tests that use it each close what they opened, and a connection they leave half-sent is cut within the
    second: one server per kind serves them all, instead of one start (seconds of CPU) per test.
    """
    started = {}

    def server(kind):
        if kind not in started:
            tmp = tmp_path_factory.mktemp(f"quick-{kind}")
            env = {"DASH_APP_HEADER_TIMEOUT": HEADER_TIMEOUT, "DASH_APP_STREAM_INTERVAL": 0.25}
            if kind == "procfile":
                started[kind] = ServerProcess({k: str(v) for k, v in env.items()}, tmp)
            else:
                started[kind] = start_module_server(tmp, **env)
        return started[kind]

    yield server
    for process in started.values():
        process.stop()


@pytest.fixture(scope="module")
def few_threads(tmp_path_factory):
    """A server with 8 threads and a 60 s deadline: held clients that took a thread each would leave none free."""
    server = ServerProcess({"DASH_APP_THREADS": "8", "DASH_APP_HEADER_TIMEOUT": "60"}, tmp_path_factory.mktemp("few"))
    yield server
    server.stop()


def read_response(sock, timeout=5.0):
    """Return one whole response (headers and a Content-Length body) from a blocking socket."""
    sock.settimeout(timeout)
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        assert chunk, f"closed after {data!r}"
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    length = next(int(line.split(b":")[1]) for line in head.split(b"\r\n") if line.lower().startswith(b"content-length:"))
    while len(body) < length:
        body += sock.recv(65536)
    return head, body


@pytest.mark.parametrize("kind", ["procfile", "module"])
def test_a_partial_head_is_closed_at_the_header_timeout(quick, kind):
    server = quick(kind)
    partial = connect(server.port)
    partial.sendall(PARTIAL_HEAD)
    silent = connect(server.port)
    try:
        waited = wait_closed(partial, PATIENCE)
        assert waited is not None, "a partial request head was held open"
        # Not before its time: the server accepted after our connect returned.
        assert waited >= 0.9 * HEADER_TIMEOUT
        assert wait_closed(silent, PATIENCE) is not None, "a connection that sent nothing was held open"
        assert requests.get(server.url + "/licenses/status", timeout=5).status_code == 200
    finally:
        partial.close()
        silent.close()


def test_a_client_dribbling_its_head_is_cut_at_the_deadline(quick):
    server = quick("procfile")
    sock = connect(server.port)
    try:
        sock.sendall(b"GET /licenses/status HTTP/1.1\r\n")
        start = time.monotonic()
        sent, closed_after = 0, None
        while closed_after is None and time.monotonic() - start < PATIENCE:
            # One header byte every 0.2 s, each well inside any idle timeout; a close wakes the select at once.
            readable, _, _ = select.select([sock], [], [], 0.2)
            try:
                if readable:
                    if sock.recv(65536) == b"":
                        closed_after = time.monotonic() - start
                else:
                    sock.sendall(b"X")
                    sent += 1
            except OSError:
                closed_after = time.monotonic() - start
        assert closed_after is not None, f"still open after {sent} bytes in {PATIENCE} s"
        assert closed_after >= 0.9 * HEADER_TIMEOUT and sent >= 3
    finally:
        sock.close()


def test_partial_heads_hold_no_thread(few_threads):
    # Eight threads, six of them streaming (all streams may take), and fifty held partial requests: gthread would
    # give each partial request a thread of its own, and wait on it.
    server = few_threads
    streams = StreamClients(server.port, 6)
    clients = None
    try:
        assert streams.started(timeout=30) and set(streams.statuses()) == {b"HTTP/1.1 200 OK"}
        clients = PartialClients(server.port, 50)
        assert requests.get(server.url + "/licenses/status", timeout=2).status_code == 200
        page = requests.get(server.url + "/", timeout=2)
        assert page.status_code == 200 and "License usage" in page.text
        assert clients.held() == 50 and clients.cuts == 0 and streams.ended == 0
    finally:
        for opened in (clients, streams):
            if opened is not None:
                opened.close()


def test_the_deadline_ends_with_the_head(quick):
    server = quick("procfile")

    # A head in three pieces, all inside the deadline, is served.
    with connect(server.port) as sock:
        for piece in (b"GET /licenses/status HTTP/1.1\r\n", b"Host: 127.0.0.1\r\n", b"Connection: close\r\n\r\n"):
            sock.sendall(piece)
            time.sleep(0.2)
        head, _ = read_response(sock)
        assert head.startswith(b"HTTP/1.1 200")

    # A body in pieces, all inside the same deadline as its head, is served.
    body = b'{"tool": "GreenHills Multi IDE", "user": "slow-body"}'
    with connect(server.port) as sock:
        sock.sendall(
            b"POST /licenses/borrow HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
            + f"Authorization: Bearer {server.token}\r\nContent-Length: {len(body)}\r\n\r\n".encode()
        )
        for start in range(0, len(body), 20):
            time.sleep(0.1)
            sock.sendall(body[start : start + 20])
        head, reply = read_response(sock)
        assert head.startswith(b"HTTP/1.1 200"), head + reply

        # The same connection, kept alive: its next request's head has the same deadline.
        sock.sendall(PARTIAL_HEAD)
        waited = wait_closed(sock, PATIENCE)
        assert waited is not None and waited >= 0.9 * HEADER_TIMEOUT

    # A stream runs well past the deadline.
    with requests.get(server.url + "/realtime/stream?delta=1", stream=True, timeout=(5, 5)) as stream:
        ids, start = [], time.monotonic()
        for line in stream.iter_lines():
            if line.startswith(b"id: "):
                ids.append(int(line[4:]))
            if time.monotonic() - start > 3 * HEADER_TIMEOUT:
                break
    assert len(ids) >= 6 and ids == list(range(ids[0], ids[0] + 250 * len(ids), 250))  # every 0.25 s tick, in ms


def test_clients_holding_their_end_after_the_response_do_not_stall_the_server(quick):
    # gthread drained each closing connection in a blocking read of up to 2 s on its event loop's thread.
    server = quick("procfile")
    holders = [connect(server.port) for _ in range(6)]
    try:
        for sock in holders:
            sock.sendall(b"GET /healthz HTTP/1.0\r\n\r\n")
        for sock in holders:
            head, _ = read_response(sock)
            assert head.startswith(b"HTTP/1.0 200") and b"Connection: close" in head
        assert requests.get(server.url + "/licenses/status", timeout=3).status_code == 200
    finally:
        for sock in holders:
            sock.close()


def read_json_error(sock, timeout=5.0):
    """Return (status, JSON body) of one error response, checking it is JSON and closes the connection."""
    head, body = read_response(sock, timeout)
    lines = head.lower().split(b"\r\n")
    assert b"content-type: application/json" in lines and b"connection: close" in lines, head
    return int(head.split(b" ")[1]), json.loads(body)


def test_slow_bodies_hold_no_thread(few_threads):
    # Thirty clients that send a whole head and part of its body, against eight threads: gthread read each body in
    # a thread of its own, with no deadline, and the page waited behind them.
    server = few_threads
    clients = PartialClients(server.port, 30, request=SLOW_BODY)
    try:
        for _ in range(3):
            page = requests.get(server.url + "/", timeout=5)
            assert page.status_code == 200 and "License usage" in page.text
        assert requests.get(server.url + "/licenses/status", timeout=5).status_code == 200
        assert clients.held() == 30 and clients.cuts == 0
    finally:
        clients.close()


def test_a_slow_body_is_answered_408_at_the_deadline(quick):
    server = quick("procfile")
    with connect(server.port) as sock:
        sock.sendall(SLOW_BODY)
        start = time.monotonic()
        status, body = read_json_error(sock, timeout=PATIENCE)
        assert time.monotonic() - start >= 0.9 * HEADER_TIMEOUT
        assert status == 408 and body["error"] == "request_timeout" and body["detail"].startswith("body: ")
        assert wait_closed(sock, PATIENCE) is not None
    assert requests.get(server.url + "/licenses/status", timeout=5).status_code == 200


def test_bodies_read_by_the_loop_reach_the_app_whole(quick):
    server = quick("procfile")
    auth = f"Authorization: Bearer {server.token}\r\n".encode()
    post = b"POST /licenses/borrow HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n" + auth

    # Chunked, its chunks split across sends.
    body = b'{"tool": "GreenHills Multi IDE", "user": "chunked"}'
    wire = b"18\r\n" + body[:24] + b"\r\n%x;ext=1\r\n" % (len(body) - 24) + body[24:] + b"\r\n0\r\n\r\n"
    with connect(server.port) as sock:
        sock.sendall(post + b"Transfer-Encoding: chunked\r\n\r\n")
        for start in range(0, len(wire), 7):
            sock.sendall(wire[start : start + 7])
            time.sleep(0.02)
        head, reply = read_response(sock)
        assert head.startswith(b"HTTP/1.1 200"), head + reply
        assert json.loads(reply)["user"] == "chunked"

    # Expect: 100-continue: one 100 Continue, then the body is sent, then the answer.
    body = b'{"tool": "GreenHills Multi IDE", "user": "expecting"}'
    with connect(server.port) as sock:
        sock.sendall(post + b"Expect: 100-continue\r\nContent-Length: %d\r\n\r\n" % len(body))
        sock.settimeout(5)
        interim = b""
        while b"\r\n\r\n" not in interim:
            chunk = sock.recv(1)
            assert chunk, interim
            interim += chunk
        assert interim == b"HTTP/1.1 100 Continue\r\n\r\n"
        sock.sendall(body)
        head, reply = read_response(sock)
        assert head.startswith(b"HTTP/1.1 200") and json.loads(reply)["user"] == "expecting", head + reply

    # Over the route's limit: refused unread, at once.
    with connect(server.port) as sock:
        sock.sendall(post + b"Content-Length: 1000000\r\n\r\n{")
        head, reply = read_response(sock)
        assert head.startswith(b"HTTP/1.1 413") and json.loads(reply)["error"] == "body_too_large", head + reply


def test_past_the_connection_limit_the_oldest_held_are_closed_and_the_page_served(start_server):
    # Sixty held partial requests against a limit of forty: gthread stopped accepting at forty, and the page's
    # connection waited in the listen queue until a held one timed out (here after a minute).
    server = start_server(DASH_APP_MAX_CONNECTIONS=40, DASH_APP_THREADS=8, DASH_APP_HEADER_TIMEOUT=60)
    clients = PartialClients(server.port, 60)
    try:
        for _ in range(3):
            page = requests.get(server.url + "/", timeout=5)
            assert page.status_code == 200 and "License usage" in page.text
        deadline = time.monotonic() + PATIENCE
        while clients.cuts < 20 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert clients.cuts >= 20 and clients.held() < 40
        # One line for the burst, not one per connection closed.
        logged = [line for line in server.log_path.read_text().splitlines() if "Connection limit reached" in line]
        assert len(logged) == 1 and "--max-connections" in logged[0], logged
    finally:
        clients.close()


@pytest.mark.parametrize("kind", ["procfile", "module"])
def test_over_long_request_lines_and_headers_are_answered_in_json(quick, kind):
    server = quick(kind)
    with connect(server.port) as sock:
        sock.sendall(b"GET /licenses/status?" + b"a" * 5000 + b" HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
        status, body = read_json_error(sock)
        assert status == 414 and body["error"] == "request_line_too_long" and body["detail"].startswith("request line:")
    # Never finished: answered once the line is over the limit, not at the deadline.
    with connect(server.port) as sock:
        sock.sendall(b"GET /licenses/status?" + b"a" * 70_000)
        status, body = read_json_error(sock)
        assert status == 414
    with connect(server.port) as sock:
        sock.sendall(b"GET /licenses/status HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Big: " + b"b" * 9000 + b"\r\n\r\n")
        status, body = read_json_error(sock)
        assert status == 431 and body["error"] == "headers_too_large" and body["detail"].startswith("headers:")
    assert requests.get(server.url + "/licenses/status", timeout=5).status_code == 200


def test_production_setup_serves_page_and_api_while_slow_clients_and_streams_are_held(tmp_path):
    raise_open_file_limit(8192)
    server = start_production(tmp_path)
    streams = partial = None
    try:
        assert listening_addresses(server.upstream_port) == ["127.0.0.1"]
        streams = StreamClients(server.port, 300)
        assert streams.started(timeout=60), [s for s in streams.statuses() if s != b"HTTP/1.1 200 OK"][:3]
        assert set(streams.statuses()) == {b"HTTP/1.1 200 OK"}
        partial = PartialClients(server.port, 1000)

        for _ in range(5):
            status = requests.get(server.url + "/licenses/status", timeout=2)
            assert status.status_code == 200 and len(status.json()) == 6
            page = requests.get(server.url + "/", timeout=2)
            assert page.status_code == 200 and "License usage" in page.text
        assert requests.get(server.url + "/realtime/stream/clients", timeout=2).json()["clients"] == 300
        # All of it while every slow client was still held, and every stream still open.
        assert partial.held() == 1000 and partial.cuts == 0
        assert streams.ended == 0
    finally:
        for clients in (partial, streams):
            if clients is not None:
                clients.close()
        assert server.stop() == 0
