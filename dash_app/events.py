"""The one event type that every source, the recorder, the buffer, the store and the stream share, and the name rule.

An Event is a named tuple whose fields are, in order, the columns of the store's `events` table, so a stored row is
an Event and an Event is a row. Its `ts` is epoch seconds (UTC); the buffer's own add methods also accept an aware
datetime, or None for now, and turn them into epoch seconds before they make the Event.
"""

import re
from typing import Any, NamedTuple

from dash_app.timeutil import iso_utc

BORROW, RETURN, FAILURE = "borrow", "return", "failure"
KINDS = (BORROW, RETURN, FAILURE)


class Event(NamedTuple):
    """One borrow, return or failure; fields a kind does not use are None."""

    ts: float  # epoch seconds (UTC)
    kind: str
    tool: str | None
    user: str | None
    borrow_id: str | None = None  # borrow and return
    is_overage: bool | None = None  # borrow
    reason: str | None = None  # failure
    host: str | None = None  # borrow: where the license is used, when the source says
    version: str | None = None  # borrow: the version checked out, when the source says


def borrow_event(
    tool: str,
    user: str,
    is_overage: bool,
    borrow_id: str,
    ts: float,
    host: str | None = None,
    version: str | None = None,
) -> Event:
    """Return the event of a granted borrow."""
    return Event(ts, BORROW, tool, user, borrow_id, bool(is_overage), None, host, version)


def return_event(borrow_id: str, user: str | None, tool: str | None, ts: float) -> Event:
    """Return the event of a return; the buffer fills a missing tool and user from the borrow it still holds."""
    return Event(ts, RETURN, tool, user, borrow_id, None, None)


def failure_event(tool: str, user: str, reason: str, ts: float) -> Event:
    """Return the event of a borrow that could not be granted."""
    return Event(ts, FAILURE, tool, user, None, None, reason)


# Where a borrow came from follows from its id: a FlexLM log's start `flexlm|`, a polled server's start with its kind
# (`lmstat|PORT@HOST|...`, see dash_app.sources.observed); the rest were granted by this server's pool.
FLEXLM_ID_PREFIX = "flexlm|"
SOURCE_FLEXLM, SOURCE_POOL = "flexlm", "pool"
POLLED_SOURCES = ("lmstat", "rlmstat", "lmx", "dsls")


def source_of(borrow_id: str | None) -> str:
    """Return the source of a borrow from its id: "flexlm" or a polled kind ("lmstat", "lmx", ...) for theirs, else "pool"."""
    if borrow_id is None:
        return SOURCE_POOL
    if borrow_id.startswith(FLEXLM_ID_PREFIX):
        return SOURCE_FLEXLM
    kind, bar, _rest = borrow_id.partition("|")
    return kind if bar and kind in POLLED_SOURCES else SOURCE_POOL


def public_event(event: Event) -> dict[str, Any]:
    """Return the JSON shape an event has in the stream, /realtime/stats and exports."""
    stamp = iso_utc(event.ts)
    if event.kind == BORROW:
        return {
            "timestamp": stamp,
            "type": BORROW,
            "tool": event.tool,
            "user": event.user,
            "is_overage": bool(event.is_overage),
            "id": event.borrow_id,
            "host": event.host,
            "version": event.version,
            "source": source_of(event.borrow_id),
        }
    if event.kind == RETURN:
        return {"timestamp": stamp, "type": RETURN, "id": event.borrow_id, "user": event.user, "tool": event.tool}
    return {"timestamp": stamp, "type": FAILURE, "tool": event.tool, "user": event.user, "reason": event.reason}


MAX_NAME_LENGTH = 200

# Characters no name may hold, whatever its source: C0 and C1 controls, lone UTF-16 surrogates (they cannot be
# encoded as UTF-8, so SQLite and orjson refuse them), and Unicode's non-characters (U+FDD0..U+FDEF and the last
# two code points of every plane), which are reserved for a program's internal use and never interchanged.
_NON_CHARACTERS = "".join(f"{chr(plane + 0xFFFE)}{chr(plane + 0xFFFF)}" for plane in range(0, 0x110000, 0x10000))
_BAD_CHARACTER = re.compile("[\x00-\x1f\x7f-\x9f\ud800-\udfff\ufdd0-\ufdef" + _NON_CHARACTERS + "]")
_BAD_ASCII = re.compile("[\x00-\x1f\x7f]")

_PROBLEMS = (
    (re.compile("[\x00-\x1f\x7f-\x9f]"), "must not contain control characters"),
    (re.compile("[\ud800-\udfff]"), "must be valid Unicode text (it holds a lone surrogate)"),
    (re.compile("[\ufdd0-\ufdef" + _NON_CHARACTERS + "]"), "must not contain Unicode non-characters"),
)


class InvalidName(ValueError):
    """A name that must not be recorded; the message starts with the field's name."""

    def __init__(self, field: str, problem: str):
        super().__init__(f"{field}: {problem}")
        self.field = field
        self.problem = problem


def name_problem(value: object) -> str | None:
    """Return why `value` is no acceptable name, or None when it is one."""
    if not isinstance(value, str):
        return "must be a string"
    if len(value) > MAX_NAME_LENGTH:
        return f"at most {MAX_NAME_LENGTH} characters"
    if not value.strip():
        return "must not be empty"
    return text_problem(value)


def text_problem(value: str) -> str | None:
    """Return why the string `value` holds a character no name may hold, or None."""
    # isascii() is O(1) in CPython, and nearly every real name is ASCII: one small regex then settles it.
    if (_BAD_ASCII if value.isascii() else _BAD_CHARACTER).search(value) is None:
        return None
    return next(problem for pattern, problem in _PROBLEMS if pattern.search(value))


def check_name(field: str, value: object, *, any_length: bool = False) -> str:
    """Return `value` when it is an acceptable name, else raise InvalidName for `field`.

    `any_length` drops the length limit, for ids that a source builds from several names.
    """
    if any_length and isinstance(value, str) and value:
        problem = text_problem(value)
    else:
        problem = name_problem(value)
    if problem is not None:
        raise InvalidName(field, problem)
    return value  # type: ignore[return-value]
