"""The analysis copy of the history, saved (saved_copies.py says where) so that a restart need not read the database whole.

Reading a month of sessions from SQLite takes seconds; loading this file takes a tenth of that. The analysis process
saves its HistoryMirror here after a read that changed it (at most every SAVE_SECONDS, and when it stops), and loads it
at start; the mirror then reads only the rows changed since, and reads everything again when the file is of another
database (the number of schema version 9) or of a later state than the database's (a file put back by hand).

The file holds what the database holds, no more: the sessions by tool with their levels and steps (bytool.ByTool),
the denials, and the names still in use, so a pruned session's user leaves it at the next save. It is written to a
temporary file and renamed over the old one, readable by its owner alone. It is NumPy's .npz, read without pickle: a
file that is damaged, of another format or inconsistent is logged in one line and ignored.
"""

from __future__ import annotations

import logging
import os
import zipfile
from dataclasses import dataclass, fields
from typing import Any

import numpy as np

from dash_app.analytics.bytool import ByTool

log = logging.getLogger(__name__)

FORMAT = 2  # moves when the file's contents change meaning: a file of another format is read again from the database
SAVE_SECONDS = 600.0  # how often a changing copy is saved at most: a restart then reads ten minutes of changes

_INDEX_FIELDS = tuple(f.name for f in fields(ByTool) if f.name != "names")
_SESSION_FIELDS = ("code", "borrowed", "returned", "seq", "overage", "user", "level")
_DENIAL_FIELDS = ("rowid", "ts", "tool", "user", "reason")
# Each column's type, as ByTool and HistoryMirror hold it (codes and levels in 32 bits).
_DTYPES = {
    **dict.fromkeys(("code", "user", "level", "step_code", "step_level", "tool", "reason"), np.dtype(np.int32)),
    **dict.fromkeys(("borrowed", "returned", "step_time", "step_next", "ts"), np.dtype(np.float64)),
    **dict.fromkeys(("seq", "rowid"), np.dtype(np.int64)),
    "overage": np.dtype(np.bool_),
}


class CopyUnusable(ValueError):
    """A saved copy that cannot be used; the message says why in one line."""


@dataclass(frozen=True)
class SavedCopy:
    """A mirror's contents: names, the sessions' index, the denials' columns, and the stamp and database they are of."""

    names: list[Any]  # text, or NaN for a NULL name
    index: ByTool
    denials: dict[str, np.ndarray[Any, Any]]
    stamp: int
    database_id: float


def save(copy: SavedCopy, path: str) -> None:
    """Write `copy` to `path` whole or not at all (a temporary file renamed over it), readable by its owner alone."""
    # A NULL name in the database (a denial from before version 1 may have one) is a missing value in the copy.
    missing = [n for n, name in enumerate(copy.names) if not isinstance(name, str)]
    encoded = [name.encode("utf-8", "surrogatepass") if isinstance(name, str) else b"" for name in copy.names]
    arrays: dict[str, np.ndarray[Any, Any]] = {
        "format": np.array([FORMAT], dtype=np.int64),
        "stamp": np.array([copy.stamp], dtype=np.int64),
        "database_id": np.array([copy.database_id], dtype=np.float64),
        "names": np.frombuffer(b"".join(encoded), dtype=np.uint8),
        "name_ends": np.cumsum([len(name) for name in encoded], dtype=np.int64),
        "names_missing": np.array(missing, dtype=np.int64),
    }
    arrays.update({f"index.{name}": getattr(copy.index, name) for name in _INDEX_FIELDS})
    arrays.update({f"denials.{name}": copy.denials[name] for name in _DENIAL_FIELDS})
    temporary = f"{path}.{os.getpid()}.tmp"
    try:
        os.unlink(temporary)  # this process's own, from a save that failed
    except FileNotFoundError:
        pass
    # A new file, never one put there (nor a link to one): in a folder others may write to, theirs would be renamed in.
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
    try:
        with os.fdopen(fd, "wb") as out:
            np.savez(out, allow_pickle=False, **arrays)
            out.flush()
            os.fsync(out.fileno())
        os.replace(temporary, path)
    except BaseException:
        try:
            os.unlink(temporary)
        except OSError:
            pass
        raise


def remove_leftovers(path: str) -> list[str]:
    """Delete the temporary files of saves into `path` by processes that ended mid-save; return their names."""
    folder, name = os.path.split(os.path.abspath(path))
    removed = []
    for entry in os.listdir(folder):
        pid = entry[len(name) + 1 : -len(".tmp")]
        if entry.startswith(name + ".") and entry.endswith(".tmp") and pid.isdigit() and not _alive(int(pid)):
            try:
                os.unlink(os.path.join(folder, entry))
            except FileNotFoundError:
                continue
            removed.append(entry)
    return removed


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # another user's process
    return True


def load(path: str) -> SavedCopy:
    """Return the copy saved at `path`; raise FileNotFoundError when there is none, CopyUnusable when it is unusable."""
    try:
        with np.load(path, allow_pickle=False) as held:
            arrays = {name: held[name] for name in held.files}
    except FileNotFoundError:
        raise
    except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile) as exc:
        raise CopyUnusable(f"{path}: not a saved copy ({type(exc).__name__}: {exc})") from None
    try:
        return _checked(arrays)
    except KeyError as exc:
        raise CopyUnusable(f"{path}: no {exc} in it") from None
    except CopyUnusable as exc:
        raise CopyUnusable(f"{path}: {exc}") from None
    except Exception as exc:  # noqa: BLE001 - a file of the right kind holding something else: refused, never a crash
        raise CopyUnusable(f"{path}: not a saved copy ({type(exc).__name__}: {exc})") from None


def _checked(arrays: dict[str, np.ndarray[Any, Any]]) -> SavedCopy:
    if arrays["format"].tolist() != [FORMAT]:
        raise CopyUnusable(f"format {arrays['format'].tolist()}, not {FORMAT}")
    blob, ends = arrays["names"].tobytes(), arrays["name_ends"].tolist()
    if ends != sorted(ends) or (ends and ends[-1] != len(blob)):
        raise CopyUnusable("its names do not add up")
    try:
        names: list[Any] = [blob[lo:hi].decode("utf-8", "surrogatepass") for lo, hi in zip([0, *ends[:-1]], ends)]
    except UnicodeDecodeError:
        raise CopyUnusable("a name is not text") from None
    for n in arrays["names_missing"].tolist():
        names[n] = np.nan  # as pandas names a NULL the mirror read (`_intern`)
    count = len(names)
    index = {name: arrays[f"index.{name}"] for name in _INDEX_FIELDS}
    denials = {name: arrays[f"denials.{name}"] for name in _DENIAL_FIELDS}
    for name, column in [*(("index." + k, v) for k, v in index.items()), *(("denials." + k, v) for k, v in denials.items())]:
        if column.dtype != _DTYPES[name.split(".")[1]]:
            raise CopyUnusable(f"{name} holds {column.dtype}")
    for group, columns in (
        ("sessions", [index[name] for name in _SESSION_FIELDS]),
        ("steps", [index[name] for name in _INDEX_FIELDS if name.startswith("step_")]),
        ("denials", list(denials.values())),
    ):
        if len({len(column) for column in columns}) > 1 or any(column.ndim != 1 for column in columns):
            raise CopyUnusable(f"its {group}' columns differ in length")
    for codes in (index["code"], index["user"], index["step_code"], denials["tool"], denials["user"], denials["reason"]):
        if len(codes) and (int(codes.min()) < 0 or int(codes.max()) >= count):
            raise CopyUnusable("a name's code is out of range")
    if arrays["stamp"].shape != (1,) or arrays["database_id"].shape != (1,):
        raise CopyUnusable("its stamp or database number is not one value")
    return SavedCopy(
        names,
        ByTool(**index, names=np.array(names, dtype=object)),
        denials,
        int(arrays["stamp"][0]),
        float(arrays["database_id"][0]),
    )
