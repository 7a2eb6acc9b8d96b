"""FlexNet (FlexLM) debug-log lines into license records, dated from the log's own date lines."""

# A debug-log line is `hh:mm:ss (daemon) message`, or with lmgrd's `-datestamp` option
# `yyyy-mm-ddThh:mm:ss+hh:mm (daemon) message`. Plain times carry no date: it comes from `(lmgrd) TIMESTAMP
# m/d/yyyy` lines (every few hours), the lmgrd start banner and the start-up date lines, and a time that jumps
# back by more than an hour is the next day.
#
# LineParser.parse(line) returns None for a line without a license event, MALFORMED for a line that is no
# debug-log line, or a record tuple (kind, ts, tod, vendor, feature, user, host, count, detail): ts in epoch
# seconds (None while the log's date is unknown), tod the seconds since local midnight as written, detail the
# failure reason of a DENIED record.

import re
import time
from datetime import date, datetime
from typing import Any, TypeAlias

# Record kinds.
OUT, IN, DENIED, QUEUED, DEQUEUED, DOWN, DATE = "OUT", "IN", "DENIED", "QUEUED", "DEQUEUED", "DOWN", "DATE"
MALFORMED = "MALFORMED"
# (kind, ts, tod, vendor, feature, user, host, count, detail): feature, user and host are text in a license event's
# record and None in a DOWN or DATE record; detail is a DENIED record's reason.
Record: TypeAlias = tuple[str, float | None, int, str | None, Any, Any, Any, int, Any]
ALL_VENDORS = None  # the vendor of a DOWN record when lmgrd itself stopped or started

# A time that goes back by more than this is the next day; an hour and a minute lets the
# autumn daylight-saving step (one hour back) pass as the same day.
ROLLOVER_BACKSTEP = 3660

_TIME = r"(\d{1,2}:\d\d:\d\d|\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(?:\.\d+)?(?:Z|[+-]\d\d:?\d\d)?)"
_DAEMON = r"\(([^()\s]+)\)"
# The common case in one match: an event with a quoted (or bare) feature and user@host.
_EVENT_LINE = re.compile(
    r"\s*(\d{1,2}:\d\d:\d\d|\d{4}-\d\d-\d\dT[^ ]+) " + _DAEMON + r" (OUT|IN|DENIED|QUEUED|DEQUEUED|UNSUPPORTED): +"
    r"(?:\"([^\"]*)\"|(\S+)) +([^@]*)@(\S*) *(.*)"
)
# The commonest line of all, `OUT:` or `IN:` of one license with a plain time, nothing after user@host, a vendor
# daemon that is no forked copy: every line it matches, _EVENT_LINE matches too, to the same record.
_PLAIN_EVENT = re.compile(r"\s*(\d{1,2}:\d\d:\d\d) \(([^()\s_]+)\) (OUT|IN): +\"([^\"]+)\" +([^@\s]+)@(\S*) *$")
_ENVELOPE = re.compile(r"\s*" + _TIME + " " + _DAEMON + r"(?: (.*))?$")
# Old and short forms without a host: `IN: "feature" user (2 licenses)`.
_EVENT_NO_HOST = re.compile(r"(OUT|IN|DENIED|QUEUED|DEQUEUED|UNSUPPORTED): +(?:\"([^\"]*)\"|(\S+)) +([^\s(\[^]+) *(.*)$")
_EVENT_VERB = re.compile(r"(?:OUT|IN|DENIED|QUEUED|DEQUEUED|UNSUPPORTED):")
_COUNT = re.compile(r"\((\d+) licenses?\)")
# No real checkout takes more licenses than this in one line.
MAX_LICENSES_PER_LINE = 10_000
# `(Licensed number of users already reached. (-4,342:10054 ))`: the text, then (major,minor[:system]).
_REASON = re.compile(r"\(([^()]*?)\s*\((-?\d+),\s*(\d+)[^()]*\)\s*\)")
_BARE_REASON = re.compile(r"\(([^()]{3,})\)\s*$")
_SLASH_DATE = re.compile(r"(\d{1,2})/(\d{1,2})/(\d{4})")
_WORD_DATE = re.compile(r"(?:[A-Z][a-z]{2} )?([A-Z][a-z]{2}) (\d{1,2}) (\d{4})")
_MONTHS = {m: i for i, m in enumerate(("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"), 1)}
_FORKED = re.compile(r"_\d+$")  # `(vendor_2)`: a forked copy of the vendor daemon
_LMGRD_START = re.compile(r"(?:FlexNet Licensing|FLEXnet Licensing|FLEXlm)\b.*\bstarted on\b")
_LMGRD_VENDOR_UP = re.compile(r"(?:Started|REStarted|Restarted) (\S+)")
_LMGRD_VENDOR_DOWN = re.compile(r"(?:(\S+) exited with status|Shutting down (\S+))")
_EXITING = re.compile(r"EXITING (?:DUE TO SIGNAL|WITH CODE)")
_VENDOR_START = re.compile(r"(?:Server started on|(?:FlexNet Licensing|FLEXnet Licensing|FLEXlm) version)")

# How FlexNet's denial reasons map to the dashboard's failure reasons: error number first, then wording.
DENIAL_CATEGORIES = (
    ("exhausted", (-4, -24), ("already reached", "users are queued")),
    ("unknown_tool", (-5, -18), ("no such feature", "does not support this feature")),
    ("policy", (-38, -39, -87), ("exclude list", "include list", "specified in options file", "reserved for others")),
    ("expired", (-10, -31), ("has expired", "start date is in the future")),
    ("version", (-21, -25), ("support this version",)),
)
OTHER_DENIAL = "denied"


def denial_category(code: int | None, text: str) -> str:
    """Return the dashboard failure reason for a FlexNet error number and text."""
    lowered = text.lower()
    for category, codes, _phrases in DENIAL_CATEGORIES:
        if code in codes:
            return category
    for category, _codes, phrases in DENIAL_CATEGORIES:
        if any(phrase in lowered for phrase in phrases):
            return category
    return OTHER_DENIAL


def denial_reason(tail: str) -> str:
    """Return the failure reason of a DENIED line's tail: `category: text (major,minor)`."""
    found = None
    for match in _REASON.finditer(tail):
        found = match  # the reason is the last parenthesised group with an error number
    if found is not None:
        text, major, minor = found.group(1).strip(), int(found.group(2)), found.group(3)
        return f"{denial_category(major, text)}: {text} ({major},{minor})"
    bare = _BARE_REASON.search(_COUNT.sub("", tail).strip())
    if bare is not None:
        text = bare.group(1).strip()
        return f"{denial_category(None, text)}: {text}"
    return OTHER_DENIAL


def vendor_name(daemon: str) -> str:
    """Return the vendor daemon's name without the `_n` of a forked copy."""
    return _FORKED.sub("", daemon) if "_" in daemon else daemon


class LineParser:
    """Parses the lines of one log in order; it keeps the log's current date between lines."""

    def __init__(self, day: int | None = None, last_tod: int | None = None) -> None:
        self.day = day  # proleptic ordinal of the log's current local date, None until known
        self.last_tod = last_tod
        self._tods: dict[str, int] = {}
        self._bases: list[float] = []  # epoch of each local hour of `day`
        self._bases_day: int | None = None

    # --------------------------------------------------------------- dates

    def epoch(self, day: int, tod: int) -> float:
        """Return the epoch seconds of local time `tod` seconds into proleptic day `day`."""
        bases = self._bases if day == self._bases_day else self._hour_bases(day)
        return bases[tod // 3600] + tod % 3600

    def _hour_bases(self, day: int) -> list[float]:
        d = date.fromordinal(day)
        # One mktime per hour of the day, so daylight-saving days come out right.
        self._bases = [time.mktime((d.year, d.month, d.day, h, 0, 0, 0, 0, -1)) for h in range(24)]
        self._bases_day = day
        return self._bases

    def _tod(self, text: str) -> int:
        tod = self._tods.get(text)
        if tod is None:
            h, m, s = text.split(":")
            tod = self._tods[text] = int(h) % 24 * 3600 + int(m) * 60 + int(s)
        return tod

    def _advance(self, tod: int) -> None:
        # Called for every line with a plain time: a big step back is midnight.
        last = self.last_tod
        if self.day is not None and last is not None and tod < last - ROLLOVER_BACKSTEP:
            self.day += 1
        self.last_tod = tod

    def _set_date(self, day: int, tod: int) -> None:
        self.day, self.last_tod = day, tod

    def anchor(self, epoch_seconds: float) -> None:
        """Take the date from a moment (for a log with no date line yet): its local date and time."""
        local = time.localtime(epoch_seconds)
        day = date(local.tm_year, local.tm_mon, local.tm_mday).toordinal()
        self._set_date(day, local.tm_hour * 3600 + local.tm_min * 60 + local.tm_sec)

    def backdate(self, tods: list[int]) -> list[float]:
        """Return epochs for earlier undated times `tods` (in log order), counting days back from the current date."""
        day, later = self.day, self.last_tod
        assert day is not None and later is not None, "backdate needs the current date (see anchor)"
        out = [0.0] * len(tods)
        for i in range(len(tods) - 1, -1, -1):
            tod = tods[i]
            if tod > later + ROLLOVER_BACKSTEP:
                day -= 1
            out[i] = self.epoch(day, tod)
            later = tod
        return out

    def _stamp(self, stamp: str) -> tuple[float | None, int]:
        """Return (ts, tod) for a time field, updating the current date."""
        if len(stamp) <= 8:
            tod = self._tod(stamp)
            self._advance(tod)
            return (self.epoch(self.day, tod) if self.day is not None else None), tod
        parsed = datetime.fromisoformat(stamp)
        tod = parsed.hour * 3600 + parsed.minute * 60 + parsed.second
        day = parsed.date().toordinal()
        self._set_date(day, tod)
        if parsed.tzinfo is None:
            return self.epoch(day, tod) + parsed.microsecond / 1e6, tod
        return parsed.timestamp(), tod

    # --------------------------------------------------------------- lines

    def parse(self, line: str) -> Record | str | None:
        """Return the record of one line, None for a line without one, or MALFORMED."""
        m = _PLAIN_EVENT.match(line)
        if m is not None:
            # The common case, inline (as _stamp and _event would do it): one license out or in, at a plain time.
            stamp, daemon, verb, feature, user, host = m.groups()
            tod = self._tods.get(stamp)
            if tod is None:
                tod = self._tod(stamp)
            last, self.last_tod = self.last_tod, tod
            day = self.day
            if day is None:
                ts = None
            else:
                if last is not None and tod < last - ROLLOVER_BACKSTEP:
                    day = self.day = day + 1
                bases = self._bases if day == self._bases_day else self._hour_bases(day)
                ts = bases[tod // 3600] + tod % 3600
            return (verb, ts, tod, daemon, feature, user, host, 1, None)
        m = _EVENT_LINE.match(line)
        if m is not None:
            stamp, daemon, verb, quoted, bare, user, host, tail = m.groups()
            try:
                ts, tod = self._stamp(stamp)
            except ValueError:
                return MALFORMED
            feature = quoted if quoted is not None else bare
            if user[-1:] == " ":
                user = user.rstrip()
            return self._event(ts, tod, daemon, verb, feature, user, host, tail)
        m = _ENVELOPE.match(line)
        if m is None:
            return None if not line.strip() else MALFORMED
        stamp, daemon, message = m.groups()
        try:
            ts, tod = self._stamp(stamp)
        except ValueError:
            return MALFORMED
        message = message.rstrip() if message else ""
        if _EVENT_VERB.match(message):
            e = _EVENT_NO_HOST.match(message)
            if e is None:
                return MALFORMED
            verb, quoted, bare, user, tail = e.groups()
            return self._event(ts, tod, daemon, verb, quoted if quoted is not None else bare, user, "", tail)
        return self._message(ts, tod, daemon, message)

    def _event(
        self, ts: float | None, tod: int, daemon: str, verb: str, feature: str, user: str, host: str, tail: str | None
    ) -> Record | str:
        vendor = vendor_name(daemon)
        count, detail = 1, None
        if tail:
            tail = tail.rstrip()
            if "^^^" in tail:
                # Verbose logs: `^^^ ver user ip pid handle in_use out_of ... ^^^`; the user may only be there.
                fields = tail.split("^^^")[1].split()
                if not user and len(fields) > 1:
                    user = fields[1]
                tail = tail.split("^^^")[0]
            if "license" in tail:
                c = _COUNT.search(tail)
                if c is not None:
                    count = max(int(c.group(1)), 1)
                    if count > MAX_LICENSES_PER_LINE:
                        return MALFORMED  # a corrupt number must not open millions of borrows
        if not user or not feature:
            return MALFORMED
        if verb == "DENIED" or verb == "UNSUPPORTED":
            detail = denial_reason(tail) if tail else OTHER_DENIAL
            verb = DENIED
        return (verb, ts, tod, vendor, feature, user, host, count, detail)

    def _message(self, ts: float | None, tod: int, daemon: str, message: str) -> Record | None:
        if message.startswith("TIMESTAMP"):
            d = _SLASH_DATE.search(message)
            return self._date_record(ts, tod, daemon, d and _ordinal(int(d.group(3)), int(d.group(1)), int(d.group(2))))
        if daemon == "lmgrd":
            if _LMGRD_START.search(message):
                d = _SLASH_DATE.search(message)
                if d is not None:
                    self._date_from(tod, _ordinal(int(d.group(3)), int(d.group(1)), int(d.group(2))))
                return (DOWN, self._recompute(ts, tod), tod, ALL_VENDORS, None, None, None, 0, None)
            if message.startswith(("Server's System Date and Time:", "(@lmgrd-SLOG@) Start-Date:")):
                d = _WORD_DATE.search(message.split(":", 1)[1])
                day = d and _MONTHS.get(d.group(1)) and _ordinal(int(d.group(3)), _MONTHS[d.group(1)], int(d.group(2)))
                return self._date_record(ts, tod, daemon, day)
            up = _LMGRD_VENDOR_UP.match(message)
            if up is not None:
                return (DOWN, ts, tod, vendor_name(up.group(1)), None, None, None, 0, None)
            down = _LMGRD_VENDOR_DOWN.match(message)
            if down is not None:
                name = down.group(1) or down.group(2)
                vendor = ALL_VENDORS if name == "lmgrd" else vendor_name(name)
                return (DOWN, ts, tod, vendor, None, None, None, 0, None)
            if _EXITING.match(message):
                return (DOWN, ts, tod, ALL_VENDORS, None, None, None, 0, None)
            return None
        if _EXITING.match(message) or _VENDOR_START.match(message):
            return (DOWN, ts, tod, vendor_name(daemon), None, None, None, 0, None)
        return None

    def _date_from(self, tod: int, day: int | None) -> None:
        if day is not None:
            self._set_date(day, tod)

    def _recompute(self, ts: float | None, tod: int) -> float | None:
        return self.epoch(self.day, tod) if self.day is not None else ts

    def _date_record(self, ts: float | None, tod: int, daemon: str, day: int | None) -> Record | None:
        if day is None:
            return None
        self._set_date(day, tod)
        return (DATE, self.epoch(day, tod), tod, vendor_name(daemon), None, None, None, 0, None)


def _ordinal(year: int, month: int, day: int) -> int | None:
    try:
        return date(year, month, day).toordinal()
    except ValueError:
        return None
