"""The report a /capacity address shows, built from the moment its page is asked for.

The page's scripts load and run for most of a second before the view's first callback asks for its grid; the report
it then waits on (a month of 200 tools' sessions: a quarter of a second, more right after a start) is built meanwhile
instead, and the callback finds it cached (CapacityService builds a period once, so the two never build it twice).
"""

import logging
import threading
import time

from flask import request

from dash_app.analytics.service import CapacityService
from dash_app.callbacks.capacity_period import rolling_span
from dash_app.store.connections import one_line
from dash_app.timeutil import iso_second as iso

log = logging.getLogger(__name__)

# A page asked for this close to the end of a minute asks for its grid in the next one, a period of its own: its
# report is left to the view's callback rather than built twice.
MINUTE_TAIL_SECONDS = 2.0


class ReportPrefetch:
    """Builds the report of a /capacity page's address in a thread of its own, one page's at a time."""

    def __init__(self, service: CapacityService, page_path: str) -> None:
        self.service = service
        self.page_path = page_path  # the Capacity view's page, as Flask sees it (the app's routes prefix included)
        self._busy = threading.Lock()  # held by the building thread: a page asked for meanwhile waits for its callback

    def page_requested(self) -> None:
        """Start building the report of a GET of the Capacity page's rolling period (a Flask before_request hook)."""
        if request.method != "GET" or request.path.rstrip("/") != self.page_path:
            return
        now = self.service.clock()
        if now % 60 >= 60 - MINUTE_TAIL_SECONDS:
            return
        try:
            span = rolling_span("?" + request.query_string.decode("latin-1"), now, self.service.longest)
        except ValueError:  # a query of more fields than an address of the view has: the page answers it, as before
            return
        if span is None or not self._busy.acquire(blocking=False):
            return
        try:
            threading.Thread(target=self._build, args=span, name="capacity-prefetch", daemon=True).start()
        except RuntimeError:  # no thread to be had (the process at its limit): the view's callback builds it
            self._busy.release()

    def _build(self, start: float, end: float) -> None:
        started = time.monotonic()
        try:
            self.service.report(start, end)
        except Exception as exc:  # noqa: BLE001 - the view's callback asks again, and shows what went wrong
            log.warning("building the report of %s to %s for a Capacity page failed: %s", iso(start), iso(end), one_line(exc))
            return
        finally:
            self._busy.release()
        log.debug("built the report of %s to %s for a Capacity page in %.2f s", iso(start), iso(end), time.monotonic() - started)
