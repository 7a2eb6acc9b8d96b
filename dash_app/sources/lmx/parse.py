"""The output of X-Formation `lmxendutil -licstat -host HOST -port PORT` (LM-X v4 and v5 servers) into a StatusReport."""

# What lmxendutil -licstat prints (the public samples are named in tests/fixtures/lmx/README.md):
#
#   LM-X End-user Utility v3.32
#   ++++++++++++++++++++++++++++++++++++++++
#   LM-X License Server on 6200@licserv0013.com:
#   Server version: v5.1 Uptime: 3 day(s) 12 hour(s) 0 min(s) 51 sec(s)
#   ----------------------------------------
#   Feature: HyperWorks Version: 21.0 Vendor: ALTAIR
#   Start date: 2022-02-17 Expire date: 2023-01-31
#   Key type: EXCLUSIVE License sharing: CUSTOM VIRTUAL
#   25000 of 1000000 license(s) used:
#   25000 license(s) used by sssaah@RD0082406 [138.106.154.220]
#   Login time: 2022-02-18 09:26   Checkout time: 2022-02-18 09:26
#   Shared on custom string: sssaah:RD0082406
#
# "N of M license(s) used" is the server's own count; each "N license(s) used by user@host [ip]" is a checkout, dated
# by the "Checkout time" on its next line (a borrowed license shows "Borrow expire time" there instead, and is dated
# by its login). One feature may be listed more than once (versions, keys): its Feature adds them up. A server
# nobody answers on gives "There are no license server(s) available." (and the exit status says the rest).

from __future__ import annotations

import datetime
import re

from dash_app.sources.lmstat.dates import CLOCK, MIXED, UNSEEN, day_start
from dash_app.sources.lmstat.parse import MAX_COUNT, later_expiry, odd_breaks
from dash_app.sources.status import Checkout, Feature, StatusReport, UnparsableOutput

_FEATURE = re.compile(r"Feature: (\S+) Version: (\S*) Vendor: (\S+)")
_USED = re.compile(r"(\d+) of (\d+) license\(s\) used:?")
_DATE = re.compile(r"\d{4}-\d\d-\d\d")
_STAMP = re.compile(r"\d{4}-\d\d-\d\d \d\d:\d\d")
# Every line of an answer split by "\n" alone, in one pass: a plain checkout (blank lines, "N license(s) used by
# user@host [ip]", its "Login time: ... Checkout time: D T" and what it is shared on) in the first four groups, as the
# lines one by one read it; any other line in the last group.
_LINES = re.compile(
    r"^(?:(?:[^\S\n]*\n)*[^\S\n]*(\d+) license\(s\) used by ([^\s@\[]+)@([^\s@\[]+) \[[^\n]*\n"
    r"[^\S\n]*Login time:[^\S\n]*\d{4}-\d\d-\d\d \d\d:\d\d[^\S\n]+Checkout time:[^\S\n]*(\d{4}-\d\d-\d\d \d\d:\d\d)[^\n]*"
    r"(?:\n[^\S\n]*Shared on [^\S\n]*\S[^\n]*)?|([^\n]*))(?:\n|\Z)",
    re.MULTILINE,
)
_SECONDS = {f"{s:02d}": s for s in range(60)}  # a time's seconds as printed
_UNLIMITED = 2**31 - 1  # what LM-X prints as the count of a feature without a limit
_NEVER = ("NONE", "PERMANENT", "NEVER")
# Words of a failed answer: lmxendutil's own ("There are no license server(s) available.") and its connect errors.
_FAILED = re.compile(r"no license server|unable to|cannot|could not|failed|refused|timed? ?out|error", re.IGNORECASE)


class IsoTimes:
    """Epoch seconds of the dated times a server prints ("2022-02-18 09:26", "2024-09-17 17:59:34"), each minute once."""

    def __init__(self, tz: datetime.tzinfo | None) -> None:
        self._tz = tz
        self.minutes: dict[str, float | None] = {}  # "YYYY-MM-DD HH:MM" -> its epoch seconds (None: no such time)
        self._days: dict[str, float | None] = {}  # "YYYY-MM-DD" -> _day() of it

    def stamp(self, text: str) -> float | None:
        """Return the epoch seconds of "YYYY-MM-DD HH:MM[:SS]" in the servers' time zone, None if it is no such time."""
        # Many checkouts share a minute, few a second: the minute is worked out once, its seconds added (no clock
        # change falls inside a minute). A time cut short ("09:2", "09:29:3") is no time.
        minutes = self.minutes
        if len(text) != 19:
            base = minutes.get(text, UNSEEN)  # a minute seen before: the common case, read as it is
            if base is UNSEEN and len(text) == 16:
                base = minutes[text] = self._resolve(text)
            return None if base is UNSEEN else base
        second = _SECONDS.get(text[17:]) if text[16] == ":" else None
        if second is None:
            return None
        minute = text[:16]
        base = minutes.get(minute, UNSEEN)
        if base is UNSEEN:
            base = minutes[minute] = self._resolve(minute)
        return None if base is None else base + second

    def _resolve(self, minute: str) -> float | None:
        offset = CLOCK.get(minute[11:]) if minute[10:11] == " " else None
        if offset is not None:  # a time of day: worked out once per day, its 0:00 and the seconds since
            day = minute[:10]
            start = self._days.get(day, UNSEEN)
            if start is UNSEEN:
                start = self._days[day] = self._day(day)
            if start is not MIXED:
                return None if start is None else start + offset
        moment = self._moment(minute) if _STAMP.fullmatch(minute) is not None else None
        # Naive (tz None) is read as this machine's local time, like every other polled server's times.
        return None if moment is None else moment.timestamp()

    def _day(self, day: str) -> float | None:
        """Return day_start() of a date "YYYY-MM-DD" (MIXED: its minutes one by one), None if it is no date."""
        first = self._moment(day) if _DATE.fullmatch(day) is not None else None
        return None if first is None else day_start(first)

    def _moment(self, text: str) -> datetime.datetime | None:
        """Return "YYYY-MM-DD[ HH:MM]" as a moment in the servers' time zone (naive for None), None if it is none."""
        try:
            moment = datetime.datetime.fromisoformat(text)
        except ValueError:
            return None
        return moment if self._tz is None else moment.replace(tzinfo=self._tz)


def iso_expiry(text: str) -> str | None:
    """Return an expiry date as printed ("2023-01-31", "2025-01-01 00:59:00", "NONE") as ISO date or "permanent"."""
    text = text.strip()
    if text.upper() in _NEVER:
        return "permanent"
    day = text[:10]
    if _DATE.fullmatch(day) is None:
        return None
    try:
        return datetime.date.fromisoformat(day).isoformat()
    except ValueError:
        return None


class _Totals:
    """One feature's licenses over every time it is listed, added up: the server's own figures."""

    __slots__ = ("vendor", "issued", "in_use", "expiry", "whole")
    issued: int | None
    expiry: str | None

    def __init__(self, vendor: str) -> None:
        self.vendor, self.issued, self.in_use, self.expiry = vendor, 0, 0, None
        self.whole = False  # every listing of it so far has its "N of M" line (a cut-off one does not)

    def count(self, in_use: int, issued: int | None) -> None:
        """Add one listing's "N of M": an unlimited one makes the feature uncounted."""
        self.in_use += in_use
        self.issued = None if issued is None or self.issued is None else self.issued + issued
        self.whole = True


class _Reader:
    """One lmxendutil output being read line by line: the feature being read and the checkout waiting for its time."""

    def __init__(self, tz: datetime.tzinfo | None) -> None:
        self.report = StatusReport(up=True)
        self.times = IsoTimes(tz)
        self.totals: dict[str, _Totals] = {}
        self.server = False  # "LM-X License Server on ..." seen: an answer from a server
        self.version = "UP"  # the server's version, said for every vendor it serves
        self.feature: tuple[str, str, str] | None = None  # (name, version, vendor) of the block being read
        self.waiting: tuple[str, str | None, int] | None = None  # (user, host, licenses) of a checkout without its time
        self.failure: str | None = None  # the first line saying why there is no answer
        self.malformed = 0

    def read(self, text: str) -> StatusReport:
        """Read every line of `text`; return the report they make."""
        if "\r" in text:
            text = text.replace("\r\n", "\n")  # one line break to splitlines() as to the lines' regex
        if not odd_breaks(text):
            self.read_lines(text)
        else:  # line breaks other than "\n": the lines one by one
            for line in map(str.strip, text.splitlines()):
                self.line(line)
        return self.finish()

    def read_lines(self, text: str) -> None:
        """Read the lines of `text`, split by "\\n" alone: each plain checkout's lines in one regex, the others one by one."""
        checkouts, new, times, line, malformed = self.report.checkouts, tuple.__new__, self.times, self.line, 0
        minutes, feature = times.minutes, self.feature
        for count, user, host, start, other in _LINES.findall(text):
            if not count:  # not a plain checkout
                line(other.strip())
                feature = self.feature
                continue
            if self.waiting is not None:
                self.drop_waiting()
            licenses = int(count)
            if licenses > MAX_COUNT or feature is None:
                malformed += 1
                continue
            started = minutes.get(start, UNSEEN)
            if started is UNSEEN:
                started = times.stamp(start)
            if started is None:
                malformed += 1
                continue
            name, version, vendor = feature
            checkouts.append(new(Checkout, (name, user, host, None, version or None, None, started, licenses, vendor)))
        self.malformed += malformed

    def line(self, line: str) -> None:
        """Read one line (stripped; an empty one says nothing)."""
        first = line[:1]  # "" for a blank line
        if first.isdigit():
            (self.used_by if " used by " in line else self.used)(line)
        elif first == "L" and line.startswith("Login time:"):
            self.checkout_time(line)
        elif first and (first != "S" or not line.startswith("Shared on ")):  # what it is shared on: nothing held
            self.other(line)

    def other(self, line: str) -> None:
        """Read a line that is neither a count nor a checkout: a feature, its dates, the server, or an error."""
        self.drop_waiting()
        if line.startswith("Feature:"):
            m = _FEATURE.match(line)
            self.feature = (m.group(1), m.group(2), m.group(3)) if m is not None else None
            if m is None:
                self.malformed += 1
            else:
                self.totals.setdefault(m.group(1), _Totals(m.group(3))).whole = False  # until its count is read
                self.report.vendors[m.group(3)] = self.version
        elif "Expire date:" in line and self.feature is not None:
            totals = self.totals[self.feature[0]]
            totals.expiry = later_expiry(totals.expiry, iso_expiry(line.partition("Expire date:")[2]))
        elif line.startswith("LM-X License Server on "):
            self.server = True
        elif line.startswith("Server version:"):
            self.version = (line.split() + ["", ""])[2] or "UP"
        elif self.failure is None and not self.server and _FAILED.search(line):
            self.failure = line

    def used(self, line: str) -> None:
        """Read "N of M license(s) used": the server's count of the feature being read."""
        m = _USED.fullmatch(line)
        if m is None or self.feature is None:
            self.malformed += 1
            return
        issued = int(m.group(2))
        self.totals[self.feature[0]].count(int(m.group(1)), None if issued >= _UNLIMITED else issued)

    def used_by(self, line: str) -> None:
        """Read "N license(s) used by user@host [ip]": a checkout, kept until its time comes on the next line."""
        self.drop_waiting()
        count, by, who = line.partition(" license(s) used by ")
        if not by or not count.isdigit() or int(count) > MAX_COUNT or self.feature is None:
            self.malformed += 1
            return
        user, at, host = who.partition(" [")[0].rpartition("@")
        self.waiting = (user, host, int(count)) if at and user and host else (who, None, int(count))

    def checkout_time(self, line: str) -> None:
        """Read "Login time: D T   Checkout time: D T" (or a borrow's expiry): the waiting checkout's start."""
        waiting, feature = self.waiting, self.feature
        self.waiting = None
        if waiting is None or feature is None:
            return
        at = line.find("Checkout time:")
        # A borrowed license's line gives its borrow's expiry instead: it was taken at its login. A line with neither
        # is cut short, and its login is no start.
        when = line[at + 14 :] if at >= 0 else line[11:] if "Borrow expire time:" in line else ""
        started = self.times.stamp(when.lstrip()[:16])
        if started is None:
            self.malformed += 1
            return
        user, host, licenses = waiting
        name, version, vendor = feature
        self.report.checkouts.append(Checkout(name, user, host, None, version or None, None, started, licenses, vendor))

    def drop_waiting(self) -> None:
        """A checkout line not followed by its time (a cut-off or garbled answer) is not read as a checkout."""
        if self.waiting is not None:
            self.waiting = None
            self.malformed += 1

    def finish(self) -> StatusReport:
        """Return the report, or a down one if lmxendutil reached no server; raise UnparsableOutput if neither."""
        self.drop_waiting()
        if not self.server:
            if self.failure is not None:
                return StatusReport(up=False, error=self.failure)
            raise UnparsableOutput("no lmxendutil -licstat report: expected 'LM-X License Server on PORT@HOST'")
        report = self.report
        report.malformed = self.malformed
        for name, totals in self.totals.items():
            if totals.whole:
                report.features[name] = Feature(name, totals.vendor, totals.issued, totals.in_use, expiry=totals.expiry)
        # A feature listed without its count (an answer cut off in its block) is left out, checkouts and all: what
        # its server holds is not known, so nothing of it may be read as returned.
        if len(report.features) < len(self.totals):
            report.checkouts = [c for c in report.checkouts if c.feature in report.features]
        report.count_listed()
        return report


def parse_lmx(text: str, now: float, tz: datetime.tzinfo | None = None) -> StatusReport:
    """Parse the output of `lmxendutil -licstat` polled at `now`, its times printed in `tz` (None: local)."""
    del now  # LM-X prints whole dates: a start needs no poll time to find its year
    return _Reader(tz).read(text)
