"""A gthread connection whose request is read under a deadline: in the worker's loop, then by its thread."""

import socket
import time
from collections.abc import Callable
from typing import Any

from gunicorn import util
from gunicorn.http.errors import NoMoreData
from gunicorn.http.parser import RequestParser
from gunicorn.http.unreader import SocketUnreader
from gunicorn.workers import gthread


class HeadTimeout(NoMoreData):
    """The client did not finish its request head before the deadline (gunicorn closes it like a hang-up)."""


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
