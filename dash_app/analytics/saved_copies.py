"""Where the analysis process keeps its copy of a history between runs, and when it loads and saves it.

A file's copy sits beside it (`<db>-analysis.npz`, as SQLite's own `<db>-wal`); a server's goes to a folder of its own
(--analysis-dir), named after what identifies the database. The file's format is analytics/mirror_file.py's.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import os
import re
import stat
import time
from typing import TYPE_CHECKING, Any

from sqlalchemy import URL, make_url
from sqlalchemy.exc import ArgumentError

from dash_app.store.migrate import is_url

if TYPE_CHECKING:
    from dash_app.analytics.mirror import HistoryMirror

log = logging.getLogger(__name__)

# Where the analysis process saves its copy of a history (analytics/mirror_file.py): a file's at `<db>` + this, as
# SQLite's own `<db>-wal`; a server's in --analysis-dir (saved_copy_path).
SAVED_COPY_SUFFIX = "-analysis.npz"
# libpq's query settings that say which database a URL names (a socket's folder, a service file's entry); the others
# (timeouts, TLS, passwords) say how to connect to it.
_IDENTITY_QUERY_KEYS = frozenset({"host", "hostaddr", "port", "dbname", "user", "service"})


def saved_copy_path(database: str, folder: str = "") -> str | None:
    """Return where the analysis copy of `database` is saved: beside a file, in `folder` for a server; None for memory.

    A server's copy is named after what identifies its database (`_identity`), never a password, so a changed password
    or connect option finds the same copy; a server with no `folder` keeps none, and so does a URL that cannot be read.
    """
    if database in ("", ":memory:"):
        return None
    if not is_url(database):
        return database + SAVED_COPY_SUFFIX
    if not folder:
        return None
    try:
        url = make_url(database)
    except (ArgumentError, ValueError):
        return None  # the store says what is wrong with it, in one line
    digest = hashlib.sha256(json.dumps(_identity(url)).encode()).hexdigest()[:16]
    name = re.sub(r"[^A-Za-z0-9_.-]", "_", url.database or "postgres")[:64]
    return os.path.join(os.path.expanduser(folder), f"{name}-{digest}{SAVED_COPY_SUFFIX}")


def _identity(url: URL) -> list[Any]:
    """Return what names a server's database in `url`: the same database spelled otherwise gives the same list."""
    query = {key.lower(): value for key, value in url.query.items() if key.lower() in _IDENTITY_QUERY_KEYS}
    return [
        "postgresql",  # postgres://, postgresql:// and postgresql+psycopg:// alike
        url.username or "",
        (url.host or "").lower(),
        url.port or 5432,
        url.database or "",
        sorted((key, value if isinstance(value, str) else list(value)) for key, value in query.items()),
    ]


def private_folder(folder: str) -> None:
    """Make `folder` (mode 0700) if it is missing; raise OSError unless it is a folder of ours that no one else may write to.

    Anyone who could write there could put a copy in place of ours, or delete it.
    """
    os.makedirs(folder, mode=0o700, exist_ok=True)
    st = os.lstat(folder)
    if not stat.S_ISDIR(st.st_mode) or st.st_uid != os.geteuid() or st.st_mode & (stat.S_IWGRP | stat.S_IWOTH):
        raise OSError(f"{folder} is not a folder of this user's that only it may write to")


class SavedCopies:
    """Loads a mirror from its saved copy at start and saves it after reads that changed it (analytics/mirror_file.py)."""

    def __init__(self, mirror: HistoryMirror, path: str | None) -> None:
        self.mirror, self.path = mirror, path
        self._version = -1  # the mirror's version when last loaded or saved
        self._whole_reads = 0  # and how many times it had read the history whole by then
        self._at = -math.inf  # and when
        self.loaded = False  # the mirror holds a loaded copy that no refresh has rejected yet

    def load(self) -> None:
        """Take the saved copy as the mirror's contents, if there is a usable one (the first refresh checks it)."""
        from dash_app.analytics import mirror_file

        if self.path is None:
            return
        try:
            mirror_file.remove_leftovers(self.path)  # a save cut short (a process killed while saving)
        except OSError as exc:
            log.warning("looking for leftovers of saving the copy of the history failed: %s", exc)
        try:
            self.mirror.adopt(mirror_file.load(self.path))
        except FileNotFoundError:
            return
        except (mirror_file.CopyUnusable, OSError) as exc:
            log.warning("the saved copy of the history is not used: %s", exc)
            return
        self._note()
        self.loaded = True
        log.info("loaded the saved copy of the history (%d sessions)", len(self.mirror.sessions))

    def checked(self) -> None:
        """After the first refresh: delete a loaded copy that the mirror found not of this history (it read it whole).

        Left in place, a rejected copy could pass the checks later, once the database's new writes reach its stamp.
        """
        if not self.loaded:
            return
        self.loaded = False
        if self.mirror.whole_reads and self.path is not None:
            try:
                os.unlink(self.path)
            except FileNotFoundError:
                pass
            except OSError as exc:
                log.warning("deleting the saved copy of another history failed: %s", exc)

    def save(self, now: bool = False) -> None:
        """Save the mirror if it changed since: at once after a whole read or with `now`, else every SAVE_SECONDS."""
        from dash_app.analytics import mirror_file

        if self.path is None or self.mirror.version == self._version:
            return
        whole_read = self.mirror.whole_reads != self._whole_reads
        if not (now or whole_read or time.monotonic() - self._at >= mirror_file.SAVE_SECONDS):
            return
        copy = self.mirror.saved()
        if copy is None:
            return
        try:
            mirror_file.save(copy, self.path)
        except Exception as exc:  # noqa: BLE001 - a full or read-only disk: the next start reads the database whole
            log.warning("saving the copy of the history failed: %s: %s", type(exc).__name__, exc)
        self._note()

    def _note(self) -> None:
        self._version, self._whole_reads, self._at = self.mirror.version, self.mirror.whole_reads, time.monotonic()
