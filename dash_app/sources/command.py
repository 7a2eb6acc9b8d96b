"""Run a license server's status command in a process group of its own, its output read as a bounded stream in time."""

from __future__ import annotations

import mmap
import os
import selectors
import signal
import subprocess
import time
from collections.abc import Sequence
from dataclasses import dataclass

CHUNK = 1 << 16  # bytes read at once: a pipe's buffer
STDERR_KEPT = 1 << 16  # the end of stderr is kept, for the error's last line


class CommandTimeout(Exception):
    """The command gave no whole answer within its time."""


class OutputTooLarge(Exception):
    """The command wrote more than the most a poll reads."""


@dataclass(frozen=True)
class Finished:
    """A command that ended in time: its exit status, its whole standard output and the end of its standard error."""

    returncode: int
    stdout: memoryview  # str(stdout, encoding, errors) decodes it without a copy
    stderr: bytes


def run_bounded(argv: Sequence[str], timeout: float, max_bytes: int, stdin: bytes | None = None) -> Finished:
    """Run `argv` and return what it wrote; raise CommandTimeout, OutputTooLarge or OSError (it cannot be run).

    The command runs in a new session, so a wrapper's children are its process group too: whatever the outcome,
    the whole group is ended, and none of it outlives the poll (or holds its pipes open past the timeout).
    """
    proc = subprocess.Popen(
        list(argv),
        stdin=subprocess.PIPE if stdin is not None else subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        start_new_session=True,
    )
    try:
        if proc.stdin is not None:
            # Small (a few commands): it fits the pipe's buffer, so writing it cannot block on a command that reads late.
            try:
                with proc.stdin:
                    proc.stdin.write(stdin or b"")
            except BrokenPipeError:
                pass  # it ended without reading them: its exit status and output say why
        deadline = time.monotonic() + timeout
        stdout, stderr = _read(proc, deadline, max_bytes)
        try:
            returncode = proc.wait(timeout=max(0.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            raise CommandTimeout from None
        return Finished(returncode, stdout, stderr)
    finally:
        _end(proc)


def _read(proc: subprocess.Popen[bytes], deadline: float, max_bytes: int) -> tuple[memoryview, bytes]:
    """Read stdout (at most `max_bytes`) and the end of stderr until both close, or raise at the deadline."""
    assert proc.stdout is not None and proc.stderr is not None
    # Straight into one anonymous mapping, its pages taken only as they are written: no chunk objects, no copies, so
    # the memory a poll takes is what it read (a heap of small reads frees in pieces the next ones cannot reuse).
    out = mmap.mmap(-1, max_bytes + CHUNK)
    view = memoryview(out)
    size = 0
    err = bytearray()
    out_fd, err_fd = proc.stdout.fileno(), proc.stderr.fileno()
    with selectors.DefaultSelector() as selector:
        selector.register(out_fd, selectors.EVENT_READ)
        selector.register(err_fd, selectors.EVENT_READ)
        while selector.get_map():
            left = deadline - time.monotonic()
            if left <= 0:
                raise CommandTimeout
            for key, _ in selector.select(left):
                if key.fd == out_fd:
                    got = os.readv(out_fd, [view[size : size + CHUNK]])
                    size += got
                    if size > max_bytes:
                        raise OutputTooLarge
                else:
                    chunk = os.read(err_fd, CHUNK)
                    got = len(chunk)
                    err += chunk
                    del err[:-STDERR_KEPT]
                if not got:
                    selector.unregister(key.fd)
    return view[:size], bytes(err)


def _end(proc: subprocess.Popen[bytes]) -> None:
    """End the command's process group (its children too) and reap the command."""
    try:
        os.killpg(proc.pid, signal.SIGKILL)  # the group's id is the command's pid (a new session)
    except (ProcessLookupError, PermissionError):
        pass  # the group is gone already
    proc.wait()
    for pipe in (proc.stdout, proc.stderr):
        if pipe is not None:
            pipe.close()
