"""Real local receivers of alert notifications for tests and benchmarks: webhook (HTTP) servers and an SMTP server.

All listen on 127.0.0.1 only, record what arrives, let a test wait on a condition for it, and stop cleanly as
context managers. aiosmtpd is a test dependency (requirements-test.txt): import this module from tests only.
"""

from __future__ import annotations

import email
import email.message
import email.policy
import itertools
import json
import select
import threading
import time
from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any
from urllib.parse import urlencode

from aiosmtpd.controller import Controller

from dash_app.testing.servers import free_port


class _Inbox:
    """Items that arrived from a server thread, with a condition to wait for a count of them."""

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._items: list[Any] = []

    def add(self, item: Any) -> None:
        """Record `item` and wake the waiters."""
        with self._cond:
            self._items.append(item)
            self._cond.notify_all()

    def items(self) -> list[Any]:
        """Return what arrived so far, oldest first."""
        with self._cond:
            return list(self._items)

    def wait_for(self, n: int, timeout: float, what: str) -> list[Any]:
        """Return the first `n` items once they arrived; raise TimeoutError if they did not within `timeout` seconds."""
        with self._cond:
            if not self._cond.wait_for(lambda: len(self._items) >= n, timeout):
                raise TimeoutError(f"{len(self._items)} {what} arrived within {timeout}s, expected {n}")
            return list(self._items[:n])


# ------------------------------------------------------------------------------------------------------- webhook


@dataclass(frozen=True)
class WebhookRequest:
    """One POST that reached a WebhookReceiver."""

    path: str
    headers: dict[str, str]
    body: Any  # the parsed JSON, or None when the body was not JSON
    raw: bytes
    at: float  # when it arrived (time.monotonic())


class _WebhookServer(ThreadingHTTPServer):
    """The HTTP server of one WebhookReceiver, which its handler reaches through `self.server`."""

    daemon_threads = True

    def __init__(self, receiver: WebhookReceiver) -> None:
        self.receiver = receiver
        # Port 0: the kernel picks a free port while binding, so two receivers never race for one.
        super().__init__(("127.0.0.1", 0), _WebhookHandler)


class _WebhookHandler(BaseHTTPRequestHandler):
    """Records each POST and lets the receiver answer it."""

    server: _WebhookServer

    def do_POST(self) -> None:
        """Record the request, then answer it."""
        raw = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        try:
            body = json.loads(raw) if raw else None
        except ValueError:
            body = None
        receiver = self.server.receiver
        receiver._inbox.add(WebhookRequest(self.path, dict(self.headers.items()), body, raw, time.monotonic()))
        receiver._answer(self)

    def log_message(self, format: str, *args: Any) -> None:
        """Keep request lines out of the test output."""


class WebhookReceiver:
    """A real HTTP server on a free 127.0.0.1 port, in a thread, recording every POST (path, headers, parsed JSON)."""

    def __init__(self, status: int = 200, first: Iterable[int] = ()) -> None:
        # What every request is answered with; set it to 500 (any time) to make the channel fail.
        self.status = status
        # Statuses for the first requests, in order, before `status` (e.g. (500,): the first try fails, a retry works).
        self._first = deque(first)
        self._first_lock = threading.Lock()
        self._inbox = _Inbox()
        self._server = _WebhookServer(self)
        self.port: int = self._server.server_address[1]
        self._thread = threading.Thread(target=self._server.serve_forever, name=f"webhook-{self.port}", daemon=True)
        self._thread.start()

    def _answer(self, handler: _WebhookHandler) -> None:
        """Answer one recorded request, from its handler thread."""
        with self._first_lock:
            status = self._first.popleft() if self._first else self.status
        handler.send_response(status)
        handler.send_header("Content-Length", "0")
        handler.end_headers()

    def url(self, path: str = "/hook") -> str:
        """Return the apprise json:// URL that posts to `path` on this receiver."""
        return f"json://127.0.0.1:{self.port}{path}"

    @property
    def requests(self) -> list[WebhookRequest]:
        """Return the requests received so far, oldest first."""
        return self._inbox.items()

    def wait_for(self, n: int, timeout: float = 10.0) -> list[WebhookRequest]:
        """Return the first `n` requests once they arrived; raise TimeoutError if they did not within `timeout`."""
        return self._inbox.wait_for(n, timeout, "webhook requests")

    def stop(self) -> None:
        """Stop serving and close the socket."""
        self._server.shutdown()
        self._server.server_close()
        self._thread.join()

    def __enter__(self) -> WebhookReceiver:
        return self

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None, trace: TracebackType | None) -> None:
        self.stop()


@dataclass(frozen=True)
class TrickleEnd:
    """How one connection to a TricklingReceiver ended: when the client closed it, and how many bytes it had got."""

    at: float  # time.monotonic()
    sent: int


class TricklingReceiver(WebhookReceiver):
    """A webhook that records each POST, then answers one byte every `interval` seconds and never finishes.

    The answer starts as a 200 would and goes on in one endless header line, so no client that waits for the answer
    ever has it, and no read timeout longer than `interval` ever fires; only the client closing ends it.
    """

    _ANSWER = b"HTTP/1.1 200 OK\r\nX-Trickle: "

    def __init__(self, interval: float = 2.0) -> None:
        self.interval = interval
        self._ends = _Inbox()
        self._stopping = threading.Event()
        super().__init__()

    def _answer(self, handler: _WebhookHandler) -> None:
        """Send the answer a byte at a time until the client closes the connection or the receiver stops."""
        conn = handler.connection
        answer = itertools.chain(self._ANSWER, itertools.repeat(ord(".")))
        sent = 0
        while True:
            try:
                conn.sendall(bytes([next(answer)]))
            except OSError:
                break
            sent += 1
            if self._closed_within(conn, self.interval):
                break
        if not self._stopping.is_set():
            self._ends.add(TrickleEnd(time.monotonic(), sent))
        handler.close_connection = True

    def _closed_within(self, conn: Any, seconds: float) -> bool:
        """Wait up to `seconds`; return True as soon as the client closed `conn` or the receiver is stopping."""
        until = time.monotonic() + seconds
        while (left := until - time.monotonic()) > 0:
            if self._stopping.is_set():
                return True
            # Short slices, so that stop() is not held up by a connection that waits for its next byte.
            readable, _, _ = select.select([conn], [], [], min(left, 0.1))
            if readable:
                try:
                    if not conn.recv(1024):
                        return True
                except OSError:
                    return True
        return False

    def url(self, path: str = "/trickle") -> str:
        """Return the apprise json:// URL that posts to `path` on this receiver."""
        return super().url(path)

    @property
    def ends(self) -> list[TrickleEnd]:
        """Return how the connections closed by their clients so far ended, oldest first."""
        return self._ends.items()

    def wait_for_ends(self, n: int, timeout: float = 10.0) -> list[TrickleEnd]:
        """Return the first `n` ends once the client closed that many connections; raise TimeoutError if not within `timeout`."""
        return self._ends.wait_for(n, timeout, "closed trickling connections")

    def stop(self) -> None:
        """End the trickling answers, then stop serving."""
        self._stopping.set()
        super().stop()


# ---------------------------------------------------------------------------------------------------------- SMTP


@dataclass(frozen=True)
class ReceivedMail:
    """One message that reached an SmtpReceiver."""

    subject: str
    body: str  # the plain-text part (or the first part), with '\n' line ends and no trailing newline
    to: tuple[str, ...]  # the envelope recipients
    sender: str  # the envelope sender
    raw: bytes


class _SmtpHandler:
    """aiosmtpd's handler: hands every message to the receiver's inbox (refusing the first `refuse` with a 451)."""

    def __init__(self, inbox: _Inbox, refuse: int = 0) -> None:
        self._inbox = inbox
        self.refuse = refuse
        self.refused = 0

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        """Record the message and accept it, or refuse it (not recorded) while refusals are left."""
        if self.refused < self.refuse:
            self.refused += 1
            return "451 4.3.0 Try again later"
        content = envelope.content
        raw = content if isinstance(content, bytes) else str(content or "").encode()
        message = email.message_from_bytes(raw, policy=email.policy.default)
        part = message.get_body(preferencelist=("plain", "html")) if isinstance(message, email.message.EmailMessage) else None
        text = part.get_content() if part is not None else ""
        body = str(text).replace("\r\n", "\n").rstrip("\n")
        mail = ReceivedMail(str(message.get("Subject", "")), body, tuple(envelope.rcpt_tos), str(envelope.mail_from), raw)
        self._inbox.add(mail)
        return "250 OK"


class SmtpReceiver:
    """A real SMTP server (aiosmtpd's Controller) on a free loopback port, recording each message's subject, body, to."""

    def __init__(self, refuse: int = 0) -> None:
        self._inbox = _Inbox()
        # The first `refuse` messages are answered "451 try again later" and not recorded (a failing mail server).
        self._handler = handler = _SmtpHandler(self._inbox, refuse)
        # The Controller checks its server by connecting to the port it was given, so it needs a real port, not 0:
        # take a free one, and take another if something grabbed it in between.
        for _ in range(20):
            self.port = free_port()
            self._controller = Controller(handler, hostname="127.0.0.1", port=self.port)
            try:
                self._controller.start()
                return
            except OSError:
                continue
        raise RuntimeError("no free loopback port for the SMTP receiver")

    def url(self, to: str = "ops@example.com", sender: str = "alerts@example.com") -> str:
        """Return the apprise mailto:// URL that reaches this receiver: plain SMTP, no TLS, no login."""
        # mailto:// (not mailtos://) is apprise's insecure mode; with no user:password apprise does not log in, and
        # without a user the sender must be given as from=.
        return f"mailto://127.0.0.1:{self.port}?{urlencode({'from': sender, 'to': to})}"

    @property
    def refused(self) -> int:
        """How many messages were refused so far."""
        return self._handler.refused

    @property
    def messages(self) -> list[ReceivedMail]:
        """Return the messages received so far, oldest first."""
        return self._inbox.items()

    def wait_for(self, n: int, timeout: float = 10.0) -> list[ReceivedMail]:
        """Return the first `n` messages once they arrived; raise TimeoutError if they did not within `timeout`."""
        return self._inbox.wait_for(n, timeout, "mails")

    def stop(self) -> None:
        """Stop the SMTP server and its thread."""
        self._controller.stop()

    def __enter__(self) -> SmtpReceiver:
        return self

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None, trace: TracebackType | None) -> None:
        self.stop()
