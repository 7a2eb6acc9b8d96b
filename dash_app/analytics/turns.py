"""Turns: one analysis at a time, and those a person is waiting on before the rest."""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator


class Turns:
    """A lock for the analyses: of the jobs waiting, an urgent one (a grid, a clicked tool) goes before any other.

    The analysis process runs one job at a time, so the Capacity view's sections (recommendations, the estate's heatmap,
    the top users, the chargeback) queue behind each other; a row click must not wait for all of them, only for the
    job already running. Among jobs of one kind the order is whatever the threads' wake-up gives.
    """

    def __init__(self) -> None:
        self._changed = threading.Condition()
        self._busy = False
        self._urgent = 0  # urgent jobs waiting
        self._others = 0  # other jobs waiting

    @contextlib.contextmanager
    def turn(self, urgent: bool = False) -> Iterator[None]:
        """Wait for this job's turn and hold it for the block: urgent jobs waiting go first."""
        with self._changed:
            if urgent:
                self._urgent += 1
            else:
                self._others += 1
            try:
                while self._busy or (not urgent and self._urgent):
                    self._changed.wait()
            finally:
                if urgent:
                    self._urgent -= 1
                else:
                    self._others -= 1
            self._busy = True
        try:
            yield
        finally:
            with self._changed:
                self._busy = False
                self._changed.notify_all()

    def waiting(self) -> tuple[int, int]:
        """Return how many urgent and other jobs wait for their turn."""
        with self._changed:
            return self._urgent, self._others
