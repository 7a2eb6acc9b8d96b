"""The rows the buffer's readers get: a tool's minute bucket, its minute flow and its licenses in use per minute."""

from typing import NamedTuple, TypedDict


class Bucket(TypedDict):
    """One tool's borrows in one minute, as readers get them: JSON-ready, shared, and never to be mutated."""

    timestamp: str  # the minute's start, `YYYY-MM-DDTHH:MM:00Z`
    count: int
    users: list[str]  # sorted, distinct
    overage_count: int


class MinuteFlow(NamedTuple):
    """One tool's activity in one minute; `minute` is the minute's start in epoch seconds."""

    minute: int
    borrows: int
    overage: int
    returns: int
    failures: dict[str, int]  # reason -> count


class InUseBin(NamedTuple):
    """Licenses of one tool in use during one minute; `minute` is the minute's start in epoch seconds."""

    minute: int
    peak: int  # the most in use at any instant of the minute, its start level included
    average: float  # the time-weighted mean over the minute (the current minute: over its part up to now)
    end: int  # in use at the minute's end, after all of its events


class WindowCounts(NamedTuple):
    """One series over a window's minutes: its counts, and its minutes with failures (their other counts 0)."""

    borrows: int
    overage: int
    returns: int
    failures: int
    failing: list[MinuteFlow]
