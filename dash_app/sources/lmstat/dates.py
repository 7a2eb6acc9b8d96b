"""Dates as license servers print them: expiry dates, and start times without a year (lmstat, rlmstat)."""

from __future__ import annotations

import datetime
import re

_MONTHS = {m: i for i, m in enumerate(("jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec"), 1)}
_WEEKDAYS = {d: i for i, d in enumerate(("mon", "tue", "wed", "thu", "fri", "sat", "sun"))}
_DAY = 86400.0
# The latest a yearless start time may fall after the poll: a server clock a little ahead of ours, or in a zone ahead.
_AHEAD = _DAY
_EXPIRY = re.compile(r"(\d{1,2})-([A-Za-z]{3})-(\d{1,4})")
MIXED = float("nan")  # a day whose times are worked out one by one (compared by identity, as UNSEEN)
# The seconds since 0:00 of each time of day as servers print it, "9:04" or "09:04".
CLOCK = {f"{h:{w}}:{m:02d}": h * 3600 + m * 60 for h in range(24) for m in range(60) for w in ("", "02d")}
_LAST_MINUTE = 86340.0  # 23:59 after 0:00 on a day without a clock change
UNSEEN = float("-inf")  # no start time is this: marks a start text not yet in the cache (None there: no such date)


def parse_expiry(text: str) -> str | None:
    """Return an expiry as printed ("31-dec-2026", "permanent(no expiration date)", "1-jan-0") as ISO date or "permanent"."""
    text = text.strip()
    if text.lower().startswith("permanent"):
        return "permanent"
    m = _EXPIRY.match(text)
    if m is None:
        return None
    day, month, year = int(m.group(1)), _MONTHS.get(m.group(2).lower()), int(m.group(3))
    if month is None:
        return None
    if year == 0:  # both FlexNet and RLM write a year of 0 for a license that never expires
        return "permanent"
    if year < 100:  # old two-digit years ("31-dec-99")
        year += 1900
    try:
        return datetime.date(year, month, day).isoformat()
    except ValueError:
        return None


def later_expiry(a: str | None, b: str | None) -> str | None:
    """Return the later of two expiries (ISO dates or "permanent"), None counting as unknown."""
    if a is None or b == "permanent":
        return b if b is not None else a
    if b is None or a == "permanent":
        return a
    return max(a, b)


def day_start(first: datetime.datetime) -> float:
    """Return the epoch seconds of `first`, a day's 0:00, if its every minute is that and so many minutes more, else MIXED.

    True of every day but those with a clock change; the years are those of polls (far from datetime's limits).
    """
    if not 1900 < first.year < 2200:
        return MIXED
    start = first.timestamp()  # naive (tz None) is read as this machine's local time
    return start if first.replace(hour=23, minute=59).timestamp() - start == _LAST_MINUTE else MIXED


class StartTimes:
    """Epoch seconds of the yearless start times a server prints, each distinct time worked out once per poll."""

    def __init__(self, now: float, tz: datetime.tzinfo | None) -> None:
        self._limit = now + _AHEAD
        self._tz = tz
        self._year = datetime.datetime.fromtimestamp(now, tz).year
        self.seen: dict[str, float | None] = {}  # the start text as printed -> its epoch seconds
        self._days: dict[str, float | None] = {}  # "[Www ]M/D" -> day() of it

    def stamp(self, text: str, month: str, day: str, hour: str, minute: str) -> float | None:
        """Return the epoch seconds of start time `text` (its parts as printed), worked out on its first sight only."""
        stamp = self.seen.get(text, UNSEEN)
        if stamp is UNSEEN:
            weekday = _WEEKDAYS.get(text[:3].lower())
            stamp = self.seen[text] = self.resolve(int(month), int(day), int(hour), int(minute), weekday)
        return stamp

    def text_stamp(self, text: str) -> float | None:
        """Return the epoch seconds of a start time "[Www ]M/D H:MM" (as a regex read it whole), worked out once per day."""
        stamp = self.seen.get(text, UNSEEN)
        if stamp is not UNSEEN:
            return stamp
        head, _, clock = text.rpartition(" ")
        start = self._days.get(head, UNSEEN)
        if start is UNSEEN:
            month, day = head.rpartition(" ")[2].split("/")
            start = self._days[head] = self.day(int(month), int(day), _WEEKDAYS.get(text[:3].lower()))
        if start is MIXED:
            month, day = head.rpartition(" ")[2].split("/")
            return self.stamp(text, month, day, *clock.split(":"))
        offset = CLOCK.get(clock)
        if offset is None:  # no time, or one in other digits than ASCII's
            hour, minute = map(int, clock.split(":"))
            offset = hour * 3600 + minute * 60 if hour <= 23 and minute <= 59 else None
        stamp = self.seen[text] = None if start is None or offset is None else start + offset
        return stamp

    def day(self, month: int, day: int, weekday: int | None) -> float | None:
        """Return the epoch seconds of 0:00 on the day every time of which resolve() puts on one date, as it would.

        None if the date is none; MIXED if its times go to different days or a clock change falls on that day, in any
        year resolve() looks at: each of its times is then worked out alone.
        """
        latest = None
        for year in range(self._year + 1, self._year - 8, -1):
            try:
                first = datetime.datetime(year, month, day, 0, 0, tzinfo=self._tz)
            except ValueError:
                if month == 2 and day == 29:
                    continue
                return None
            start = day_start(first)
            if start is MIXED:
                return MIXED
            end = start + _LAST_MINUTE
            if start > self._limit:
                continue
            if end > self._limit:
                return MIXED
            if weekday is None or first.weekday() == weekday:
                return start
            latest = start if latest is None else latest
        return latest

    def resolve(self, month: int, day: int, hour: int, minute: int, weekday: int | None = None) -> float | None:
        """Return the latest moment with this month, day and time not more than a day after the poll (None if no date).

        With a `weekday` (lmstat prints "Tue 12/20 8:01"), the latest such moment that falls on it, if one does.
        """
        # From next year down: the first one not past the limit is the latest. Feb 29 looks back to a leap year.
        latest = None
        for year in range(self._year + 1, self._year - 8, -1):
            try:
                moment = datetime.datetime(year, month, day, hour, minute, tzinfo=self._tz)
            except ValueError:
                if month == 2 and day == 29:
                    continue
                return None
            stamp = moment.timestamp()  # naive (tz None) is read as this machine's local time
            if stamp > self._limit:
                continue
            if weekday is None or moment.weekday() == weekday:
                return stamp
            latest = stamp if latest is None else latest
        return latest  # no year puts it on that weekday: the latest moment, as without one
