"""The gunicorn worker class of `python -m dash_app` and the Procfile: gthread, with a deadline on every request head.

Why a worker of our own: gunicorn's gthread worker gives a connection a thread as soon as its first byte arrives,
and that thread then waits, with no time limit, for the rest of the request line and headers. A few hundred
clients that send half a request and hold it take every thread, and the page and the API wait for as long as they
are held. gunicorn has no setting for it, and the thread pool is the only place requests are served.

So this worker reads each request head in its event loop, with non-blocking reads, and hands the connection to a
thread only once the blank line that ends the head has arrived: a held partial request costs a file descriptor and
a few KB, never a thread. Every head has a total deadline, `header_timeout` seconds (`--header-timeout`,
`DASH_APP_HEADER_TIMEOUT`, default 10) from the accept, or on a kept-alive connection from the first byte of its
next request: a client still short of its blank line then is closed, however it paces its bytes. Once the head is
parsed the deadline is lifted, so request bodies and long SSE streams are not limited by it. Idle kept-alive
connections wait in the loop as before, for gunicorn's `keepalive` (2 s).

A head that cannot be read in the loop (gunicorn's own TLS, HTTP/2 prior knowledge, a request pipelined behind
another, a head over 64 KiB) is read by its thread as gthread does, with every read bounded by what is left of the
same deadline. A connection closed after its response lingers in the loop, not in a blocking read on the loop's
thread, so a client that never closes its end cannot stall the loop. And the worker raises its soft limit on file
descriptors to what `worker_connections` needs, and pauses accepting when it runs out of them instead of dying
with the buffer.

This bounds slow request heads; it does not make the server safe to expose on its own (slow request bodies still
hold a thread, up to the 64 KiB the API accepts): the production setup puts nginx in front (see `deploy/`).
"""

import errno
import resource
import selectors
import socket
import time
from functools import partial

from gunicorn import util
from gunicorn.http.errors import NoMoreData
from gunicorn.http.parser import RequestParser
from gunicorn.http.unreader import SocketUnreader
from gunicorn.http2 import negotiation
from gunicorn.workers import gthread

# One read of a head in the loop; a head is usually under 1 KB.
HEAD_READ_SIZE = 16 * 1024
# A head not complete at this size goes on in a thread, still under its deadline: buffers in the loop stay small.
MAX_LOOP_HEAD = 64 * 1024
# After a response with "Connection: close": how long, and how much, to read what the client still sends before
# closing, so unread request bytes do not turn the close into a reset that truncates the response (RFC 9112 9.6).
LINGER_SECONDS = 2.0
LINGER_MAX_BYTES = 64 * 1024
# Out of file descriptors: stop accepting this long, rather than end the worker and its in-memory buffer.
ACCEPT_PAUSE_SECONDS = 0.5
# Descriptors kept beyond worker_connections: the SQLite database, logs, pipes, the listening sockets.
SPARE_DESCRIPTORS = 128


class HeadTimeout(NoMoreData):
    """The client did not finish its request head before the deadline (gunicorn closes it like a hang-up)."""


def header_timeout_for(app) -> float:
    """Return the header timeout of the app gunicorn serves: its dashboard Config, else the environment's."""
    config = getattr(app, "dashboard_config", None)
    if config is None:
        # The Procfile's gunicorn: dash_app.wsgi reads its configuration from the environment, and so does this.
        from dash_app.config import from_env

        config = from_env()
    return config.header_timeout


def head_complete(data: bytearray, start: int = 0) -> bool:
    """Return True when `data` holds a blank line at or after `start`, the end of a request head."""
    # A bare-LF blank line counts too: gunicorn's parser rejects it, at once rather than at the deadline.
    return data.find(b"\n\r\n", start) >= 0 or data.find(b"\n\n", start) >= 0


class DeadlineUnreader(SocketUnreader):
    """gunicorn's socket reader, with each read bounded by what is left of `deadline` while one is set."""

    deadline = None
    timed_out = False

    def chunk(self, size_hint=None):
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

    def lift(self):
        """Drop the deadline and make the socket blocking again, as gthread's handlers expect."""
        if self.deadline is not None:
            self.deadline = None
            self.sock.settimeout(None)


class HeadConn(gthread.TConn):
    """A gthread connection with the bytes of its head read so far and the deadline for the rest."""

    def __init__(self, cfg, sock, client, server, deadline, linger):
        super().__init__(cfg, sock, client, server)
        self.head = bytearray()
        self.head_deadline = deadline
        self.head_timed_out = False
        self._linger = linger

    def init(self):
        if self.initialized:
            return
        super().init()
        self.arm_head()

    def arm_head(self):
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

    def lift_head_deadline(self):
        """The head is parsed: the body and the response are not bound by its deadline."""
        self.head_deadline = None
        if isinstance(self.parser, RequestParser) and isinstance(self.parser.unreader, DeadlineUnreader):
            self.parser.unreader.lift()

    def close(self, graceful=False):
        if graceful and not self.head_timed_out:
            # gthread drains a closing socket in a blocking read on the loop's thread: linger in the loop instead.
            self._linger(self)
        else:
            util.close(self.sock)


class HeadTimeoutWorker(gthread.ThreadWorker):
    """gthread that reads request heads in its event loop under a total deadline (see the module docstring)."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.header_timeout = 10.0
        # Connections whose head is being read in the loop, in deadline order (each gets now + header_timeout).
        self.heads = {}
        # Closed connections draining what their client still sends: socket -> deadline, in deadline order.
        self.lingering = {}
        self._accept_paused_until = 0.0
        self._stop_deadline = None

    def init_process(self):
        self.header_timeout = header_timeout_for(self.app)
        self.raise_descriptor_limit()
        super().init_process()

    def raise_descriptor_limit(self):
        """Raise the soft limit on open files to what worker_connections needs (as nginx's worker_rlimit_nofile)."""
        needed = int(self.cfg.worker_connections) + SPARE_DESCRIPTORS
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
            self.log.warning("Open-file limit %d: serving at most %d connections", soft, self.worker_connections)

    def reads_heads(self, conn):
        """Return True when the loop can read this connection's head: plain HTTP/1, not TLS or HTTP/2 preface."""
        return not self.cfg.is_ssl and not negotiation.prior_knowledge_allowed(self.cfg, conn.client)

    def set_accept_enabled(self, enabled):
        if enabled and time.monotonic() < self._accept_paused_until:
            return
        super().set_accept_enabled(enabled)

    def accept(self, listener):
        try:
            client_sock, client_addr = listener.accept()
        except OSError as exc:
            if exc.errno in (errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM):
                self.log.warning("Cannot accept (%s): pausing for %.1f s", exc, ACCEPT_PAUSE_SECONDS)
                self._accept_paused_until = time.monotonic() + ACCEPT_PAUSE_SECONDS
                self.set_accept_enabled(False)
            elif exc.errno not in (errno.EAGAIN, errno.ECONNABORTED, errno.EWOULDBLOCK):
                raise
            return
        self.nr_conns += 1
        deadline = time.monotonic() + self.header_timeout
        conn = HeadConn(self.cfg, client_sock, client_addr, listener.getsockname(), deadline, self.linger)
        if self.reads_heads(conn):
            self.wait_for_head(conn)
        else:
            self.enqueue_req(conn)  # gthread's own path; the thread's reads of the head keep this deadline

    def on_client_socket_readable(self, conn, client):
        if not self.reads_heads(conn):
            super().on_client_socket_readable(conn, client)
            return
        # A kept-alive connection's next request: its head has header_timeout from this first byte.
        self.poller.unregister(client)
        self.keepalived_conns.remove(conn)
        conn.head_deadline = time.monotonic() + self.header_timeout
        self.wait_for_head(conn)
        self.on_head_readable(conn, client)

    def wait_for_head(self, conn):
        """Read the connection's head in the loop from now on."""
        if self._stop_deadline is not None:
            conn.head_deadline = min(conn.head_deadline, self._stop_deadline)
        self.heads[conn] = None
        self.poller.register(conn.sock, selectors.EVENT_READ, partial(self.on_head_readable, conn))

    def on_head_readable(self, conn, _client):
        """Take what the client sent; once the head is complete, hand the connection to a thread."""
        try:
            data = conn.sock.recv(HEAD_READ_SIZE)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            data = b""
        if not data:
            self.forget_head(conn)
            self.nr_conns -= 1
            conn.close()
            return
        start = max(0, len(conn.head) - 2)
        conn.head += data
        if head_complete(conn.head, start) or len(conn.head) >= MAX_LOOP_HEAD:
            self.forget_head(conn)
            # The bytes are in conn.head, not on the socket: gthread must not wait for the socket to be readable.
            conn.data_ready = True
            self.enqueue_req(conn)

    def forget_head(self, conn):
        self.heads.pop(conn, None)
        try:
            self.poller.unregister(conn.sock)
        except (KeyError, ValueError, OSError):
            pass

    def handle(self, conn):
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

    def handle_request(self, req, conn):
        conn.lift_head_deadline()
        return super().handle_request(req, conn)

    def handle_h2c_upgrade(self, conn, req, settings):
        conn.lift_head_deadline()
        return super().handle_h2c_upgrade(conn, req, settings)

    def linger(self, conn):
        """Close after a response: send FIN now, then read and drop what the client still sends, in the loop."""
        sock = conn.sock
        try:
            sock.shutdown(socket.SHUT_WR)
            sock.setblocking(False)
            self.poller.register(sock, selectors.EVENT_READ, partial(self.on_linger_readable, [0]))
        except (OSError, ValueError, KeyError):
            util.close(sock)
            return
        self.lingering[sock] = time.monotonic() + LINGER_SECONDS

    def on_linger_readable(self, drained, sock):
        try:
            data = sock.recv(HEAD_READ_SIZE)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            data = b""
        drained[0] += len(data)
        if not data or drained[0] >= LINGER_MAX_BYTES:
            self.end_linger(sock)

    def end_linger(self, sock):
        self.lingering.pop(sock, None)
        try:
            self.poller.unregister(sock)
        except (KeyError, ValueError, OSError):
            pass
        util.close(sock)

    def wait_for_and_dispatch_events(self, timeout):
        # Wake up for the first deadline, so a head or a linger ends on time rather than at the next 1 s tick.
        now = time.monotonic()
        if self.heads:
            timeout = min(timeout, next(iter(self.heads)).head_deadline - now)
        if self.lingering:
            timeout = min(timeout, next(iter(self.lingering.values())) - now)
        super().wait_for_and_dispatch_events(max(0.0, timeout))

    def murder_pending(self):
        super().murder_pending()
        now = time.monotonic()
        if not self.alive and self._stop_deadline is None:
            # Stopping: a head in progress gets as long as a kept-alive connection does (and the order stays sorted).
            self._stop_deadline = now + gthread.STOP_KEEPALIVE_LINGER
            for conn in self.heads:
                conn.head_deadline = min(conn.head_deadline, self._stop_deadline)
        while self.heads:
            conn = next(iter(self.heads))
            if conn.head_deadline > now:
                break
            self.forget_head(conn)
            self.nr_conns -= 1
            conn.head_timed_out = True
            conn.close()
            self.log.debug("Closed %s: no complete request head within %.1f s", conn.client, self.header_timeout)
        while self.lingering:
            sock, deadline = next(iter(self.lingering.items()))
            if deadline > now:
                break
            self.end_linger(sock)

    def run(self):
        try:
            super().run()
        finally:
            for sock in list(self.lingering):
                util.close(sock)
            self.lingering.clear()
