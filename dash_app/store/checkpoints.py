"""How far each followed log file was read: the `flexlm_offsets` table, a file found again by its first bytes."""

from __future__ import annotations

import hashlib
import os
import time
from typing import IO, TYPE_CHECKING, NamedTuple

from sqlalchemy import select

from dash_app.store.database import upsert
from dash_app.store.tables import flexlm_offsets

if TYPE_CHECKING:
    from dash_app.store.database import Store


class Position(NamedTuple):
    """Where reading a file stopped: its id, byte offset and line number, and the log's date there (if known)."""

    file_id: str
    offset: int
    line: int
    day: int | None
    last_tod: int | None


def fingerprint(data: bytes) -> str:
    """Return the digest a file's first bytes are recognised by."""
    return hashlib.sha1(data).hexdigest()


class Checkpoints:
    """The flexlm_offsets table: how far each file was read, found again by the file's first bytes."""

    def __init__(self, store: Store) -> None:
        self.store = store  # its table is one of store.tables, made when the database opens

    def find(self, fh: IO[bytes], size: int) -> Position | None:
        """Return the stored position of the file open as `fh` (of `size` bytes), or None for a file never seen."""
        o = flexlm_offsets.c
        rows = self.store.read(
            select(o.file_id, o.fp_len, o.fingerprint, o.offset, o.line, o.day, o.last_tod).order_by(o.updated_at.desc())
        )
        prefixes: dict[int, str] = {}
        for file_id, fp_len, digest, offset, line, day, last_tod in rows:
            if fp_len <= 0 or fp_len > size or offset > size:
                continue
            if fp_len not in prefixes:
                prefixes[fp_len] = fingerprint(os.pread(fh.fileno(), fp_len, 0))
            if prefixes[fp_len] == digest:
                return Position(file_id, offset, line, day, last_tod)
        return None

    def save(self, path: str, source: str, fp_len: int, digest: str, position: Position) -> None:
        """Queue a file's position; it is written after the events of the lines before it (one writer, in order)."""
        self.store.submit(
            upsert(self.store.dialect, flexlm_offsets, ["file_id"]),
            {
                "file_id": position.file_id,
                "path": path,
                "source": source,
                "fp_len": fp_len,
                "fingerprint": digest,
                "offset": position.offset,
                "line": position.line,
                "day": position.day,
                "last_tod": position.last_tod,
                "updated_at": time.time(),
            },
        )
