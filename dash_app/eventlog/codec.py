"""Entries of the shared log as events: an entry's field `e` holds its events as a JSON list of Event rows."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import orjson

from dash_app.events import Event

FIELD = b"e"


def decode_entry(fields: Mapping[bytes, bytes]) -> list[Event]:
    """Return the events of one stream entry, in order."""
    raw = fields.get(FIELD)
    if raw is None:
        return []
    # The ledger writes times as text (every digit kept); anything else is a float already.
    return [Event(float(row[0]), *row[1:]) for row in orjson.loads(raw)]


def raw_entries(reply: Any) -> list[tuple[str, Mapping[bytes, bytes]]]:
    """Return the (entry id, fields) of an XREAD reply, in order."""
    return [(raw_id.decode(), fields) for _stream, items in reply or () for raw_id, fields in items]


def entries_of(reply: Any) -> list[tuple[str, list[Event]]]:
    """Return the (entry id, events) of an XREAD reply, in order."""
    return [(entry_id, decode_entry(fields)) for entry_id, fields in raw_entries(reply)]
