"""Names and times made safe and readable for Plotly, which reads a subset of HTML in its text."""

import functools
import hashlib
import time
from collections.abc import Sequence
from datetime import UTC, datetime
from zoneinfo import ZoneInfo

# Plotly turns <b>, <br>, <a href> ... in names, legends and hover text into markup and decodes entities,
# so user and tool names have their markup characters written as entities: they then show as typed.
_ESCAPES = str.maketrans({"&": "&amp;", "<": "&lt;", ">": "&gt;"})


def plotly_text(name: object) -> str:
    """Return `name` escaped so that Plotly shows exactly its characters."""
    return str(name).translate(_ESCAPES)


def trace_uid(name: object) -> str:
    """Return a stable trace uid for a name; Plotly puts uids into CSS selectors, so they must be plain tokens."""
    return "u" + hashlib.blake2b(str(name).encode(), digest_size=6).hexdigest()


@functools.lru_cache(maxsize=64)
def _zone(name: str) -> ZoneInfo:
    return ZoneInfo(name)


def utc_offset(epoch_seconds: float, zone: str = "UTC") -> int:
    """Return the offset of `zone` from UTC at `epoch_seconds`, in seconds."""
    if zone == "UTC":
        return 0
    offset = datetime.fromtimestamp(epoch_seconds, _zone(zone)).utcoffset()
    return int(offset.total_seconds()) if offset is not None else 0


@functools.lru_cache(maxsize=65536)
def axis_time(epoch_seconds: float, zone: str = "UTC") -> str:
    """Format epoch seconds as the `YYYY-MM-DD HH:MM:SS` wall time in `zone` that Plotly's date axes read.

    Plotly ignores zones and shows these strings as they are, so the conversion happens here; windows slide a
    minute at a time over the same few hundred bins, which the cache keeps.
    """
    whole = int(epoch_seconds)
    if zone == "UTC":
        return time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(whole))
    return datetime.fromtimestamp(whole, _zone(zone)).strftime("%Y-%m-%d %H:%M:%S")


@functools.lru_cache(maxsize=65536)
def bucket_time(iso_minute: str, zone: str = "UTC") -> str:
    """Turn a bucket's `YYYY-MM-DDTHH:MM:00Z` into the axis form `YYYY-MM-DD HH:MM:00` in `zone`."""
    if zone == "UTC":
        return f"{iso_minute[:10]} {iso_minute[11:19]}"
    epoch = datetime.strptime(iso_minute[:19], "%Y-%m-%dT%H:%M:%S").replace(tzinfo=UTC).timestamp()
    return axis_time(epoch, zone)


def name_list(names: Sequence[object], limit: int, per_line: int = 4) -> str:
    """Return escaped `names` for a tooltip, `per_line` to a line, at most `limit` of them, then how many more."""
    shown = [plotly_text(n) for n in names[:limit]]
    lines = [", ".join(shown[i : i + per_line]) for i in range(0, len(shown), per_line)]
    if len(names) > limit:
        lines.append(f"and {len(names) - limit} more")
    return "<br>".join(lines)


# Legend entries are cut to this many characters, in the middle, so a name's distinguishing end stays visible.
LEGEND_NAME_LIMIT = 28


def legend_name(name: object, limit: int = LEGEND_NAME_LIMIT) -> str:
    """Return `name` escaped and shortened in its middle to `limit` characters for a legend entry."""
    text = str(name)
    if len(text) > limit:
        head = (limit - 1) * 3 // 5
        text = text[:head] + "…" + text[len(text) - (limit - 1 - head) :]
    return plotly_text(text)
