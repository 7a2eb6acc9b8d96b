"""Send only what changed: signatures of built outputs, and the Patch (or no_update) that brings a tab up to date."""

import hashlib
from collections import namedtuple

import orjson
from dash import Patch, no_update
from dash.development.base_component import Component

Part = namedtuple("Part", "value sig")
Part.__doc__ = "One built output (plain JSON-ready value) and its signature; figures carry one per trace."


def plain(value):
    """Return `value` with Dash components turned into their JSON dicts, so responses serialise in one fast pass."""
    if isinstance(value, Component):
        data = value.to_plotly_json()
        data["props"] = {key: plain(prop) for key, prop in data["props"].items()}
        return data
    if isinstance(value, (list, tuple)):
        return [plain(item) for item in value]
    return value


def digest(value):
    """Return a short, stable signature of a JSON-ready value."""
    return hashlib.blake2b(orjson.dumps(value, option=orjson.OPT_SORT_KEYS), digest_size=8).hexdigest()


def _without_range(layout):
    xaxis = layout.get("xaxis")
    if not xaxis or "autorangeoptions" not in xaxis:
        return layout
    return dict(layout, xaxis={k: v for k, v in xaxis.items() if k != "autorangeoptions"})


def component_part(component):
    """Return the Part of a component (or list of them)."""
    value = plain(component)
    return Part(value, digest(value))


def figure_part(figure):
    """Return the Part of a figure dict: a signature for its layout (the moving time range left out) and each trace."""
    sig = {"layout": digest(_without_range(figure["layout"])), "traces": [digest(trace) for trace in figure["data"]]}
    return Part(figure, sig)


def has_time_range(figure):
    """Return whether the figure's x axis follows the time window."""
    return "autorangeoptions" in figure["layout"].get("xaxis", {})


def with_range(figure, time_range):
    """Return a shallow copy of `figure` whose x axis shows `time_range` (its autorangeoptions)."""
    layout = figure["layout"]
    return dict(figure, layout=dict(layout, xaxis=dict(layout["xaxis"], autorangeoptions=time_range)))


def figure_update(part, seen, time_range):
    """Return (output, what the tab then has) for a figure Part, given what the tab has (`seen`, or None).

    A new layout or trace count sends the whole figure; otherwise a Patch carries the changed traces and the
    moved time range, and nothing at all is sent when neither changed.
    """
    figure, sig = part
    seen = seen if isinstance(seen, dict) and isinstance(seen.get("traces"), list) else None
    ranged = has_time_range(figure)
    now_seen = {"layout": sig["layout"], "traces": sig["traces"], "range": time_range if ranged else None}
    if not seen or seen.get("layout") != sig["layout"] or len(seen.get("traces", ())) != len(sig["traces"]):
        return (with_range(figure, time_range) if ranged else figure), now_seen
    patch = Patch()
    changed = False
    for index, (old, new) in enumerate(zip(seen["traces"], sig["traces"])):
        if old != new:
            patch["data"][index] = figure["data"][index]
            changed = True
    if ranged and seen.get("range") != time_range:
        patch["layout"]["xaxis"]["autorangeoptions"] = time_range
        changed = True
    if not changed:
        return no_update, seen
    return patch.to_plotly_json(), now_seen


def component_update(part, seen):
    """Return (output, what the tab then has) for a component Part: no_update when the tab already has it."""
    if seen == part.sig:
        return no_update, seen
    return part.value, part.sig


def rows_update(part, seen, row_keys_of, path):
    """Return (output, what the tab then has) for a table Part whose rows sit at `path`, newest first.

    `row_keys_of(signature)` gives a built table's row keys (None when forgotten). When the tab's table is this one
    with a few new rows on top (and old ones off the bottom), a Patch prepends and deletes just those rows;
    otherwise the table goes whole.
    """
    if seen == part.sig:
        return no_update, seen
    old, new = row_keys_of(seen) if isinstance(seen, str) else None, row_keys_of(part.sig)
    if old and new:
        for fresh in range(1, len(new)):
            kept = len(new) - fresh
            if kept <= len(old) and new[fresh:] == old[:kept]:
                patch = Patch()
                rows = patch
                for key in path:
                    rows = rows[key]
                for row in reversed(plain_rows(part.value, path)[:fresh]):
                    rows.prepend(row)
                # After the prepends the old rows follow; delete from the end so each index is still valid.
                for index in range(len(old) + fresh - 1, len(new) - 1, -1):
                    del rows[index]
                return patch.to_plotly_json(), part.sig
    return part.value, part.sig


def plain_rows(value, path):
    """Return the rows found at `path` in a plain component value."""
    for key in path:
        value = value[key]
    return value
