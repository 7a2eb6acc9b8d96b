"""Bounding one delivery try by a deadline: the try runs in a thread of its own, and its connections are shut down
from outside when the deadline passes, which ends even a try that a server keeps alive one byte at a time.

An audit hook is the one place that sees each connection apprise makes (whatever library of apprise's connects it):
it hands every socket to the guard of the try running in that context.
"""

from __future__ import annotations

import contextlib
import contextvars
import errno
import logging
import socket
import sys
import threading
from collections.abc import Callable
from typing import Any, TypeVar

log = logging.getLogger(__name__)

# How often a try cut at its deadline is cut again while its thread has not ended (a connection it was still opening).
RECUT_SECONDS = 0.5

T = TypeVar("T")


class DeadlinePassed(Exception):
    """A try did not end by its deadline; its connections were cut."""


class TryGuard:
    """The connections one try opened, kept so that they can be shut down from another thread at its deadline."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._sockets: list[socket.socket] = []
        self._cut = False

    def connecting(self, sock: Any) -> None:
        """Keep a duplicate of `sock` as it connects; once cut, refuse the connection instead."""
        with self._lock:
            if self._cut:
                raise OSError(errno.ETIMEDOUT, "the alert delivery's deadline has passed")
            # A duplicate, not `sock`: TLS wraps a connected socket by detaching it, but both descriptors name one
            # connection, and shutting either down ends the reads and writes blocked on the other.
            self._sockets.append(socket.fromfd(sock.fileno(), sock.family, sock.type))

    def cut(self) -> None:
        """Shut down every connection of the try, so its blocked reads and writes end at once, and refuse new ones."""
        with self._lock:
            self._cut = True
            sockets = list(self._sockets)
        for sock in sockets:
            with contextlib.suppress(OSError):  # not connected (yet), or already closed
                sock.shutdown(socket.SHUT_RDWR)

    def close(self) -> None:
        """Close the duplicates; a try still running after this can open no connection."""
        with self._lock:
            self._cut = True
            sockets, self._sockets = self._sockets, []
        for sock in sockets:
            sock.close()


# The guard of the try running in this context; a context var, so that it follows a try into any pool thread that
# runs part of it in a copy of its context.
_guard: contextvars.ContextVar[TryGuard | None] = contextvars.ContextVar("alert_delivery_guard", default=None)
_hook_lock = threading.Lock()
_hook_added = False


def _audit(event: str, args: tuple[Any, ...]) -> None:
    """Hand every socket a delivery try connects to that try's guard (whatever library of apprise's connects it)."""
    if event == "socket.connect":
        guard = _guard.get()
        if guard is not None:
            guard.connecting(args[0])


def add_audit_hook() -> None:
    """Add `_audit` to the process's audit hooks, once: it is the one place that sees each connection apprise makes."""
    global _hook_added
    with _hook_lock:
        if not _hook_added:
            sys.addaudithook(_audit)
            _hook_added = True


def run_bounded(attempt: Callable[[], T], guard: TryGuard, deadline: float, stopping: Callable[[], bool], label: str) -> T | None:
    """Run `attempt` in a thread of its own under `guard`; return what it returned (None: it ended without an answer).

    At `deadline` seconds its connections are cut and it is waited for (cut again every RECUT_SECONDS while it still
    runs, unless `stopping()`), then DeadlinePassed is raised: whoever tries next never runs beside it.
    """
    outcome: list[T] = []

    def bounded() -> None:
        _guard.set(guard)  # in this new thread's own context, which ends with it
        outcome.append(attempt())

    thread = threading.Thread(target=bounded, name=f"{threading.current_thread().name}-try", daemon=True)
    thread.start()
    thread.join(deadline)
    if not thread.is_alive():
        return outcome[0] if outcome else None
    guard.cut()
    warned = False
    while thread.is_alive():
        thread.join(RECUT_SECONDS)
        if stopping():
            break  # a daemon thread that can open no connection any more; the queue's stop says it was left
        if thread.is_alive():
            if not warned:
                log.warning("alert delivery to %s still running after its deadline was cut; waiting", label)
                warned = True
            guard.cut()  # a connection that was still being opened when the deadline passed
    raise DeadlinePassed
