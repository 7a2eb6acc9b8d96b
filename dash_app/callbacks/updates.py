"""Send only what changed: signatures of built outputs, and the Patch (or no_update) that brings a tab up to date."""

import hashlib
from collections.abc import Callable, Collection, Mapping, Sequence
from typing import Any, NamedTuple

import orjson
from dash import Patch, no_update
from dash.development.base_component import Component


class Part(NamedTuple):
    """One built output (plain JSON-ready value) and its signature; figures carry one per trace."""

    value: Any
    sig: Any  # a digest; a figure's is {"layout": digest, "traces": [digest, ...]}


def plain(value: Any) -> Any:
    """Return `value` with Dash components turned into their JSON dicts, so responses serialise in one fast pass."""
    if isinstance(value, Component):
        data = value.to_plotly_json()
        data["props"] = {key: plain(prop) for key, prop in data["props"].items()}
        return data
    if isinstance(value, (list, tuple)):
        return [plain(item) for item in value]
    return value


def digest(value: Any) -> str:
    """Return a short, stable signature of a JSON-ready value."""
    return hashlib.blake2b(orjson.dumps(value, option=orjson.OPT_SORT_KEYS), digest_size=8).hexdigest()


def _without_range(layout: dict[str, Any]) -> dict[str, Any]:
    xaxis = layout.get("xaxis")
    if not xaxis or "autorangeoptions" not in xaxis:
        return layout
    return dict(layout, xaxis={k: v for k, v in xaxis.items() if k != "autorangeoptions"})


def component_part(component: Any) -> Part:
    """Return the Part of a component (or list of them)."""
    value = plain(component)
    return Part(value, digest(value))


# Long lists in a trace are digested in chunks of this many items (trace_digest).
CHUNK = 32


def _chunk_digest(chunk: list[Any]) -> bytes:
    return hashlib.blake2b(orjson.dumps(chunk, option=orjson.OPT_SORT_KEYS), digest_size=8).digest()


def trace_digest(trace: Mapping[str, Any], chunk_digest: Callable[[list[Any]], bytes] = _chunk_digest) -> str:
    """Return a short, stable signature of a figure trace, its long lists digested CHUNK items at a time.

    The signature depends on the content alone (the chunks start at fixed positions), so `chunk_digest` may take a
    chunk's digest from a cache: a line whose last point moved then costs that point's chunk, not the whole line.
    """
    h = hashlib.blake2b(digest_size=8)
    rest = {}
    for name, value in trace.items():
        if isinstance(value, list) and len(value) > CHUNK:
            h.update(f"{name}\0{len(value)}\0".encode())  # the name and length make the chunks' run unambiguous
            for lo in range(0, len(value), CHUNK):
                h.update(chunk_digest(value[lo : lo + CHUNK]))
        else:
            rest[name] = value
    h.update(orjson.dumps(rest, option=orjson.OPT_SORT_KEYS))
    return h.hexdigest()


class TraceDigests:
    """Digests of figure traces, reused while a trace holds the very same lists and equal other fields.

    Figure builders hand out new trace dicts whose long lists (x, y, customdata) are often kept objects from the last
    build; those lists are never changed once built, so their identity stands for their content. The lists of every
    remembered trace are kept alive with it, so no other list can take one of their ids meanwhile. A new list is
    digested chunk by chunk (trace_digest), and a chunk of the very same items as one seen before (a kept line's points
    up to the one that moved) reuses its digest the same way: by the items' identities, its items kept alive with it.
    """

    def __init__(self, limit: int = 128, chunk_limit: int = 8192) -> None:
        self.limit, self.chunk_limit = limit, chunk_limit
        # Two generations: a digest found in the older one moves to the newer; when the newer is full the older
        # goes. So the last build's traces are remembered, and the lists kept alive stay bounded.
        self._new: dict[tuple[Any, ...], tuple[str, list[Any]]] = {}
        self._old: dict[tuple[Any, ...], tuple[str, list[Any]]] = {}
        self._new_chunks: dict[tuple[int, ...], tuple[bytes, list[Any]]] = {}
        self._old_chunks: dict[tuple[int, ...], tuple[bytes, list[Any]]] = {}

    def digest(self, trace: Mapping[str, Any]) -> str:
        """Return `trace_digest(trace)`, reusing the one worked out for a trace of the same lists and fields."""
        fields: list[Any] = []
        lists: list[Any] = []
        for name, value in trace.items():
            if isinstance(value, list):
                fields.append((name, id(value)))
                lists.append(value)
            elif isinstance(value, dict):
                fields.append((name, orjson.dumps(value, option=orjson.OPT_SORT_KEYS)))
            else:
                fields.append((name, value))
        key = tuple(fields)
        try:
            found = self._new.get(key) or self._old.get(key)
        except TypeError:  # a field that cannot be a key: worked out every time
            return trace_digest(trace)
        if found is None:
            found = (trace_digest(trace, self._chunk), lists)
        if len(self._new) >= self.limit:
            self._old, self._new = self._new, {}
        self._new[key] = found
        return found[0]

    def _chunk(self, chunk: list[Any]) -> bytes:
        key = tuple(map(id, chunk))
        found = self._new_chunks.get(key) or self._old_chunks.get(key)
        if found is None:
            found = (_chunk_digest(chunk), chunk)
        if len(self._new_chunks) >= self.chunk_limit:
            self._old_chunks, self._new_chunks = self._new_chunks, {}
        self._new_chunks[key] = found
        return found[0]


def figure_part(figure: Mapping[str, Any], traces: TraceDigests | None = None) -> Part:
    """Return the Part of a figure dict: a signature for its layout (the moving time range left out) and each trace.

    `traces`, when given, reuses the digests of traces built from the same lists as before.
    """
    of_trace = trace_digest if traces is None else traces.digest
    sig = {"layout": digest(_without_range(figure["layout"])), "traces": [of_trace(trace) for trace in figure["data"]]}
    return Part(figure, sig)


def has_time_range(figure: Mapping[str, Any]) -> bool:
    """Return whether the figure's x axis follows the time window."""
    return "autorangeoptions" in figure["layout"].get("xaxis", {})


def _shown_as(trace: Mapping[str, Any], hidden: Collection[str]) -> dict[str, Any]:
    """Return `trace` with `visible` set from the tab's hidden uids (the shared built trace is not changed)."""
    return dict(trace, visible="legendonly" if trace.get("uid") in hidden else True)


def _dressed(figure: Mapping[str, Any], time_range: Mapping[str, int], hidden: Collection[str]) -> dict[str, Any]:
    """Return a shallow copy of `figure` with the tab's time range on its x axis and its hidden traces hidden."""
    layout = figure["layout"]
    if has_time_range(figure):
        layout = dict(layout, xaxis=dict(layout["xaxis"], autorangeoptions=time_range))
    return dict(figure, layout=layout, data=[_shown_as(trace, hidden) for trace in figure["data"]])


def figure_update(
    part: Part, seen: object, time_range: Mapping[str, int], hidden: Collection[str] = frozenset()
) -> tuple[Any, dict[str, Any] | None]:
    """Return (output, what the tab then has) for a figure Part, given what the tab has (`seen`, or None).

    A new layout or trace count sends the whole figure; otherwise a Patch carries the changed traces, the moved
    time range and, when the tab's hidden entries changed, every trace's `visible`; nothing is sent when none did.
    Every trace sent carries `visible` from `hidden`, so a legend entry the user hid stays hidden.
    """
    figure, sig = part
    known = seen if isinstance(seen, dict) and isinstance(seen.get("traces"), list) else None
    ranged = has_time_range(figure)
    hidden_list = sorted(hidden)
    now_seen = {"layout": sig["layout"], "traces": sig["traces"], "range": time_range if ranged else None, "hidden": hidden_list}
    if not known or known.get("layout") != sig["layout"] or len(known.get("traces", ())) != len(sig["traces"]):
        return _dressed(figure, time_range, hidden), now_seen
    patch = Patch()
    changed = False
    restyle = known.get("hidden") != hidden_list
    for index, (old, new) in enumerate(zip(known["traces"], sig["traces"])):
        if old != new:
            patch["data"][index] = _shown_as(figure["data"][index], hidden)
            changed = True
        elif restyle:
            patch["data"][index]["visible"] = "legendonly" if figure["data"][index].get("uid") in hidden else True
            changed = True
    if ranged and known.get("range") != time_range:
        patch["layout"]["xaxis"]["autorangeoptions"] = time_range
        changed = True
    if not changed:
        return no_update, known
    return patch.to_plotly_json(), now_seen


def component_update(part: Part, seen: object) -> tuple[Any, Any]:
    """Return (output, what the tab then has) for a component Part: no_update when the tab already has it."""
    if seen == part.sig:
        return no_update, seen
    return part.value, part.sig


def rows_update(
    part: Part, seen: object, row_keys_of: Callable[[str], Sequence[Any] | None], path: Sequence[str | int]
) -> tuple[Any, Any]:
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


def plain_rows(value: Any, path: Sequence[str | int]) -> Any:
    """Return the rows found at `path` in a plain component value."""
    for key in path:
        value = value[key]
    return value


def grid_update(part: Part, seen: object, rows_of: Callable[[str], Mapping[Any, dict[str, Any]] | None]) -> tuple[Any, Any, Any]:
    """Return (rowData, rowTransaction, what the tab then has) for a grid's rows Part, given the tab's signature.

    `rows_of(signature)` gives a built grid's rows by id (None when forgotten). When the tab's grid is one of those,
    a transaction adds, updates and removes just the rows that differ, and the grid keeps its sort, filter and scroll;
    otherwise the rows go whole.
    """
    if seen == part.sig:
        return no_update, no_update, seen
    old, new = rows_of(seen) if isinstance(seen, str) else None, rows_of(part.sig)
    if old is None or new is None:
        return part.value, no_update, part.sig
    transaction = {
        "add": [row for key, row in new.items() if key not in old],
        "update": [row for key, row in new.items() if key in old and old[key] != row],
        "remove": [row for key, row in old.items() if key not in new],
    }
    return no_update, {kind: rows for kind, rows in transaction.items() if rows}, part.sig
