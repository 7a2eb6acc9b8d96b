"""The SSE route /realtime/stream: query checks, the per-client generator, socket care."""

import queue
import select
import signal
import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import replace
from types import FrameType

from flask import Blueprint, Response, jsonify, request
from gunicorn.workers.base import Worker

from dash_app.auth.viewer import FULL, current_viewer
from dash_app.events import name_problem
from dash_app.state import get_state
from dash_app.stream import sse
from dash_app.stream.snapshot import Variant
from dash_app.stream.ticker import StreamTicker, StreamUnavailable, Subscription
from dash_app.web import ApiError, error_response, query_number

KEEPALIVE_SECONDS = 15.0
# How often a waiting stream checks whether its client hung up or was dropped.
POLL_SECONDS = 1.0
# A send that makes no progress for this long ends the stream, so a client that reads nothing frees its thread.
SEND_TIMEOUT_SECONDS = 30.0
SHORTEST_WINDOW_SECONDS = 60
QUERY_FIELDS = ("window", "tool", "delta")
_TRUE, _FALSE = ("1", "true", "yes", "on"), ("0", "false", "no", "off")

bp = Blueprint("stream", __name__)


def end_streams_on_worker_exit(ticker: StreamTicker) -> None:
    """In a gunicorn worker, end open streams on SIGTERM, so they do not hold the graceful shutdown to its timeout.

    gunicorn installs the worker's signal handlers before it loads the app, in the main thread: chain onto its own.
    """
    if threading.current_thread() is not threading.main_thread():
        return
    handler = signal.getsignal(signal.SIGTERM)
    worker = getattr(handler, "__self__", None)
    if not isinstance(worker, Worker) or not callable(handler):  # a bound method of the worker is callable
        return

    def handle_term(signum: int, frame: FrameType | None) -> None:
        handler(signum, frame)
        # Stopping joins the ticker thread: do it outside the signal handler.
        threading.Thread(target=ticker.stop, name="stream-stop", daemon=True).start()

    signal.signal(signal.SIGTERM, handle_term)


@bp.get("/realtime/stream")
def stream() -> Response:
    state = get_state()
    # Who reads is settled now, in the request: the stream shows names as this reader may see them, for its whole life.
    names = current_viewer().names
    variant = replace(parse_variant(state.stream, state.settings.retention_seconds), names=FULL if names.real else names)
    encoding = "gzip" if sse.accepts_gzip(request.headers.get("Accept-Encoding", "")) else None
    # The client's own socket, for hang-up checks and send timeouts; under HTTP/2 it would be shared, so leave it.
    sock = request.environ.get("gunicorn.socket") or request.environ.get("werkzeug.socket")
    if not request.environ.get("SERVER_PROTOCOL", "").startswith("HTTP/1"):
        sock = None
    try:
        sub = state.stream.subscribe(
            variant, parse_event_id(request.headers.get("Last-Event-ID")), encoding=encoding, on_drop=lambda: hang_up(sock)
        )
    except StreamUnavailable as exc:
        response = error_response(503, "stream_unavailable", str(exc))
        response.headers["Retry-After"] = "10"
        return response
    if sock is not None:
        sock.settimeout(SEND_TIMEOUT_SECONDS)
    response = Response(event_stream(sub, sock), content_type="text/event-stream; charset=utf-8")
    # Unsubscribe even when the server closes the response before it starts the generator.
    response.call_on_close(sub.close)
    response.headers["Cache-Control"] = "no-cache"
    response.headers["X-Accel-Buffering"] = "no"
    response.headers["Vary"] = "Accept-Encoding"
    if encoding is not None:
        response.headers["Content-Encoding"] = encoding
    return response


@bp.get("/realtime/stream/clients")
def clients() -> Response:
    return jsonify(get_state().stream.stats())


def parse_variant(ticker: StreamTicker, retention_seconds: float) -> Variant:
    """Return the Variant the query asks for, or raise ApiError 400 naming the bad field."""
    for name in request.args:
        if name not in QUERY_FIELDS:
            raise ApiError(400, "invalid_query", f"{name}: unknown parameter; use window, tool or delta")
    shortest = min(SHORTEST_WINDOW_SECONDS, retention_seconds)
    window = query_number("window", None, shortest, retention_seconds)
    if window is not None and window >= retention_seconds:
        window = None  # the whole retention window: one variant, however it is asked for
    names = request.args.getlist("tool")
    tools = None
    if names:
        known = ticker.known_tools()
        for name in names:
            problem = name_problem(name)
            if problem is not None:
                raise ApiError(400, "invalid_query", f"tool: {problem}")
            if name not in known:
                raise ApiError(400, "invalid_query", f"tool: no tool named {name!r}")
        tools = tuple(sorted(set(names)))
    raw_delta = request.args.get("delta", "0").strip().lower()
    if raw_delta not in _TRUE + _FALSE:
        raise ApiError(400, "invalid_query", "delta: must be 1 or 0")
    return Variant(window=window, tools=tools, delta=raw_delta in _TRUE)


def parse_event_id(header: str | None) -> int | None:
    """Return a Last-Event-ID header as an int; anything else counts as no id (the client gets a full message)."""
    try:
        return int(header) if header else None
    except ValueError:
        return None


def event_stream(
    sub: Subscription, sock: socket.socket | None, keepalive: float = KEEPALIVE_SECONDS, poll: float = POLL_SECONDS
) -> Iterator[bytes]:
    """Yield one client's bytes: the retry line and first message, then each tick's message or a keep-alive."""
    ping = sse.encode(sse.KEEPALIVE, sub.encoding)
    try:
        yield sse.opening(sub.encoding) + (sub.first or b"")
        last_sent = time.monotonic()
        while True:
            quiet = time.monotonic() - last_sent
            try:
                chunk = sub.queue.get(timeout=max(0.0, min(poll, keepalive - quiet)))
            except queue.Empty:
                chunk = b""
            if chunk is None or sub.dropped or peer_closed(sock):
                return
            if chunk:
                yield chunk
                last_sent = time.monotonic()
            elif time.monotonic() - last_sent >= keepalive:
                yield ping
                last_sent = time.monotonic()
    finally:
        sub.close()


def peer_closed(sock: socket.socket | None) -> bool:
    """Return True when the client has closed its end, without waiting and without reading its data."""
    if sock is None:
        return False
    try:
        poller = select.poll()
        poller.register(sock, select.POLLIN)
        events = poller.poll(0)
        if not events:
            return False
        if events[0][1] & (select.POLLHUP | select.POLLERR | select.POLLNVAL):
            return True
        return sock.recv(1, socket.MSG_PEEK) == b""
    except (BlockingIOError, InterruptedError, ValueError):
        return False  # ValueError: a TLS socket cannot peek; its hang-up shows at the next send
    except OSError:
        return True


def hang_up(sock: socket.socket | None) -> None:
    """Shut a dropped client's socket down, which also ends a send blocked on it."""
    if sock is None:
        return
    try:
        sock.shutdown(socket.SHUT_RDWR)
    except OSError:
        pass  # already closed
