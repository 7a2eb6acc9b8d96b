"""The gunicorn worker class of `python -m dash_app` and the Procfile: gthread, with a deadline on every request.

Why a worker of our own: gunicorn's gthread worker gives a connection a thread as soon as its first byte arrives,
and that thread then waits, with no time limit, for the rest of the request: its line, headers and body. A few
hundred clients that send half a request and hold it take every thread, and the page and the API wait for as long
as they are held. gunicorn has no setting for it, and the thread pool is the only place requests are served.

So this worker reads each request in its event loop, with non-blocking reads, and hands the connection to a thread
only once the whole request has arrived: the head up to its blank line, then a body of the Content-Length it
announces or a chunked body up to its last chunk, as long as the body is within what the route accepts (64 KiB,
1 MiB for Dash's callbacks; a larger one is handed over at once, and the app refuses it unread). A held partial
request costs a file descriptor and its bytes, never a thread. Every request has one total deadline,
`header_timeout` seconds (`--header-timeout`, `DASH_APP_HEADER_TIMEOUT`, default 10) from the accept, or on a
kept-alive connection from the first byte of its next request: a client still short of its blank line then is
closed, and one still short of its body is answered 408, however it paces its bytes. Responses and long SSE
streams are not limited by it. Idle kept-alive connections wait in the loop as before, for gunicorn's `keepalive`.

The worker holds up to `max_connections` connections (`--max-connections`, default 10,000) and raises its soft
limit on file descriptors to match. At the limit it does not stop accepting, which would leave new clients (the
page's among them) in the listen queue until a held one times out: it closes the oldest connection that has not
yet sent a whole request (else the oldest lingering or idle kept-alive one) and logs one line per burst of them.

A request that cannot be read in the loop (gunicorn's own TLS, HTTP/2 prior knowledge, a request pipelined behind
another, a head over 64 KiB) is read by its thread as gthread does, its head under what is left of the same
deadline. A connection closed after its response lingers in the loop, not in a blocking read on the loop's thread,
so a client that never closes its end cannot stall the loop. An over-long request line is answered 414, and
too-large headers 431, with the API's JSON error body rather than gunicorn's HTML page.
"""

import errno
import json
import resource
import selectors
import socket
import time
from collections.abc import Callable
from functools import partial
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from gunicorn import util
from gunicorn.http.errors import LimitRequestHeaders, LimitRequestLine, NoMoreData
from gunicorn.http.parser import RequestParser
from gunicorn.http.unreader import SocketUnreader
from gunicorn.http2 import negotiation
from gunicorn.workers import gthread

if TYPE_CHECKING:
    from dash_app.config import Config

# One read of a head in the loop; a head is usually under 1 KB.
HEAD_READ_SIZE = 16 * 1024
# One read of a body in the loop: bodies go up to the route's limit (1 MiB for Dash's callbacks).
BODY_READ_SIZE = 64 * 1024
# A head not complete at this size goes on in a thread, still under its deadline: buffers in the loop stay small.
MAX_LOOP_HEAD = 64 * 1024
# A chunk-size line longer than this is not one a client means: the thread's parser refuses it.
MAX_CHUNK_LINE = 1024
# After a response with "Connection: close": how long, and how much, to read what the client still sends before
# closing, so unread request bytes do not turn the close into a reset that truncates the response (RFC 9112 9.6).
LINGER_SECONDS = 2.0
LINGER_MAX_BYTES = 64 * 1024
# Connections accepted at most per wake-up of the loop, so a burst of them does not keep the loop from the rest.
ACCEPT_BATCH = 64
# Out of file descriptors: stop accepting this long, rather than end the worker and its in-memory buffer.
ACCEPT_PAUSE_SECONDS = 0.5
# Descriptors kept beyond the connections: the SQLite database, logs, pipes, the listening sockets.
SPARE_DESCRIPTORS = 128
# At the connection limit, one log line per this many seconds however many connections are closed for it.
SHED_LOG_SECONDS = 10.0
CONTINUE = b"HTTP/1.1 100 Continue\r\n\r\n"
# The body a request will have, as the loop reads it: none (hand it over now), or chunked up to its last chunk.
NO_BODY = -1
CHUNKED = -2


class HeadTimeout(NoMoreData):
    """The client did not finish its request head before the deadline (gunicorn closes it like a hang-up)."""


def dashboard_config(app: object) -> "Config":
    """Return the Config of the app gunicorn serves: its dashboard Config, else the environment's."""
    config = getattr(app, "dashboard_config", None)
    if config is None:
        # The Procfile's gunicorn: dash_app.wsgi reads its configuration from the environment, and so does this.
        from dash_app.config import from_env

        config = from_env()
    return config


def head_end(data: bytearray, start: int = 0) -> int:
    """Return the index just past the blank line that ends a request head in `data` (searched from `start`), or -1."""
    # A bare-LF blank line counts too: gunicorn's parser rejects it, at once rather than at the deadline.
    ends = [i + n for i, n in ((data.find(b"\n\r\n", start), 3), (data.find(b"\n\n", start), 2)) if i >= 0]
    return min(ends) if ends else -1


def json_error(status: int, reason: str, error: str, detail: str) -> bytes:
    """Return a whole HTTP/1.1 response that closes the connection, with the API's JSON error body."""
    body = json.dumps({"error": error, "detail": detail}).encode()
    head = (
        f"HTTP/1.1 {status} {reason}\r\nConnection: close\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(body)}\r\n\r\n"
    )
    return head.encode("latin-1") + body


def body_plan(head: bytes, body_limit: Callable[[str], int]) -> tuple[int, int, bool]:
    """Return the body's length (or NO_BODY, CHUNKED), its route's limit, and whether the client awaits 100 Continue.

    Only what the loop needs to know how long to wait: gunicorn's parser in the thread still reads and checks the
    head, so anything unusual here (two lengths, an unknown coding, a bare LF) is NO_BODY and the parser answers it.
    """
    lines = head.split(b"\r\n")
    parts = lines[0].split(b" ")
    if len(parts) != 3 or b"\n" in head.replace(b"\r\n", b""):
        return NO_BODY, 0, False
    target = parts[1].decode("latin-1")
    path = target.split("?", 1)[0] if target.startswith("/") else urlsplit(target).path
    lengths, codings, expect = set(), [], False
    for line in lines[1:]:
        name, colon, value = line.partition(b":")
        if not colon:
            continue
        name, value = name.strip().lower(), value.strip()
        if name == b"content-length":
            lengths.add(value)
        elif name == b"transfer-encoding":
            codings += [c.strip().lower() for c in value.split(b",")]
        elif name == b"expect":
            expect = value.lower() == b"100-continue" and parts[2] == b"HTTP/1.1"
    limit = body_limit(path)
    if codings:
        return (CHUNKED if codings == [b"chunked"] else NO_BODY), limit, expect
    if len(lengths) != 1:
        return NO_BODY, limit, False
    length = lengths.pop()
    if not length.isdigit() or int(length) > limit:
        return NO_BODY, limit, False  # the parser refuses a bad length, the app a body over its limit (unread)
    return int(length), limit, expect and int(length) > 0


def chunked_end(data: bytearray, pos: int, size_left: int) -> tuple[int | None, int, int]:
    """Walk complete chunks of a chunked body from `pos`; return (index past its end or None, next pos, size left).

    The end is -1 when the body is malformed or over `size_left` bytes: the thread's parser and the app answer it.
    """
    while True:
        eol = data.find(b"\r\n", pos, pos + MAX_CHUNK_LINE)
        if eol < 0:
            return (-1 if len(data) - pos >= MAX_CHUNK_LINE else None), pos, size_left
        size_text = bytes(data[pos:eol]).split(b";", 1)[0].strip()
        try:
            size = int(size_text, 16)
        except ValueError:
            return -1, pos, size_left
        if size == 0:
            # The last chunk, then trailer fields up to a blank line (usually none).
            if data[eol + 2 : eol + 4] == b"\r\n":
                return eol + 4, pos, size_left
            trailers = data.find(b"\r\n\r\n", eol)
            return (trailers + 4 if trailers >= 0 else None), pos, size_left
        if size > size_left:
            return -1, pos, size_left
        if len(data) < eol + 2 + size + 2:
            return None, pos, size_left
        pos, size_left = eol + 2 + size + 2, size_left - size


class DeadlineUnreader(SocketUnreader):
    """gunicorn's socket reader, with each read bounded by what is left of `deadline` while one is set."""

    deadline: float | None = None
    timed_out = False

    def chunk(self, size_hint: int | None = None) -> bytes:
        if self.deadline is None:
            return super().chunk(size_hint)
        remaining = self.deadline - time.monotonic()
        if remaining > 0:
            # Set before every read, so a client dribbling a byte at a time still meets the same deadline.
            self.sock.settimeout(remaining)
            try:
                return super().chunk(size_hint)
            except TimeoutError:
                pass
        self.timed_out = True
        raise HeadTimeout(self.buf.getvalue())

    def lift(self) -> None:
        """Drop the deadline and make the socket blocking again, as gthread's handlers expect."""
        if self.deadline is not None:
            self.deadline = None
            self.sock.settimeout(None)


class HeadConn(gthread.TConn):
    """A gthread connection with the bytes of its request read so far and the deadline for the rest."""

    def __init__(
        self,
        cfg: Any,
        sock: socket.socket,
        client: Any,
        server: Any,
        deadline: float | None,
        linger: Callable[["HeadConn"], None],
    ) -> None:
        super().__init__(cfg, sock, client, server)
        self.head = bytearray()
        self.head_deadline = deadline
        self.head_timed_out = False
        self._linger = linger
        self.new_request()

    def read_deadline(self) -> float:
        """Return the head's deadline, which every connection whose request the loop reads has."""
        assert self.head_deadline is not None, "a connection read in the loop has a deadline"
        return self.head_deadline

    def new_request(self) -> None:
        """Forget the previous request's reading state: the next one starts with its head."""
        self.head_end = -1  # index past the head's blank line, once it has come
        self.request_end: int | None = None  # index past the body, once known
        self.chunk_pos = 0  # a chunked body: where its next chunk starts
        self.chunk_room = 0  # a chunked body: bytes it may still carry
        self.sent_continue = False

    def init(self) -> None:
        if self.initialized:
            return
        super().init()
        self.arm_head()

    def arm_head(self) -> None:
        """Give the HTTP/1 parser the bytes read in the loop and the head's deadline (in the request's thread)."""
        if not isinstance(self.parser, RequestParser):
            return  # HTTP/2: frames, not a head
        unreader = self.parser.unreader
        if not isinstance(unreader, DeadlineUnreader):
            replacement = DeadlineUnreader(unreader.sock, unreader.mxchunk)
            replacement.unread(unreader.take_buffered())
            self.parser.unreader = unreader = replacement
        if self.head:
            unreader.unread(bytes(self.head))
            self.head.clear()
        unreader.deadline = self.head_deadline

    def lift_head_deadline(self) -> None:
        """The head is parsed: the response is not bound by its deadline (the body was read in the loop)."""
        self.head_deadline = None
        if isinstance(self.parser, RequestParser) and isinstance(self.parser.unreader, DeadlineUnreader):
            self.parser.unreader.lift()

    def close(self, graceful: bool = False) -> None:
        if graceful and not self.head_timed_out:
            # gthread drains a closing socket in a blocking read on the loop's thread: linger in the loop instead.
            self._linger(self)
        else:
            util.close(self.sock)


class HeadTimeoutWorker(gthread.ThreadWorker):
    """gthread that reads whole requests in its event loop under a total deadline (see the module docstring)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.header_timeout = 10.0
        self.body_limit: Callable[[str], int] = lambda _path: 0
        # Connections whose request is being read in the loop, in deadline order (each gets now + header_timeout).
        self.heads: dict[HeadConn, None] = {}
        # Closed connections draining what their client still sends: socket -> deadline, in deadline order.
        self.lingering: dict[socket.socket, float] = {}
        self._accept_paused_until = 0.0
        self._stop_deadline: float | None = None
        self._shed = 0
        self._shed_logged_at = float("-inf")

    def init_process(self) -> None:
        # Imported here, after the fork: the app's modules load in the worker, as serve.py's load() does.
        from dash_app.web import body_limit

        config = dashboard_config(self.app)
        self.header_timeout = config.header_timeout
        self.body_limit = body_limit
        self.worker_connections = config.max_connections
        self.max_keepalived = max(0, self.worker_connections - self.cfg.threads)
        self.raise_descriptor_limit()
        super().init_process()

    def raise_descriptor_limit(self) -> None:
        """Raise the soft limit on open files to what the connections need (as nginx's worker_rlimit_nofile)."""
        needed = int(self.worker_connections) + SPARE_DESCRIPTORS
        soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        if soft == resource.RLIM_INFINITY or soft >= needed:
            return
        target = needed if hard == resource.RLIM_INFINITY else min(needed, hard)
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
            soft = target
        except (ValueError, OSError):
            pass
        if soft < needed:
            self.worker_connections = max(1, soft - SPARE_DESCRIPTORS)
            self.max_keepalived = max(0, self.worker_connections - self.cfg.threads)
            self.log.warning("Open-file limit %d: serving at most %d connections", soft, self.worker_connections)

    def reads_heads(self, conn: HeadConn) -> bool:
        """Return True when the loop can read this connection's head: plain HTTP/1, not TLS or HTTP/2 preface."""
        return not self.cfg.is_ssl and not negotiation.prior_knowledge_allowed(self.cfg, conn.client)

    def set_accept_enabled(self, enabled: bool) -> None:
        if enabled and time.monotonic() < self._accept_paused_until:
            return
        super().set_accept_enabled(enabled)

    def accept(self, listener: socket.socket) -> None:
        # Several a wake-up, as nginx's multi_accept: after a burst of connections (held clients cut at their
        # deadline all reconnect at once) one accept per pass of the loop would keep the page's in the queue longer.
        for _ in range(ACCEPT_BATCH):
            if not self.accept_one(listener):
                break

    def accept_one(self, listener: socket.socket) -> bool:
        """Accept one connection and start reading its request; return whether to go on accepting now."""
        try:
            client_sock, client_addr = listener.accept()
        except OSError as exc:
            if exc.errno in (errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM):
                self.log.warning("Cannot accept (%s): pausing for %.1f s", exc, ACCEPT_PAUSE_SECONDS)
                self._accept_paused_until = time.monotonic() + ACCEPT_PAUSE_SECONDS
                self.set_accept_enabled(False)
            elif exc.errno not in (errno.EAGAIN, errno.ECONNABORTED, errno.EWOULDBLOCK):
                raise
            return False
        self.nr_conns += 1
        deadline = time.monotonic() + self.header_timeout
        conn = HeadConn(self.cfg, client_sock, client_addr, listener.getsockname(), deadline, self.linger)
        if self.reads_heads(conn):
            self.wait_for_head(conn)
        else:
            self.enqueue_req(conn)  # gthread's own path; the thread's reads of the head keep this deadline
        if self.nr_conns >= self.worker_connections:
            # gthread would stop accepting now, and new clients would wait in the listen queue for a free slot.
            self.shed_oldest(conn)
        return self.nr_conns < self.worker_connections

    def shed_oldest(self, newest: HeadConn) -> None:
        """Close the oldest connection still sending its request (else lingering, else kept alive), to keep accepting."""
        if self.heads and next(iter(self.heads)) is not newest:
            conn = next(iter(self.heads))
            self.forget_head(conn)
            self.nr_conns -= 1
            conn.head_timed_out = True
            conn.close()
        elif self.lingering:
            self.end_linger(next(iter(self.lingering)))
        elif self.keepalived_conns:
            conn = self.keepalived_conns.popleft()
            try:
                self.poller.unregister(conn.sock)
            except (KeyError, ValueError, OSError):
                pass
            self.nr_conns -= 1
            conn.close()
        else:
            return  # every connection is being served: gthread stops accepting until one ends
        self._shed += 1
        now = time.monotonic()
        if now - self._shed_logged_at >= SHED_LOG_SECONDS:
            self.log.warning(
                "Connection limit reached (%d, --max-connections): closing the oldest connections that have not sent "
                "a whole request; %d closed since the last such line",
                self.worker_connections,
                self._shed,
            )
            self._shed, self._shed_logged_at = 0, now

    def on_client_socket_readable(self, conn: HeadConn, client: socket.socket) -> None:
        if not self.reads_heads(conn):
            super().on_client_socket_readable(conn, client)
            return
        # A kept-alive connection's next request: it has header_timeout from this first byte.
        self.poller.unregister(client)
        self.keepalived_conns.remove(conn)
        conn.head_deadline = time.monotonic() + self.header_timeout
        self.wait_for_head(conn)
        self.on_head_readable(conn, client)

    def wait_for_head(self, conn: HeadConn) -> None:
        """Read the connection's request in the loop from now on."""
        if self._stop_deadline is not None:
            conn.head_deadline = min(conn.read_deadline(), self._stop_deadline)
        conn.new_request()
        self.heads[conn] = None
        self.poller.register(conn.sock, selectors.EVENT_READ, partial(self.on_head_readable, conn))

    def on_head_readable(self, conn: HeadConn, _client: socket.socket) -> None:
        """Take what the client sent; once the request is complete, hand the connection to a thread."""
        try:
            data = conn.sock.recv(HEAD_READ_SIZE if conn.head_end < 0 else BODY_READ_SIZE)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            data = b""
        if not data:
            self.forget_head(conn)
            self.nr_conns -= 1
            conn.close()
            return
        conn.head += data
        if self.request_complete(conn, len(data)):
            self.forget_head(conn)
            # The bytes are in conn.head, not on the socket: gthread must not wait for the socket to be readable.
            conn.data_ready = True
            self.enqueue_req(conn)

    def request_complete(self, conn: HeadConn, received: int) -> bool:
        """Return True when the thread can take the request: all of it read, or something the parser should answer."""
        if conn.head_end < 0:
            end = head_end(conn.head, max(0, len(conn.head) - received - 2))
            if end < 0:
                line_limit = self.cfg.limit_request_line
                # An over-long request line or head: the parser answers it at once (414, 431).
                over_line = line_limit > 0 and len(conn.head) > line_limit + 2 and b"\n" not in conn.head
                return over_line or len(conn.head) >= MAX_LOOP_HEAD
            conn.head_end = end
            length, limit, expect = body_plan(bytes(conn.head[:end]), self.body_limit)
            if length == NO_BODY:
                return True
            if length == CHUNKED:
                conn.chunk_pos, conn.chunk_room = end, limit
            else:
                conn.request_end = end + length
            if expect and not self.request_complete(conn, 0):
                # The client waits for this before sending its body; gunicorn's own comes later, when it has it.
                self.send_quietly(conn, CONTINUE)
                conn.sent_continue = True
        if conn.request_end is None:
            conn.request_end, conn.chunk_pos, conn.chunk_room = chunked_end(conn.head, conn.chunk_pos, conn.chunk_room)
            if conn.request_end == -1:
                return True
        return conn.request_end is not None and len(conn.head) >= conn.request_end

    def send_quietly(self, conn: HeadConn, data: bytes) -> None:
        """Send a short answer from the loop (it fits the socket's empty buffer); a client gone is not an error."""
        try:
            conn.sock.send(data)
        except OSError:
            pass

    def forget_head(self, conn: HeadConn) -> None:
        self.heads.pop(conn, None)
        try:
            self.poller.unregister(conn.sock)
        except (KeyError, ValueError, OSError):
            pass

    def handle(self, conn: HeadConn) -> Any:
        if conn.head_deadline is None:
            # A request read ahead behind the previous one: its head gets the same time, from now.
            conn.head_deadline = time.monotonic() + self.header_timeout
        if conn.initialized:
            conn.arm_head()
        result = super().handle(conn)
        if getattr(getattr(conn.parser, "unreader", None), "timed_out", False):
            # Timed out in the thread: close at once; the client is slow, lingering for it would only wait.
            conn.head_timed_out = True
        return result

    def handle_request(self, req: Any, conn: HeadConn) -> Any:
        conn.lift_head_deadline()
        if conn.sent_continue:
            req._expected_100_continue = False  # the loop sent it, and the client has sent its body since
        return super().handle_request(req, conn)

    def handle_h2c_upgrade(self, conn: HeadConn, req: Any, settings: Any) -> Any:
        conn.lift_head_deadline()
        return super().handle_h2c_upgrade(conn, req, settings)

    def handle_error(self, req: Any, client: socket.socket, addr: Any, exc: BaseException) -> None:
        # The API's clients read JSON errors; gunicorn writes an HTML page for these two.
        if isinstance(exc, LimitRequestLine):
            detail = f"request line: longer than {self.cfg.limit_request_line} bytes"
            response = json_error(414, "URI Too Long", "request_line_too_long", detail)
        elif isinstance(exc, LimitRequestHeaders):
            detail = f"headers: at most {self.cfg.limit_request_fields} fields of {self.cfg.limit_request_field_size} bytes"
            response = json_error(431, "Request Header Fields Too Large", "headers_too_large", detail)
        else:
            super().handle_error(req, client, addr, exc)
            return
        self.log.warning("Invalid request from ip=%s: %s", (addr or ("",))[0], exc)
        try:
            util.write_nonblock(client, response)
        except OSError:
            self.log.debug("Failed to send error message.")

    def linger(self, conn: HeadConn) -> None:
        """Close after a response: send FIN now, then read and drop what the client still sends, in the loop."""
        sock = conn.sock
        try:
            sock.shutdown(socket.SHUT_WR)
            sock.setblocking(False)
            self.poller.register(sock, selectors.EVENT_READ, partial(self.on_linger_readable, [0]))
        except (OSError, ValueError, KeyError):
            util.close(sock)
            return
        # Counted as a connection: it holds a descriptor until it ends.
        self.nr_conns += 1
        self.lingering[sock] = time.monotonic() + LINGER_SECONDS

    def on_linger_readable(self, drained: list[int], sock: socket.socket) -> None:
        try:
            data = sock.recv(HEAD_READ_SIZE)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            data = b""
        drained[0] += len(data)
        if not data or drained[0] >= LINGER_MAX_BYTES:
            self.end_linger(sock)

    def end_linger(self, sock: socket.socket) -> None:
        if self.lingering.pop(sock, None) is not None:
            self.nr_conns -= 1
        try:
            self.poller.unregister(sock)
        except (KeyError, ValueError, OSError):
            pass
        util.close(sock)

    def wait_for_and_dispatch_events(self, timeout: float) -> None:
        # Wake up for the first deadline, so a request or a linger ends on time rather than at the next 1 s tick.
        now = time.monotonic()
        if self.heads:
            timeout = min(timeout, next(iter(self.heads)).read_deadline() - now)
        if self.lingering:
            timeout = min(timeout, next(iter(self.lingering.values())) - now)
        super().wait_for_and_dispatch_events(max(0.0, timeout))

    def murder_pending(self) -> None:
        super().murder_pending()
        now = time.monotonic()
        if not self.alive and self._stop_deadline is None:
            # Stopping: a request in progress gets as long as a kept-alive connection does (the order stays sorted).
            self._stop_deadline = now + gthread.STOP_KEEPALIVE_LINGER
            for conn in self.heads:
                conn.head_deadline = min(conn.read_deadline(), self._stop_deadline)
        while self.heads:
            conn = next(iter(self.heads))
            if conn.read_deadline() > now:
                break
            self.forget_head(conn)
            self.nr_conns -= 1
            if conn.head_end >= 0:
                # A whole head and part of its body: the client is told why, then the close lingers as usual.
                detail = f"body: not complete within {self.header_timeout:g} s of the request's start"
                self.send_quietly(conn, json_error(408, "Request Timeout", "request_timeout", detail))
                conn.close(graceful=True)
                self.log.debug("Answered %s 408: no complete request body within %.1f s", conn.client, self.header_timeout)
            else:
                conn.head_timed_out = True
                conn.close()
                self.log.debug("Closed %s: no complete request head within %.1f s", conn.client, self.header_timeout)
        while self.lingering:
            sock, deadline = next(iter(self.lingering.items()))
            if deadline > now:
                break
            self.end_linger(sock)

    def run(self) -> None:
        try:
            super().run()
        finally:
            for sock in list(self.lingering):
                util.close(sock)
            self.lingering.clear()
