"""Where a request's head and body end, read from its bytes alone (the worker's loop reads requests with these)."""

import json
from collections.abc import Callable
from urllib.parse import urlsplit

# A chunk-size line longer than this is not one a client means: the thread's parser refuses it.
MAX_CHUNK_LINE = 1024
CONTINUE = b"HTTP/1.1 100 Continue\r\n\r\n"
# The body a request will have, as the loop reads it: none (hand it over now), or chunked up to its last chunk.
NO_BODY = -1
CHUNKED = -2


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
