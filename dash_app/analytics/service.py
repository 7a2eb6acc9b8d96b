"""The capacity and cost analyses the API and the Capacity page ask for, cached per data version and period."""

from __future__ import annotations

import calendar
import math
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Collection, Mapping, Sequence
from datetime import datetime
from typing import TYPE_CHECKING, Any

from dash_app.analytics.runners import Runner, analysis_runner
from dash_app.analytics.spec import Spec
from dash_app.analytics.turns import Turns
from dash_app.directory.mapping import GROUP_KEYS, UNASSIGNED, GroupKey, GroupMapping
from dash_app.pressure import TRUE_DENIAL_MINUTES
from dash_app.store.history_counts import data_version
from dash_app.timeutil import EARLIEST_EPOCH, instant_problem
from dash_app.timeutil import iso_second as iso

if TYPE_CHECKING:
    from dash_app.licenses.pool import LicensePool
    from dash_app.store.database import Store

DEFAULT_WINDOW = 7 * 86400
# Reports kept: every period and tool filter the page and API use within one data version, and a few more.
CACHE_SIZE = 32
# How long a report is served after the data it was built from changed: at most this far behind the live data.
REUSE_SECONDS = 30.0


class PeriodError(ValueError):
    """A period parameter is bad; the message starts with the field's name."""


class GroupError(ValueError):
    """A `group` or `by` parameter is bad; the message starts with the field's name."""


def parse_time(field: str, text: str) -> float:
    """Return epoch seconds of an ISO 8601 time that names its zone, or raise PeriodError naming `field`."""
    try:
        moment = datetime.fromisoformat(text.replace("Z", "+00:00") if text.endswith("Z") else text)
    except ValueError:
        raise PeriodError(f"{field}: not an ISO 8601 time") from None
    if moment.tzinfo is None or moment.utcoffset() is None:
        raise PeriodError(f"{field}: must name its time zone (for example 2026-11-01T00:00:00Z)")
    seconds = moment.timestamp()
    problem = instant_problem(seconds)  # 0001-01-01T00:00:00+14:00 parses, but is in the year 0 in UTC
    if problem is not None:
        raise PeriodError(f"{field}: {problem}")
    return seconds


def period_of(args: Mapping[str, str], now: float, longest: float, default_window: float = DEFAULT_WINDOW) -> tuple[float, float]:
    """Return [start, end) from `from`/`to` (ISO, with a zone) or `window` (seconds, ending now); `from`/`to` win.

    `to` in the future is clipped to now; a window ends at the start of the current minute, so a repeated query
    within the minute is the same period (and the same cached report).
    """
    end = float(int(now // 60) * 60)
    if args.get("to"):
        end = min(parse_time("to", args["to"]), now)
    if args.get("from"):
        start = parse_time("from", args["from"])
    else:
        raw = args.get("window")
        try:
            window = float(raw) if raw is not None else default_window
        except ValueError:
            raise PeriodError("window: must be a number of seconds") from None
        if not math.isfinite(window) or not 60 <= window <= longest:
            raise PeriodError(f"window: must be between 60 and {int(longest)} seconds")
        start = end - window
        if instant_problem(start) is not None:
            raise PeriodError(f"to: with this window the period starts before {iso(EARLIEST_EPOCH)}")
    if start >= end:
        raise PeriodError("from: must be before to (and before now)")
    if end - start > longest + 86400:
        raise PeriodError(f"from: the history keeps {int(longest // 86400)} days")
    return start, end


def month_period(now: float, months_back: int, zone: Callable[[float], datetime]) -> tuple[float, float]:
    """Return [start, end) of this calendar month (0) or the one before (1) in the zone `zone` gives local times in."""
    local = zone(now)
    year, month = local.year, local.month - months_back
    if month < 1:
        year, month = year - 1, month + 12
    first = local.replace(year=year, month=month, day=1, hour=0, minute=0, second=0, microsecond=0)
    days = calendar.monthrange(year, month)[1]
    following = first.replace(day=days).timestamp() + 86400
    return first.timestamp(), min(following, now) if months_back == 0 else following


class Report:
    """One period's figures: capacity per tool (most pressed first), commit advice and the totals, as the API returns them."""

    def __init__(
        self,
        start: float,
        end: float,
        billing_days: int,
        tools: list[dict[str, Any]],
        advice: list[dict[str, Any]],
        totals: dict[str, Any] | None = None,
    ):
        self.start, self.end, self.billing_days = start, end, billing_days
        self.tools, self.advice = tools, advice
        self.totals: dict[str, Any] = totals or {}

    def tool_names(self) -> set[str]:
        """Return the names of the tools the report has a row for."""
        return {entry["tool"] for entry in self.tools}

    def period(self) -> dict[str, str]:
        """Return the period as the API shows it: ISO times in UTC."""
        return {"from": iso(self.start), "to": iso(self.end)}


class CapacityService:
    """Runs the analyses over the stored sessions and denials, each period at most once per version of the data."""

    def __init__(
        self,
        store: Store,
        pool: LicensePool,
        history_days: float,
        billing_days: int,
        clock: Callable[[], float] = time.time,
        runner: Runner | None = None,
        true_denial_minutes: float = TRUE_DENIAL_MINUTES,
        groups: Callable[[], GroupMapping] = GroupMapping,
        currency: str = "",
    ) -> None:
        self.store, self.pool, self.clock = store, pool, clock
        self.groups, self.currency = groups, currency  # who is in which group now (the directory's), the money's unit
        self.history_days, self.billing_days = history_days, billing_days
        self.gap = true_denial_minutes * 60.0  # a user's denials of a tool this close to the first count once
        # A database is analysed in a process of its own (runners.py says why); an in-memory one here.
        self.runner: Runner = runner or analysis_runner(store)
        self._cache: OrderedDict[tuple[Any, ...], Any] = OrderedDict()
        self._lock = threading.Lock()
        # One analysis at a time: two tabs asking for the same period wait for one result instead of doubling the work;
        # the grid and a clicked tool's figures go before the sections below them (turns.py).
        self._compute = Turns()

    def warm(self) -> None:
        """Start the analysis process now, so it has read the history before the first query comes."""
        self.runner.start()

    def stop(self) -> None:
        """Stop the analysis process."""
        self.runner.stop()

    @property
    def longest(self) -> float:
        """The longest period the history holds, in seconds."""
        return self.history_days * 86400

    def specs(self) -> dict[str, Spec]:
        """Return each tool's limits and prices from the pool's inventory (None where it has none)."""
        return self._inventory(None)[0]

    def _inventory(self, wanted: Collection[str] | None) -> tuple[dict[str, Spec], dict[str, int]]:
        """Return the specs and the requests queued now of the pool's tools (of `wanted` only when given)."""
        status = self.pool.status()
        if wanted is not None:
            status = [entry for entry in status if entry["tool"] in wanted]
        specs = {
            entry["tool"]: Spec(entry["total"], entry["commit"], entry["commit_price"], entry["overage_price_per_license"])
            for entry in status
        }
        return specs, {entry["tool"]: int(entry.get("queued") or 0) for entry in status}

    def _cached(self, key: tuple[Any, ...], build: Callable[[], Any], urgent: bool = False) -> Any:
        """Return the value of `key` for the current data, building it at most once per version of the data.

        An `urgent` build (what a person waits on: the grid, a clicked tool) goes before the others waiting to build.

        Live traffic changes the data several times a second; a report is then still served for REUSE_SECONDS after
        it was built, so a page of long periods is not recomputed on every click while licenses come and go.
        """
        version = data_version(self.store)
        with self._lock:
            entry = self._cache.get(key)
            if entry is not None and (entry[0] == version or self.clock() - entry[1] < REUSE_SECONDS):
                self._cache.move_to_end(key)
                return entry[2]
        with self._compute.turn(urgent):
            with self._lock:
                entry = self._cache.get(key)
                if entry is not None and (entry[0] == version or self.clock() - entry[1] < REUSE_SECONDS):
                    return entry[2]
            value = build()
            with self._lock:
                self._cache[key] = (version, self.clock(), value)
                self._cache.move_to_end(key)
                while len(self._cache) > CACHE_SIZE:
                    self._cache.popitem(last=False)
            return value

    def group_names(self, by: GroupKey = "group") -> list[str]:
        """Return the names a `group=` filter (by group) or the chargeback (`by`) may show: the mapping's, and UNASSIGNED."""
        return sorted({*self.groups().groups(by), UNASSIGNED})

    def _only(self, group: str | None) -> tuple[tuple[str, GroupMapping] | None, tuple[str, str] | None]:
        """Return the jobs' group filter and its part of a cache key (the group and the mapping's fingerprint)."""
        if group is None:
            return None, None
        mapping = self.groups()
        if group != UNASSIGNED and group not in mapping.groups("group"):
            raise GroupError("group: no such group in the user-group mapping")
        return (group, mapping), (group, mapping.fingerprint)

    def report(self, start: float, end: float, tools: Collection[str] | None = None, group: str | None = None) -> Report:
        """Return the capacity figures and commit advice of [start, end), of `tools` and of `group`'s users when given."""
        wanted = tuple(sorted(set(tools))) if tools else None
        only, scope = self._only(group)

        def build() -> Report:
            # The queue is the pool's now: the store keeps no history of it.
            specs, queued = self._inventory(wanted)
            days = self.billing_days
            params = {"start": start, "end": end, "tools": wanted, "specs": specs, "billing_days": days, "gap": self.gap}
            rows, advice, totals = self.runner.run("report", **params, queued=queued, only=only)
            return Report(start, end, days, rows, advice, totals)

        report: Report = self._cached(("report", start, end, wanted, scope), build, urgent=True)
        return report

    def detail(self, tool: str, start: float, end: float, zone: str, group: str | None = None) -> dict[str, Any]:
        """Return one tool's duration curve, hour-of-week heatmap and denials over time for [start, end)."""
        bin_seconds = 3600 if end - start <= 7 * 86400 else 86400
        only, scope = self._only(group)

        def build() -> dict[str, Any]:
            params = {"tool": tool, "start": start, "end": end, "zone": zone, "bin_seconds": bin_seconds, "only": only}
            result: dict[str, Any] = self.runner.run("detail", **params)
            return result

        detail: dict[str, Any] = self._cached(("detail", tool, start, end, zone, scope), build, urgent=True)
        return detail

    def _period(self, start: float, end: float) -> dict[str, str]:
        return {"from": iso(start), "to": iso(end)}

    def recommendations(
        self, start: float, end: float, tools: Collection[str] | None = None, group: str | None = None
    ) -> dict[str, Any]:
        """Return what to buy, drop or keep per tool of [start, end): {"from", "to", "tools", "totals"}."""
        wanted = tuple(sorted(set(tools))) if tools else None
        only, scope = self._only(group)
        report = self.report(start, end, tools, group)  # outside build: _cached computes one thing at a time

        def build() -> dict[str, Any]:
            rows = [{key: row[key] for key in _DEMAND_FIELDS} for row in report.tools]
            advice = [{key: tip.get(key) for key in ("tool", "commit", "best_commit", "saving")} for tip in report.advice]
            specs = self._inventory(wanted)[0]
            params = {"start": start, "end": end, "tools": wanted, "specs": specs, "gap": self.gap}
            result = self.runner.run("recommendations", **params, rows=rows, advice=advice, only=only)
            return {**self._period(start, end), **result}

        answer: dict[str, Any] = self._cached(("recommendations", start, end, wanted, scope), build)
        return answer

    def users(
        self, start: float, end: float, tools: Collection[str] | None = None, limit: int = 50, group: str | None = None
    ) -> dict[str, Any]:
        """Return the top `limit` users of [start, end) by license-hours, with real names: {"from", "to", "users"}."""
        wanted = tuple(sorted(set(tools))) if tools else None
        only, scope = self._only(group)

        def build() -> dict[str, Any]:
            found = self.runner.run("users", start=start, end=end, tools=wanted, gap=self.gap, limit=limit, only=only)
            return {**self._period(start, end), "users": found}

        answer: dict[str, Any] = self._cached(("users", start, end, wanted, limit, scope), build)
        return answer

    def estate(self, start: float, end: float, zone: str, group: str | None = None) -> dict[str, Any]:
        """Return the estate's hour-of-week heatmap of [start, end) in `zone`: {"days", "hours", "utilization", "at_total"}."""
        only, scope = self._only(group)

        def build() -> dict[str, Any]:
            params = {"start": start, "end": end, "specs": self.specs(), "zone": zone, "only": only}
            result: dict[str, Any] = self.runner.run("estate", **params)
            return result

        answer: dict[str, Any] = self._cached(("estate", start, end, zone, scope), build)
        return answer

    def chargeback(
        self, start: float, end: float, tools: Collection[str] | None = None, by: GroupKey = "group"
    ) -> dict[str, Any]:
        """Return the cost of [start, end) split over groups or cost centres (`by`), as GET /analytics/chargeback answers."""
        if by not in GROUP_KEYS:
            raise GroupError("by: must be group or cost_centre")
        wanted = tuple(sorted(set(tools))) if tools else None
        mapping = self.groups()

        def build() -> dict[str, Any]:
            specs = self._inventory(wanted)[0]
            params = {"start": start, "end": end, "tools": wanted, "specs": specs, "billing_days": self.billing_days}
            result: dict[str, Any] = self.runner.run("chargeback", **params, mapping=mapping, by=by, currency=self.currency)
            return result

        answer: dict[str, Any] = self._cached(("chargeback", start, end, wanted, by, mapping.fingerprint), build)
        return answer

    def user(self, name: str, start: float, end: float) -> dict[str, Any]:
        """Return one user's license-hours, denials, true denials and overage borrows over [start, end), per tool too."""

        def build() -> dict[str, Any]:
            result: dict[str, Any] = self.runner.run("user", name=name, start=start, end=end, gap=self.gap)
            return result

        answer: dict[str, Any] = self._cached(("user", name, start, end), build)
        return answer


# What the recommendations take of each capacity row.
_DEMAND_FIELDS = ("tool", "total", "commit", "peak_in_use", "seconds_at_total")


CSV_COLUMNS: Sequence[str] = (
    "tool",
    "total",
    "commit",
    "peak_in_use",
    "avg_in_use",
    "seconds_at_or_above_commit",
    "seconds_at_total",
    "p50",
    "p90",
    "p95",
    "p99",
    "p100",
    "borrows",
    "overage_borrows",
    "overage_cost",
    "denials",
    "true_denials",
    "denied_users",
    "distinct_users",
    "best_commit",
    "saving",
    "share_at_total",
    "peak_share",
    "queued",
    "pressure_rank",
)
RECOMMENDATION_COLUMNS: Sequence[str] = ("tool", "action", "licenses", "reason", "saving", "denials_served")
CHARGEBACK_COLUMNS: Sequence[str] = ("group", "tool", "license_hours", "commit_share", "overage_cost", "total", "currency")
# The CSV's labels for a group's row over all its tools, and for the estate's row over all groups.
ALL_TOOLS, ALL_GROUPS = "(all tools)", "(all groups)"
USER_COLUMNS: Sequence[str] = ("user", "license_hours", "denials", "true_denials", "overage_borrows", "tools")


def table_rows(report: Report) -> list[dict[str, Any]]:
    """Return one flat row per tool: the capacity figures, coverage columns and the commit advice."""
    advice = {entry["tool"]: entry for entry in report.advice}
    rows = []
    for entry in report.tools:
        row = {key: value for key, value in entry.items() if key not in ("coverage", "top_users")}
        row.update(entry["coverage"] or {})
        tip = advice.get(entry["tool"], {})
        row["best_commit"] = tip.get("best_commit")
        row["saving"] = tip.get("saving")
        rows.append(row)
    return rows


def chargeback_rows(answer: Mapping[str, Any]) -> list[dict[str, Any]]:
    """Return the chargeback as flat rows: per group its tools then its total (ALL_TOOLS), and last the estate's."""
    money = ("license_hours", "commit_share", "overage_cost", "total")
    rows = []
    for group in answer["groups"]:
        for tool in group["tools"]:
            rows.append({"group": group["group"], **tool, "currency": answer["currency"]})
        rows.append({"group": group["group"], "tool": ALL_TOOLS, **{k: group[k] for k in money}, "currency": answer["currency"]})
    totals = answer["totals"]
    rows.append(
        {
            "group": ALL_GROUPS,
            "tool": ALL_TOOLS,
            "license_hours": sum(group["license_hours"] for group in answer["groups"]),
            "commit_share": totals["commit_cost"],
            "overage_cost": totals["overage_cost"],
            "total": totals["total"],
            "currency": answer["currency"],
        }
    )
    return rows
