"""HeadTimeoutWorker: gthread that reads whole requests in its event loop under a total deadline (see dash_app.worker)."""

import atexit
import errno
import os
import resource
import selectors
import socket
import sys
import time
from collections.abc import Callable
from functools import partial
from typing import TYPE_CHECKING, Any

from gunicorn import util
from gunicorn.http.errors import LimitRequestHeaders, LimitRequestLine
from gunicorn.http2 import negotiation
from gunicorn.workers import gthread

from dash_app.worker.deadline_connection import HeadConn
from dash_app.worker.request_framing import CHUNKED, CONTINUE, NO_BODY, body_plan, chunked_end, head_end, json_error

if TYPE_CHECKING:
    from dash_app.config import Config

# One read of a head in the loop; a head is usually under 1 KB.
HEAD_READ_SIZE = 16 * 1024
# One read of a body in the loop: bodies go up to the route's limit (1 MiB for Dash's callbacks).
BODY_READ_SIZE = 64 * 1024
# A head not complete at this size goes on in a thread, still under its deadline: buffers in the loop stay small.
MAX_LOOP_HEAD = 64 * 1024
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


def dashboard_config(app: object) -> "Config":
    """Return the Config of the app gunicorn serves: its dashboard Config, else the environment's."""
    config = getattr(app, "dashboard_config", None)
    if config is None:
        # The Procfile's gunicorn: dash_app.wsgi reads its configuration from the environment, and so does this.
        from dash_app.config import from_env

        config = from_env()
    return config


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
        super().init_process()  # its last step runs the loop, until the worker is told to stop
        self.exit_after_clean_stop()

    def exit_after_clean_stop(self) -> None:
        """End the process now that the loop has stopped cleanly: the exit handlers run, the interpreter's teardown not.

        The handlers stop the app's services (the SQLite writer flushes what is queued) and flush the logs. Tearing
        down an interpreter that holds Dash and the buffer frees every object one by one: about a second for nothing,
        on every restart and deploy. A loop that ended in an exception never gets here and exits as usual. (gunicorn's
        worker_exit server hook, which the Procfile and `python -m dash_app` do not set, is not called.)
        """
        self.log.info("Worker exiting (pid: %s)", self.pid)
        atexit._run_exitfuncs()
        for stream in (sys.stdout, sys.stderr):
            stream.flush()
        os._exit(0)

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
        # Python's C signal handler writes a byte to PIPE (gunicorn set it as the wakeup fd) on every signal: watching
        # it ends the loop's wait at once, so a SIGTERM stops the worker now rather than after up to a second.
        self.poller.register(self.PIPE[0], selectors.EVENT_READ, self.drain_wakeups)
        try:
            super().run()
        finally:
            for sock in list(self.lingering):
                util.close(sock)
            self.lingering.clear()

    def drain_wakeups(self, pipe: int) -> None:
        """Read the signal bytes waiting in the wakeup pipe (the handlers have run, or run next)."""
        try:
            while os.read(pipe, 4096):
                pass
        except BlockingIOError:
            pass
