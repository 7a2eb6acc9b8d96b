"""How far one process is along the shared log: what its follower applied, what its calls added, what the store holds.

The follower moves it on, the pool waits on it to read its own writes, and the recovery hands in its tail; each is
built with this one object, so none needs the others.
"""

from __future__ import annotations

import threading
import time
from collections import deque

from dash_app.store.database import entry_key


def later(a: str, b: str) -> str:
    """Return the later of two entry ids."""
    return a if entry_key(a) >= entry_key(b) else b


class LogProgress:
    """This process's positions in the log, and the entries it applied that the store may not hold yet."""

    def __init__(self, start: str = "0-0") -> None:
        self.applied = start  # the last entry the follower applied (it reads on from here)
        self.sent = "0-0"  # the last entry this process's own calls added
        self.stored = "0-0"  # the store's position in the log, as last read
        # Moves on whenever Redis may have lost entries (a failed read, a rebuilt pool): see wait_applied.
        self.epoch = 0
        # The entries applied here that the store may not hold yet, (id, field e), oldest first: should Redis lose
        # them, they are put back from here (see recovery). Trimmed to the store's position (note_stored).
        self.tail: deque[tuple[str, bytes]] = deque()
        self._changed = threading.Condition()

    def known(self) -> str:
        """Return the last entry this process has read, added or seen stored: a stream behind it lost data."""
        return later(later(self.applied, self.sent), self.stored)

    def mark_applied(self, entry_id: str, raw: bytes) -> None:
        """Note that the follower applied the entry `entry_id` (its field e is `raw`), waking whoever waits for it."""
        self.tail.append((entry_id, raw))
        with self._changed:
            self.applied = entry_id
            self._changed.notify_all()

    def mark_sent(self, entry_id: str) -> None:
        """Note that this process's own call added the entry `entry_id`."""
        with self._changed:
            self.sent = later(self.sent, entry_id)

    def note_stored(self, position: str | None) -> None:
        """Note the store's position, and drop the entries at or before it from the tail (the follower's thread)."""
        self.stored = later(position or "0-0", self.stored)
        at = entry_key(self.stored)
        while self.tail and entry_key(self.tail[0][0]) <= at:
            self.tail.popleft()

    def data_lost(self) -> None:
        """Note that Redis may have lost entries not applied here yet: whoever waits for one is told it may be lost."""
        with self._changed:
            self.epoch += 1
            self._changed.notify_all()

    def wait_applied(self, entry_id: str, timeout: float = 1.0, epoch: int | None = None) -> bool:
        """Block until the entry `entry_id` is applied here; return True when it is.

        False when `timeout` passes first, or when Redis failed since the epoch `epoch` (read before the entry was
        added): a Redis that lost the entry may give a later one its place, so reaching its id would prove nothing.
        """
        wanted = entry_key(entry_id)
        deadline = time.monotonic() + timeout
        with self._changed:
            since = self.epoch if epoch is None else epoch
            while self.epoch == since and entry_key(self.applied) < wanted:
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self._changed.wait(left)
            return self.epoch == since
