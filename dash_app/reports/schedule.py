"""When a report is due and which period it covers: wall-clock times in the report's zone, across daylight saving.

A report is due on each of its days (every day, its weekday, or its day of the month) when the zone's clock first
shows `at` or later that day: on a day whose clock skips `at` (spring forward) at the moment it skips it, on a day
whose clock shows it twice (fall back) the first time. Days and periods start the same way, at the first instant the
clock shows their midnight. Everything here is a pure function of the report and an instant (epoch seconds).
"""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

from dash_app.reports.rules import LAST_MONTH, LAST_WEEK, MONTH, WEEK, ReportRule

# Every kind of report is due at least once in this many days (a month, from a day 28 to the next one's, and a margin).
_LOOK_DAYS = 64
_MIDNIGHT = time(0, 0)


def wall(zone: ZoneInfo, instant: float) -> datetime:
    """Return the zone's wall-clock time at `instant`, without its zone."""
    return datetime.fromtimestamp(instant, zone).replace(tzinfo=None)


def local_instant(zone: ZoneInfo, day: date, at: time) -> float:
    """Return the first instant at which the zone's clock shows `day` at `at` or later (the transition, in a gap)."""
    wanted = datetime.combine(day, at)
    first = wanted.replace(tzinfo=zone, fold=0).timestamp()
    if wall(zone, first) == wanted:
        return first  # the time exists (fold 0: the first of two, when the clock shows it twice)
    # `at` falls in a gap: fold 0 reads it with the offset before the gap (an instant after it), fold 1 with the one
    # after (an instant before it); the clock passes `at` at the transition between them. Whole seconds: zones move
    # their clocks at whole seconds.
    low = int(wanted.replace(tzinfo=zone, fold=1).timestamp())  # wall(low) < wanted
    high = int(first)  # wall(high) > wanted
    if low > high:
        low, high = high, low
    while high - low > 1:
        middle = (low + high) // 2
        if wall(zone, middle) >= wanted:
            high = middle
        else:
            low = middle
    return float(high)


def is_due_day(report: ReportRule, day: date) -> bool:
    """Say whether the report is due on the local date `day`."""
    if report.every == MONTH:
        return day.day == report.day
    if report.every == WEEK:
        return day.isoweekday() == report.day
    return True


def due_at(report: ReportRule, day: date) -> float:
    """Return the instant the report is due on its day `day`."""
    return local_instant(report.zone, day, report.at)


def last_due(report: ReportRule, now: float) -> tuple[date, float]:
    """Return the latest day the report was due at or before `now`, and that instant."""
    today = wall(report.zone, now).date()
    # From tomorrow: where the clock falls back over midnight, tomorrow's due time may already have passed.
    for back in range(-1, _LOOK_DAYS):
        day = today - timedelta(days=back)
        if is_due_day(report, day):
            instant = due_at(report, day)
            if instant <= now:
                return day, instant
    raise AssertionError("every report is due at least once in _LOOK_DAYS days")


def next_due(report: ReportRule, now: float) -> tuple[date, float]:
    """Return the first day the report is due after `now`, and that instant."""
    today = wall(report.zone, now).date()
    for ahead in range(-1, _LOOK_DAYS):
        day = today + timedelta(days=ahead)
        if is_due_day(report, day):
            instant = due_at(report, day)
            if instant > now:
                return day, instant
    raise AssertionError("every report is due at least once in _LOOK_DAYS days")


def period_dates(period: str, day: date) -> tuple[date, date]:
    """Return the first local date of the period a report due on `day` covers, and the date after its last."""
    if period == LAST_MONTH:
        end = day.replace(day=1)
        return (end - timedelta(days=1)).replace(day=1), end
    if period == LAST_WEEK:
        end = day - timedelta(days=day.weekday())  # this week's Monday
        return end - timedelta(days=7), end
    return day - timedelta(days=1), day


def period_of(report: ReportRule, day: date) -> tuple[float, float]:
    """Return [start, end) in epoch seconds of the period the report due on `day` covers: whole local days."""
    first, after = period_dates(report.period, day)
    return local_instant(report.zone, first, _MIDNIGHT), local_instant(report.zone, after, _MIDNIGHT)


def iso_local(zone: ZoneInfo, instant: float) -> str:
    """Return `instant` as an ISO 8601 time in `zone`, to the second, with its offset."""
    return datetime.fromtimestamp(instant, UTC).astimezone(zone).isoformat(timespec="seconds")
