"""Conversions between epoch seconds, datetimes and the ISO 8601 UTC strings the API speaks."""

import math
import time
from datetime import datetime

# Events further in the future than this are refused: clocks drift, but not by minutes.
MAX_CLOCK_SKEW_SECONDS = 5.0
# The instants a query may name: from the store's epoch (it counts seconds since 1970-01-01 UTC) to the last second
# an ISO 8601 four-digit year can write. Past either end a period cannot be stored, looked up or written back.
EARLIEST_EPOCH = 0.0
LATEST_EPOCH = 253402300799.0  # 9999-12-31T23:59:59Z


def to_epoch(timestamp: object, now: float) -> float:
    """Return `timestamp` (None, epoch seconds or an aware datetime) as epoch seconds."""
    if timestamp is None:
        return now
    if type(timestamp) is float and -math.inf < timestamp <= now + MAX_CLOCK_SKEW_SECONDS:
        return timestamp  # the common case, checked in one step (NaN fails the comparison)
    if isinstance(timestamp, datetime):
        if timestamp.tzinfo is None or timestamp.utcoffset() is None:
            raise ValueError("timestamp: a datetime must be timezone-aware")
        seconds = timestamp.timestamp()
    elif isinstance(timestamp, (int, float)) and not isinstance(timestamp, bool):
        seconds = float(timestamp)
    else:
        raise ValueError(f"timestamp: expected epoch seconds or an aware datetime, got {type(timestamp).__name__}")
    if not math.isfinite(seconds):
        raise ValueError("timestamp: must be finite")
    if seconds > now + MAX_CLOCK_SKEW_SECONDS:
        raise ValueError(f"timestamp: {seconds:.3f} is more than {MAX_CLOCK_SKEW_SECONDS:g} s in the future")
    return seconds


def iso_utc(epoch_seconds: float) -> str:
    """Format epoch seconds as `YYYY-MM-DDTHH:MM:SS.mmmZ`, truncated to the millisecond."""
    whole = math.floor(epoch_seconds)
    # Truncate rather than round, so an event never prints in the minute after its bucket.
    millis = min(999, int((epoch_seconds - whole) * 1000 + 1e-6))
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(whole)) + f".{millis:03d}Z"


def iso_minute(minute_index: int) -> str:
    """Format a minute index (epoch seconds // 60) as `YYYY-MM-DDTHH:MM:00Z`."""
    return time.strftime("%Y-%m-%dT%H:%M:00Z", time.gmtime(minute_index * 60))


def parse_iso(text: str) -> float:
    """Parse an ISO 8601 string (a trailing Z allowed) into epoch seconds."""
    parsed = datetime.fromisoformat(text.replace("Z", "+00:00"))
    if parsed.tzinfo is None:
        raise ValueError(f"{text!r} has no time zone")
    return parsed.timestamp()


def instant_problem(epoch_seconds: float) -> str | None:
    """Return why `epoch_seconds` is no instant a query may name (outside EARLIEST_EPOCH..LATEST_EPOCH), or None."""
    if EARLIEST_EPOCH <= epoch_seconds <= LATEST_EPOCH:  # NaN fails it too
        return None
    return f"must be between {iso_second(EARLIEST_EPOCH)} and {iso_second(LATEST_EPOCH)}"


def iso_second(epoch_seconds: float) -> str:
    """Format epoch seconds as `YYYY-MM-DDTHH:MM:SSZ`, truncated to the second."""
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(math.floor(epoch_seconds)))


def first_minute_at_or_after(epoch_seconds: float) -> int:
    """Return the index of the first minute whose start is >= `epoch_seconds`."""
    minute = int(epoch_seconds // 60)
    if minute * 60 < epoch_seconds:
        minute += 1
    return minute
