"""Demo traffic: simulated engineers and CI bursts borrowing through the pool, live or backfilled."""

import heapq
import itertools
import logging
import math
import random
import threading
import time
from collections import Counter
from collections.abc import Callable
from typing import Any

from dash_app.licenses.pool import Borrow, BorrowDenied, LicensePool, PoolUnavailable, UnknownBorrow

log = logging.getLogger(__name__)

ROSTER = [
    "anna.schmidt",
    "ben.muller",
    "chen.wei",
    "david.kowalski",
    "elena.rossi",
    "farah.haddad",
    "georg.weber",
    "hana.sato",
    "ivan.petrov",
    "julia.fischer",
    "karim.nasser",
    "lena.wagner",
    "marco.bianchi",
    "nina.hoffmann",
    "oskar.lind",
    "priya.nair",
    "quentin.blanc",
    "rosa.garcia",
    "sven.larsen",
    "tara.obrien",
    "umut.yilmaz",
    "vera.novak",
    "wei.zhang",
    "xavier.dubois",
    "yuki.tanaka",
    "zoe.martin",
    "arjun.mehta",
    "birgit.koch",
    "carlos.silva",
    "dana.levi",
    "emil.berg",
    "fatima.ali",
    "goran.ivic",
    "helga.braun",
    "ines.costa",
    "jonas.keller",
]
CI_PREFIX = "ci-runner-"
# Names a person might mistype; the pool answers unknown_tool.
MISTYPED_TOOLS = ["GreenHills Multi-IDE", "DaVinci Configurator", "AUTOSAR Config Tool"]

MINUTE = 60.0
HOLD_MEDIAN = 7 * MINUTE  # a working session with a tool
IDLE_MEAN = 3 * MINUTE  # time between sessions
BURST_MEAN_GAP = 12 * MINUTE  # a CI pipeline or a team deadline, now and then
# As a license server's options file can: a few licenses of one tool reserved for the CI runners, held back while no
# runner uses them. Reported to the pool as this "server"'s reservations, beside the people queued for a license.
DEMO_SERVER = "demo"
RESERVED_FOR_CI = 2


class DemoTraffic:
    """A discrete-event simulation of a few dozen users; a background service once started."""

    def __init__(
        self,
        pool: LicensePool,
        speed: float = 1.0,
        backfill_hours: float = 0.0,
        seed: int | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.pool = pool
        self.speed = speed
        self.backfill_hours = backfill_hours
        self.clock = clock
        self.rng = random.Random(seed)
        self._queue: list[tuple[float, int, str, Any]] = []  # (when, order, action, its payload), a heap
        self._order = itertools.count()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.counts = {"borrows": 0, "returns": 0, "failures": 0, "unavailable": 0}
        tools = pool.tools
        # Each person mostly uses one or two tools, and some tools are more popular than others.
        self._habits = {user: self.rng.sample(tools, k=min(len(tools), self.rng.choice((1, 2, 2, 3)))) for user in ROSTER}
        # The tool whose licenses are reserved for CI (the largest pool: it can spare them), and what it reserves now.
        totals = {entry["tool"]: entry["total"] or 0 for entry in pool.status()}
        self.reserved_tool = max(tools, key=lambda tool: totals.get(tool, 0)) if tools else None
        self._ci_holding: Counter[str] = Counter()  # tool -> CI runners holding one
        self._queued: Counter[str] = Counter()  # tool -> people denied who wait to ask again

    # ------------------------------------------------------------ lifecycle

    def start(self) -> None:
        """Backfill, then play live traffic in a daemon thread."""
        if not self.pool.tools:
            log.warning("demo traffic is off: the tools file lists no tools")
            return
        now = self.clock()
        start = now - self.backfill_hours * 3600
        self._seed_schedule(start)
        for tool in self.pool.tools:  # a new run (or a new lease holder) starts from its own word, not the last one's
            self._report(tool)
        if self.backfill_hours > 0:
            began = time.perf_counter()
            with self.pool.as_source():
                self.run_until(now, backfill=True)
            log.info(
                "demo backfill: %.1f h of traffic in %.1f s (%s)", self.backfill_hours, time.perf_counter() - began, self.counts
            )
        self._thread = threading.Thread(target=self._live, args=(now,), name="demo-traffic", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Stop the live thread."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)

    # ----------------------------------------------------------- simulation

    def _seed_schedule(self, start: float) -> None:
        for user in ROSTER:
            self._at(start + self.rng.uniform(0, 3 * MINUTE), "start", user)
        self._at(start + self.rng.expovariate(1 / BURST_MEAN_GAP), "burst", None)
        # After a restart, borrows of demo users from the last run are still active: let them end too.
        for borrow in self.pool.active_borrows():
            if borrow.user in self._habits or borrow.user.startswith(CI_PREFIX):
                self._at(start + self.rng.uniform(0, HOLD_MEDIAN), "end", (borrow.id, None))

    def _at(self, when: float, action: str, payload: Any) -> None:
        heapq.heappush(self._queue, (when, next(self._order), action, payload))

    def run_until(self, sim_end: float, backfill: bool = False) -> None:
        """Play every scheduled action up to `sim_end`; backfilled ones carry their simulated time."""
        while self._queue and self._queue[0][0] <= sim_end and not self._stop.is_set():
            when, _, action, payload = heapq.heappop(self._queue)
            getattr(self, "_do_" + action)(when, payload, when if backfill else None)

    def _live(self, wall_start: float) -> None:
        with self.pool.as_source():
            self._play_live(wall_start)

    def _play_live(self, wall_start: float) -> None:
        sim_start = wall_start
        while not self._stop.is_set():
            sim_now = sim_start + (self.clock() - wall_start) * self.speed
            try:
                self.run_until(sim_now)
            except Exception:  # keep the demo alive; a bug here must not end the traffic silently
                log.exception("demo traffic step failed")
            wait = (self._queue[0][0] - sim_now) / self.speed if self._queue else 0.5
            self._stop.wait(min(max(wait, 0.01), 0.5))

    def _borrow(self, tool: str, user: str, at: float | None) -> Borrow | None:
        try:
            borrow = self.pool.borrow(tool, user, at=at)
        except BorrowDenied:
            self.counts["failures"] += 1
            return None
        except PoolUnavailable:
            self.counts["unavailable"] += 1  # Redis is away: this person simply did not get to ask
            return None
        self.counts["borrows"] += 1
        return borrow

    def _do_start(self, when: float, user: str, at: float | None) -> None:
        # attempt 0 is the first try; a denied person tries again a couple of times, then gives up for a while.
        self._do_attempt(when, (user, self.rng.choice(self._habits[user]), 0), at)

    def _do_attempt(self, when: float, payload: tuple[str, str, int], at: float | None) -> None:
        user, tool, attempt = payload
        if attempt:
            self._wait(tool, -1)  # out of the queue to ask again
        if self.rng.random() < 0.01:
            tool_asked = self.rng.choice(MISTYPED_TOOLS)
            self._borrow(tool_asked, user, at)
            self._at(when + self.rng.uniform(10, 40), "attempt", (user, tool, attempt))
            if attempt:
                self._wait(tool, 1)
            return
        borrow = self._borrow(tool, user, at)
        if borrow is not None:
            hold = HOLD_MEDIAN * math.exp(self.rng.gauss(0, 0.6))
            self._at(when + hold, "end", (borrow.id, user))
        elif attempt < 2:
            # Denied: this person waits for a license, as a server's queue would hold them, and asks again.
            self._wait(tool, 1)
            self._at(when + self.rng.uniform(1, 3) * MINUTE, "attempt", (user, tool, attempt + 1))
        else:
            self._at(when + self.rng.expovariate(1 / IDLE_MEAN), "start", user)

    def _wait(self, tool: str, change: int) -> None:
        self._queued[tool] += change
        self._report(tool)

    def _report(self, tool: str) -> None:
        """Tell the pool what this simulated server reserves of `tool` and how many wait for it."""
        reserved = max(RESERVED_FOR_CI - self._ci_holding[tool], 0) if tool == self.reserved_tool else 0
        self.pool.observe_queue(tool, reserved, self._queued[tool], DEMO_SERVER)

    def _do_end(self, when: float, payload: tuple[str, str | None], at: float | None) -> None:
        borrow_id, user = payload
        try:
            returned = self.pool.return_license(borrow_id, at=at)
            self.counts["returns"] += 1
            if user is not None and user.startswith(CI_PREFIX):
                self._runner_holds(returned.tool, -1)
        except UnknownBorrow:
            pass  # returned by someone else meanwhile (the REST API is open to the same pool)
        except PoolUnavailable:
            # Redis is away: try again a little later, so the license is not held for ever.
            self._at(when + 5.0, "end", payload)
            return
        if user in self._habits:
            self._at(when + self.rng.expovariate(1 / IDLE_MEAN), "start", user)

    def _do_burst(self, when: float, _payload: None, at: float | None) -> None:
        # A pipeline fans out: many runners ask for one tool within a minute or two.
        tool = self.rng.choice(self.pool.tools)
        for _ in range(self.rng.randint(8, 22)):
            runner = f"{CI_PREFIX}{self.rng.randint(1, 40):02d}"
            self._at(when + self.rng.uniform(0, 2 * MINUTE), "runner", (runner, tool))
        self._at(when + self.rng.expovariate(1 / BURST_MEAN_GAP), "burst", None)

    def _do_runner(self, when: float, payload: tuple[str, str], at: float | None) -> None:
        runner, tool = payload
        borrow = self._borrow(tool, runner, at)
        if borrow is not None:
            self._runner_holds(tool, 1)
            self._at(when + self.rng.uniform(2, 7) * MINUTE, "end", (borrow.id, runner))

    def _runner_holds(self, tool: str, change: int) -> None:
        # A runner's checkout uses up the reservation made for it, until it returns the license.
        self._ci_holding[tool] += change
        if tool == self.reserved_tool:
            self._report(tool)
