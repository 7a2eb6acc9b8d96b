"""The reports file (`--reports FILE`): read, checked whole at start, and turned into typed report rules."""

from __future__ import annotations

import re
import zoneinfo
from collections.abc import Callable
from dataclasses import dataclass
from datetime import time
from typing import Any

from dash_app.alerts.rules import url_list_problem
from dash_app.config import ConfigError
from dash_app.jsonfile import read_json

MONTH, WEEK, DAY = "month", "week", "day"
EVERY = (MONTH, WEEK, DAY)
LAST_MONTH, LAST_WEEK, YESTERDAY = "last-month", "last-week", "yesterday"
PERIODS = (LAST_MONTH, LAST_WEEK, YESTERDAY)
SUMMARY, CAPACITY, RECOMMENDATIONS, CHARGEBACK = "summary", "capacity", "recommendations", "chargeback"
CONTENTS = (SUMMARY, CAPACITY, RECOMMENDATIONS, CHARGEBACK)
WEEKDAYS = ("monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday")
# Day 29 to 31 are missing from some months: a monthly report is due on a day every month has.
LAST_MONTH_DAY = 28
FIELDS = ("name", "every", "at", "tz", "period", "to", "content", "day")
_AT = re.compile(r"^([01]\d|2[0-3]):([0-5]\d)(?::([0-5]\d))?$")


class ReportsError(ConfigError):
    """The reports file cannot be used; the message is one line naming the file, the report and the field."""


@dataclass(frozen=True)
class ReportRule:
    """One report: when it is due (every, day, at, in tz), the period it covers, where it goes and what it holds."""

    name: str
    every: str
    at: time
    tz: str
    period: str
    to: tuple[str, ...]  # apprise URLs, one channel each
    content: tuple[str, ...]
    day: int = 1  # the day of the month (every month, 1 to 28) or of the week (every week, 1 = Monday)

    @property
    def zone(self) -> zoneinfo.ZoneInfo:
        """The report's time zone."""
        return zoneinfo.ZoneInfo(self.tz)


def parse_reports(data: Any, check_url: Callable[[str], str | None], where: str = "reports") -> tuple[ReportRule, ...]:
    """Return the reports of a parsed reports document, or raise ReportsError naming what is wrong."""
    if not isinstance(data, list):
        raise ReportsError(f"{where}: expected a JSON list of reports")
    reports: list[ReportRule] = []
    names: set[str] = set()
    for n, entry in enumerate(data):
        report = _report(f"{where}: report {n + 1}", entry, check_url)
        if report.name in names:
            raise ReportsError(f"{where}: report {n + 1}: the name '{report.name}' is used twice")
        names.add(report.name)
        reports.append(report)
    return tuple(reports)


def _report(where: str, entry: Any, check_url: Callable[[str], str | None]) -> ReportRule:
    if not isinstance(entry, dict):
        raise ReportsError(f"{where}: expected an object")
    name = entry.get("name")
    if not isinstance(name, str) or not name.strip() or len(name) > 100 or not name.isprintable():
        raise ReportsError(f"{where}: 'name' must be a short printable text")
    where = f"{where} ('{name}')"
    unknown = set(entry) - set(FIELDS)
    if unknown:
        raise ReportsError(f"{where}: unknown field '{sorted(unknown)[0]}'")
    for required in ("every", "at", "period", "to"):
        if required not in entry:
            raise ReportsError(f"{where}: missing field '{required}'")
    every = entry["every"]
    if every not in EVERY:
        raise ReportsError(f"{where}: 'every' must be one of {', '.join(EVERY)}")
    at = entry["at"]
    match = _AT.match(at) if isinstance(at, str) else None
    if match is None:
        raise ReportsError(f"{where}: 'at' must be a time of day as HH:MM (or HH:MM:SS), e.g. 07:00")
    tz = entry.get("tz", "UTC")
    if not isinstance(tz, str) or not _zone_exists(tz):
        raise ReportsError(f"{where}: 'tz' must be an IANA time zone name, e.g. Europe/Berlin")
    period = entry["period"]
    if period not in PERIODS:
        raise ReportsError(f"{where}: 'period' must be one of {', '.join(PERIODS)}")
    return ReportRule(
        name,
        every,
        time(int(match.group(1)), int(match.group(2)), int(match.group(3) or 0)),
        tz,
        period,
        _urls(where, entry["to"], check_url),
        _content(where, entry.get("content", list(CONTENTS))),
        _day(where, every, entry.get("day")),
    )


def _zone_exists(tz: str) -> bool:
    try:
        zoneinfo.ZoneInfo(tz)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError):
        return False
    return True


def _urls(where: str, value: Any, check_url: Callable[[str], str | None]) -> tuple[str, ...]:
    problem = url_list_problem(value, check_url, "to", "'to'", at_least_one=True)
    if problem is not None:
        raise ReportsError(f"{where}: {problem}")
    return tuple(value)


def _content(where: str, value: Any) -> tuple[str, ...]:
    if not isinstance(value, list) or not value or any(item not in CONTENTS for item in value):
        raise ReportsError(f"{where}: 'content' must be a list of {', '.join(CONTENTS)}, at least one")
    return tuple(dict.fromkeys(value))


def _day(where: str, every: str, value: Any) -> int:
    """Return the report's day: of the month (1 to 28) or of the week (1 = Monday); 1 when not given."""
    if value is None:
        return 1
    if every == MONTH:
        if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= LAST_MONTH_DAY:
            raise ReportsError(f"{where}: 'day' must be a day of the month from 1 to {LAST_MONTH_DAY}")
        return value
    if every == WEEK:
        if not isinstance(value, str) or value.lower() not in WEEKDAYS:
            raise ReportsError(f"{where}: 'day' must be a day of the week, e.g. monday")
        return WEEKDAYS.index(value.lower()) + 1
    raise ReportsError(f"{where}: 'day' is for reports every week or month")


def load_reports(path: str | None, check_url: Callable[[str], str | None]) -> tuple[ReportRule, ...]:
    """Read and check the reports file at `path` (None: no reports)."""
    if not path:
        return ()
    data = read_json(path, f"reports {path}", ReportsError)
    return parse_reports(data, check_url, f"reports {path}")
