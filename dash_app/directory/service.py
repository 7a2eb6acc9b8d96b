"""The directory service: the current GroupMapping, the company directory's overlaid by the --user-groups file's.

Its thread re-reads the file when it changes, asks the directory about every user every --ldap-refresh-hours and
about users new since (a first session) every minute. A file that
turns malformed, and a directory that does not answer, leave the last good mapping in place; each shows as a
`directory` source in GET /sources (down, with its error) until it is good again.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable, Iterable
from typing import NamedTuple

from dash_app.background import BackgroundThread
from dash_app.directory.csvfile import GroupsFileError, parse_groups
from dash_app.directory.lookup import Directory, DirectoryError
from dash_app.directory.mapping import GroupMapping
from dash_app.sources.errors import CANNOT_OPEN, MALFORMED_FILE, SourceError
from dash_app.sources.health import DOWN, SourceHealth

log = logging.getLogger(__name__)

KIND = "directory"  # the sources' kind in GET /sources
CHECK_SECONDS = 1.0  # how often the file's size and time are looked at
NEW_USERS_SECONDS = 60.0  # how often users not yet asked about (new sessions) are looked up between refreshes
RETRY_SECONDS = 60.0  # how soon a directory that did not answer is asked again (sooner when the refresh is sooner)


class FileStamp(NamedTuple):
    """What tells a changed file: its inode, size and modification time."""

    inode: int
    size: int
    mtime_ns: int


def _stamp(path: str) -> FileStamp:
    status = os.stat(path)
    return FileStamp(status.st_ino, status.st_size, status.st_mtime_ns)


def where(path: str) -> str:
    """Return how errors name the --user-groups file."""
    return f"--user-groups {path}"


def read_groups_file(path: str) -> tuple[GroupMapping, FileStamp]:
    """Return the mapping in the --user-groups file at `path` and the stamp it had; GroupsFileError when it is no good."""
    try:
        before = _stamp(path)
        with open(path, encoding="utf-8-sig") as fh:
            text = fh.read()
    except FileNotFoundError:
        raise GroupsFileError(f"{where(path)}: not found") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise GroupsFileError(f"{where(path)}: cannot read: {exc}") from None
    return parse_groups(text, where(path)), before


class UserNames:
    """The users to look up: those of the stored sessions (read past the last row seen) and those holding a license now."""

    def __init__(self, stored_after: Callable[[int], tuple[set[str], int]], live: Callable[[], Iterable[str]]) -> None:
        self._stored_after = stored_after
        self._live = live
        self._after = 0
        self._stored: set[str] = set()

    def __call__(self) -> set[str]:
        """Return every user name seen so far."""
        found, self._after = self._stored_after(self._after)
        self._stored |= found
        return self._stored | set(self._live())


class DirectoryService:
    """Holds who belongs where, from the file and the company directory; `mapping()` is cheap and thread-safe."""

    def __init__(
        self,
        groups_file: str | None,
        directory: Directory | None,
        users: Callable[[], Iterable[str]],
        refresh_seconds: float = 6 * 3600.0,
        check_seconds: float = CHECK_SECONDS,
        new_users_seconds: float = NEW_USERS_SECONDS,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._path = groups_file
        self._directory = directory
        self._users = users
        self._refresh_seconds = refresh_seconds
        self._check_seconds = check_seconds
        self._new_users_seconds = new_users_seconds
        self._asked: set[str] = set()  # the users the directory was asked about since its last whole lookup
        self._clock = clock
        self._lock = threading.Lock()
        self._wake = threading.Event()  # set by refresh() and stop(): the loop's wait ends early
        self._refresh_asked = False
        self._file_mapping = GroupMapping()
        self._ldap_mapping = GroupMapping()
        self._file_stamp: FileStamp | None = None
        # Every key of `counters` and `extra` is there from the start: as_dict() may read them while they are set.
        self._file_health = SourceHealth(KIND, groups_file, counters={"polls": 0}, extra={"users": 0}) if groups_file else None
        self._ldap_health = (
            SourceHealth(KIND, directory.name, counters={"polls": 0}, extra={"users": 0, "found": 0, "unusable": 0})
            if directory is not None
            else None
        )
        self._refreshes = 0  # the directory's refreshes that succeeded: tests and waiters count them
        if groups_file:
            # A malformed file at start is a bad setting: GroupsFileError, one line, exit status 2.
            self._file_mapping, self._file_stamp = read_groups_file(groups_file)
            self._note_file(self._file_mapping)
        self._mapping = self._file_mapping
        self._thread = BackgroundThread(self._run, "directory")

    def mapping(self) -> GroupMapping:
        """Return the current mapping: the directory's, with the file's users replacing theirs."""
        return self._mapping

    def health(self) -> list[SourceHealth]:
        """Return the records GET /sources lists: the file's and the directory's, each when configured."""
        return [health for health in (self._file_health, self._ldap_health) if health is not None]

    @property
    def refreshes(self) -> int:
        """Return how many lookups in the directory have succeeded (of every user, or of the new ones)."""
        return self._refreshes

    def refresh(self) -> None:
        """Ask the thread to look every user up in the directory now (and to look at the file)."""
        with self._lock:
            self._refresh_asked = True
        self._wake.set()

    def start(self) -> None:
        """Start the thread that follows the file and the directory (none when neither is configured)."""
        if self._path or self._directory is not None:
            self._thread.start()

    def stop(self) -> None:
        """Stop the thread, finishing a lookup under way (its connection times out at worst)."""
        self._thread.stopping.set()
        self._wake.set()
        self._thread.stop()

    def _run(self) -> None:
        stopping = self._thread.stopping
        next_whole = next_new = 0.0  # every user is looked up as soon as the thread starts
        while not stopping.is_set():
            try:
                self._check_file()
                directory = self._directory
                if directory is not None:
                    with self._lock:
                        asked, self._refresh_asked = self._refresh_asked, False
                    whole = asked or self._clock() >= next_whole
                    if whole or self._clock() >= next_new:
                        good = self._look_up(directory, whole)
                        now = self._clock()
                        if whole:
                            next_whole = now + self._refresh_seconds
                        if not good:  # asked again soon, whatever the refresh interval
                            next_whole = min(next_whole, now + min(self._refresh_seconds, RETRY_SECONDS))
                        next_new = now + self._new_users_seconds
            except Exception:  # a bug here must not end the thread: the mapping stays, the log says why
                log.exception("directory: the refresh failed")
            self._wake.wait(self._check_seconds)
            self._wake.clear()

    def _check_file(self) -> None:
        path, health = self._path, self._file_health
        if not path or health is None:
            return
        try:
            stamp = _stamp(path)
        except OSError as exc:
            health.failed(self._clock(), SourceError(CANNOT_OPEN, detail=exc.strerror or str(exc)))
            self._file_stamp = None
            return
        if stamp == self._file_stamp:
            return
        try:
            mapping, before = read_groups_file(path)
        except GroupsFileError as exc:
            detail = str(exc).removeprefix(f"{where(path)}: ")
            health.failed(self._clock(), SourceError(MALFORMED_FILE, detail=detail))
            log.warning("%s; the last good mapping stays", exc)
            self._file_stamp = stamp
            return
        # A file still being written changes under the read: read it again at the next check.
        self._file_stamp = before if before == _stamp_or_none(path) else None
        self._file_mapping = mapping
        self._note_file(mapping)
        self._publish()

    def _note_file(self, mapping: GroupMapping) -> None:
        health = self._file_health
        if health is not None:
            health.ok(self._clock())
            health.count(polls=1)
            health.extra["users"] = len(mapping)

    def _look_up(self, directory: Directory, whole: bool) -> bool:
        """Look every user up (`whole`), or only those not asked about yet; return whether the directory answered."""
        health = self._ldap_health
        assert health is not None
        users = set(self._users())
        wanted = users if whole else users - self._asked
        if not wanted and not whole:
            return True
        try:
            lookup = directory.look_up(wanted)
        except DirectoryError as exc:
            if health.state != DOWN:  # said once an outage, not at every retry
                log.warning("directory %s: %s; the last mapping stays", directory.name, exc.error.kind)
            health.failed(self._clock(), exc.error)
            return False
        if whole:
            self._ldap_mapping, self._asked = lookup.mapping, wanted
        else:
            self._ldap_mapping, self._asked = self._ldap_mapping.overlaid(lookup.mapping), self._asked | wanted
        health.ok(self._clock())
        health.count(polls=1)
        health.extra.update(users=len(self._asked), found=len(self._ldap_mapping), unusable=lookup.unusable)
        self._publish()
        self._refreshes += 1
        return True

    def _publish(self) -> None:
        # One reference assignment: a reader gets the old mapping or the new one, never a mixture.
        self._mapping = self._ldap_mapping.overlaid(self._file_mapping)


def _stamp_or_none(path: str) -> FileStamp | None:
    try:
        return _stamp(path)
    except OSError:
        return None
