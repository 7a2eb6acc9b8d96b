"""Real local receivers of alert notifications for tests and benchmarks: a webhook (HTTP) server and an SMTP server.

Both listen on 127.0.0.1 only, record what arrives, let a test wait on a condition for it, and stop cleanly as
context managers. aiosmtpd is a test dependency (requirements-test.txt): import this module from tests only.
"""

from __future__ import annotations

import email
import email.message
import email.policy
import json
import threading
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


class _WebhookServer(ThreadingHTTPServer):
    """The HTTP server of one WebhookReceiver, which its handler reaches through `self.server`."""

    daemon_threads = True

    def __init__(self, receiver: WebhookReceiver) -> None:
        self.receiver = receiver
        # Port 0: the kernel picks a free port while binding, so two receivers never race for one.
        super().__init__(("127.0.0.1", 0), _WebhookHandler)


class _WebhookHandler(BaseHTTPRequestHandler):
    """Records each POST and answers with the receiver's current status."""

    server: _WebhookServer

    def do_POST(self) -> None:
        """Record the request, then answer it."""
        raw = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        try:
            body = json.loads(raw) if raw else None
        except ValueError:
            body = None
        receiver = self.server.receiver
        receiver._inbox.add(WebhookRequest(self.path, dict(self.headers.items()), body, raw))
        self.send_response(receiver.status)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, format: str, *args: Any) -> None:
        """Keep request lines out of the test output."""


class WebhookReceiver:
    """A real HTTP server on a free 127.0.0.1 port, in a thread, recording every POST (path, headers, parsed JSON)."""

    def __init__(self, status: int = 200) -> None:
        # What every request is answered with; set it to 500 (any time) to make the channel fail.
        self.status = status
        self._inbox = _Inbox()
        self._server = _WebhookServer(self)
        self.port: int = self._server.server_address[1]
        self._thread = threading.Thread(target=self._server.serve_forever, name=f"webhook-{self.port}", daemon=True)
        self._thread.start()

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
    """aiosmtpd's handler: hands every message to the receiver's inbox."""

    def __init__(self, inbox: _Inbox) -> None:
        self._inbox = inbox

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        """Record the message and accept it."""
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

    def __init__(self) -> None:
        self._inbox = _Inbox()
        handler = _SmtpHandler(self._inbox)
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
