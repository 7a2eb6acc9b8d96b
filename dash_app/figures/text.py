"""Names and times made safe and readable for Plotly, which reads a subset of HTML in its text."""

import hashlib
import time

# Plotly turns <b>, <br>, <a href> ... in names, legends and hover text into markup and decodes entities,
# so user and tool names have their markup characters written as entities: they then show as typed.
_ESCAPES = str.maketrans({"&": "&amp;", "<": "&lt;", ">": "&gt;"})


def plotly_text(name):
    """Return `name` escaped so that Plotly shows exactly its characters."""
    return str(name).translate(_ESCAPES)


def trace_uid(name):
    """Return a stable trace uid for a name; Plotly puts uids into CSS selectors, so they must be plain tokens."""
    return "u" + hashlib.blake2b(str(name).encode(), digest_size=6).hexdigest()


def axis_time(epoch_seconds):
    """Format epoch seconds as the UTC `YYYY-MM-DD HH:MM:SS` Plotly's date axes read (Plotly ignores zones)."""
    return time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(int(epoch_seconds)))


def bucket_time(iso_minute):
    """Turn a bucket's `YYYY-MM-DDTHH:MM:00Z` into the axis form `YYYY-MM-DD HH:MM:00`."""
    return f"{iso_minute[:10]} {iso_minute[11:19]}"


def name_list(names, limit, per_line=4):
    """Return escaped `names` for a tooltip, `per_line` to a line, at most `limit` of them, then how many more."""
    shown = [plotly_text(n) for n in names[:limit]]
    lines = [", ".join(shown[i : i + per_line]) for i in range(0, len(shown), per_line)]
    if len(names) > limit:
        lines.append(f"and {len(names) - limit} more")
    return "<br>".join(lines)
