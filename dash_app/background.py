"""The daemon thread a background service runs its loop in: started once, asked to stop, waited for."""

from __future__ import annotations

import threading
from collections.abc import Callable


class BackgroundThread:
    """Runs `loop` in a daemon thread named `name`; the loop ends when `stopping` is set (it waits on it between passes)."""

    def __init__(self, loop: Callable[[], None], name: str, join_seconds: float = 5.0) -> None:
        self.stopping = threading.Event()
        self._loop = loop
        self._name = name
        self._join_seconds = join_seconds  # how long stop() waits for the loop to end
        self._thread: threading.Thread | None = None

    @property
    def started(self) -> bool:
        """Whether start() has started the thread."""
        return self._thread is not None

    def start(self) -> None:
        """Start the thread, unless it is started already."""
        if self._thread is None:
            self._thread = threading.Thread(target=self._loop, name=self._name, daemon=True)
            self._thread.start()

    def stop(self) -> None:
        """Set `stopping`, then wait up to join_seconds for the loop to end."""
        self.stopping.set()
        if self._thread is not None:
            self._thread.join(timeout=self._join_seconds)
