"""The FlexLM follower: a background service that follows each configured debug log and feeds the pool."""

import logging
import os
import threading
import time
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any, cast

from dash_app.background import BackgroundThread
from dash_app.services import FLEXLM, ServiceHolder
from dash_app.sources.flexlm.ingest import COUNTERS, LogIngest, source_id
from dash_app.sources.flexlm.tailing import LogTail
from dash_app.store.checkpoints import Checkpoints
from dash_app.timeutil import iso_utc

if TYPE_CHECKING:
    from dash_app.licenses.pool import LicensePool
    from dash_app.store.database import Store

log = logging.getLogger(__name__)

POLL_SECONDS = 0.25


class FlexLMFollower:
    """A background service that follows each configured debug log and feeds the pool; see GET /sources/flexlm."""

    def __init__(self, paths: Iterable[str], pool: "LicensePool", store: "Store", poll_seconds: float = POLL_SECONDS) -> None:
        self.pool = pool
        self.store = store
        self.poll_seconds = poll_seconds
        checkpoints = Checkpoints(store)
        self.tails: list[LogTail] = []
        for path in dict.fromkeys(os.path.abspath(p) for p in paths):
            ingest = LogIngest(pool, source_id(path), name=path)
            self.tails.append(LogTail(path, ingest, checkpoints, store))
        self._thread = BackgroundThread(self._run, "flexlm-follower", join_seconds=10)
        self._cond = threading.Condition()
        self._pass_started = 0
        self._idle_pass = 0

    def start(self) -> None:
        """Start following in a daemon thread; existing lines are read first, from where the last run stopped."""
        self._thread.start()

    def stop(self) -> None:
        """Stop following; the position reached is already queued for the store."""
        self._thread.stop()
        for tail in self.tails:
            tail.close()

    def wait_idle(self, timeout: float = 10) -> bool:
        """Block until a full pass over the logs that began after this call found nothing new; return True if one did."""
        deadline = time.monotonic() + timeout
        with self._cond:
            mark = self._pass_started
            while self._idle_pass <= mark:
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self._cond.wait(left)
        return True

    def _run(self) -> None:
        stopping = self._thread.stopping
        while not stopping.is_set():
            with self._cond:
                self._pass_started += 1
                this_pass = self._pass_started
            busy = False
            for tail in self.tails:
                try:
                    busy = tail.poll() > 0 or busy
                except Exception as exc:  # one bad log must not stop the others, nor this thread
                    tail.fail(exc)
            if not busy:
                with self._cond:
                    self._idle_pass = this_pass
                    self._cond.notify_all()
                stopping.wait(self.poll_seconds)

    def snapshot(self) -> dict[str, Any]:
        """Return the JSON-ready state and counters of every followed log, with totals."""
        logs = []
        totals = dict.fromkeys(COUNTERS, 0)
        totals["open_borrows"] = 0
        for tail in self.tails:
            ingest = tail.ingest
            counts = dict(ingest.counts)
            for name, value in counts.items():
                totals[name] += value
            open_borrows = ingest.open_borrows
            totals["open_borrows"] += open_borrows
            logs.append(
                {
                    "path": tail.path,
                    "state": tail.state,
                    "error": tail.error.as_dict() if tail.error is not None else None,
                    "offset": tail.offset,
                    "size": tail.size,
                    "rotations": tail.rotations,
                    "truncations": tail.truncations,
                    "open_borrows": open_borrows,
                    "last_event_at": iso_utc(ingest.last_event_at) if ingest.last_event_at is not None else None,
                    **counts,
                }
            )
        return {"enabled": True, "logs": logs, "totals": totals}


def follower_of(state: ServiceHolder) -> "FlexLMFollower | None":
    """Return the app's FlexLMFollower, or None when no log is configured."""
    return cast("FlexLMFollower | None", state.service(FLEXLM))
