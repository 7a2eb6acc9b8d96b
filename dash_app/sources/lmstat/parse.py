"""The output of FlexNet `lmutil lmstat -a -c PORT@HOST` (FlexNet Publisher 11.x) into a StatusReport."""

# What lmstat -a prints, top to bottom (one server shown; a triad lists three server lines):
#
#   lmutil - Copyright (c) 1989-2024 Flexera. All Rights Reserved.
#   Flexible License Manager status on Tue 1/14/2025 10:02
#
#   License server status: 27000@lic01
#       License file(s) on lic01: /opt/flexlm/licenses/lic01.lic:
#
#      lic01: license server UP (MASTER) v11.19.0          (or "lic01: Cannot connect to license server system. (-15,..)")
#
#   Vendor daemon status (on lic01):
#
#        mlm: UP v11.19.0                                  (or "mlm: The desired vendor daemon is down. (-97,121)")
#   Feature usage info:
#
#   Users of FEATURE:  (Total of 10 licenses issued;  Total of 3 licenses in use)
#                                                          (or "(Uncounted, node-locked)", "(Error: 1 licenses, unsupported
#                                                          by licensed server)", " Cannot get users of FEATURE: reason")
#     "FEATURE" v2024.1, vendor: mlm, expiry: 31-dec-2026  (no indent in 11.19; "expiry: permanent(no expiration date)")
#     vendor_string: ...
#     floating license                                     (or "nodelocked license, locked to ...", "uncounted nodelocked ...")
#
#       user host display [vendor_def] (vVERSION) (server/port handle), start Mon 11/30 9:04[, N licenses]
#                                      [  (linger: N / M)][, PID: N]
#       user host display (vVERSION) (server/port handle) queued for N licenses
#   \t2 RESERVATIONs for HOST_GROUP cad (lic01/27000)
#
# A checkout line prints the display and the version only when there is one, so the part before "(v" holds the user,
# the host and maybe a display and a vendor-defined string, separated by single spaces; Windows user names may hold
# spaces too, which lmstat does not quote. A server that cannot be reached gives "lmgrd is not running: Cannot connect
# to license server system. (-15,570:115 ...)" or "Error getting status: Cannot connect to license server system.
# (-15,10:...)" and nothing else.

from __future__ import annotations

import datetime
import re

from dash_app.sources.lmstat.dates import UNSEEN, StartTimes, later_expiry, parse_expiry
from dash_app.sources.status import Checkout, Feature, StatusReport, UnparsableOutput

_USERS_OF = re.compile(r"Users of (\S+?):\s+(.*)")
_TOTALS = re.compile(r"\(Total of (\d+) (?:borrowable )?licenses? issued;\s+Total of (\d+) licenses? in use\)")
_DETAIL = re.compile(r"\"([^\"]*)\" v(\S*?),? vendor: ([^,\s]+)(?:, expiry: (.*))?")
# What follows ", start " in a checkout line: the time, then maybe ", N licenses" (and linger, PID: not needed).
_START = re.compile(r"(\w+ (\d{1,2})/(\d{1,2}) (\d{1,2}):(\d\d))(?:, (\d+) licenses?)?")
_QUEUED = re.compile(r" queued for (\d+) licenses?")
# The commonest checkout line in one match: user, host, display, version, handle and start, nothing left out. Lines it
# does not match (no display, a user name with spaces, a vendor-defined field) take the general way, to the same result.
_PLAIN_USE = re.compile(
    r"(\S+) (\S+) (\S+) \(v([^()\s]+)\) \(([^()\s/]+/\d+ \d+)\), start "
    r"(\w+ (\d{1,2})/(\d{1,2}) (\d{1,2}):(\d\d))(?:, (\d+) licenses?)?"
)
# Every line of an answer split by "\n" alone, in one pass: a plain checkout line (what _PLAIN_USE reads, its start
# time whole) in the first seven groups, any other line in the last. The caller strips the others.
_LINES = re.compile(
    r"^[^\S\n]*(?:(?!Users of )(\S+) (\S+) (\S+) \(v([^()\s]+)\) \(([^()\s/]+/\d+ \d+)\), start "
    r"(\w+ \d{1,2}/\d{1,2} \d{1,2}:\d\d)(?:, (\d+) licenses?)?[^\n]*|([^\n]*))(?:\n|\Z)",
    re.MULTILINE,
)
_RESERVATION = re.compile(r"(\d+) RESERVATIONs? for ")
# No real checkout holds more licenses than this in one line; more is a misread line, not a count.
MAX_COUNT = 1_000_000


def split_head(head: str) -> tuple[str, str | None, str | None]:
    """Return (who, version, handle) from "user host display (vVERSION) (server/port handle)", both parentheses optional."""
    # From the right, with string methods: a regex over the whole line costs several times as much (lazy "who").
    handle = version = None
    if head.endswith(")"):
        i = head.rfind(" (")
        inner = head[i + 2 : -1]
        if i > 0 and "/" in inner and "(" not in inner:
            handle, head = inner, head[:i]
    if head.endswith(")"):
        i = head.rfind(" (v")
        inner = head[i + 3 : -1]
        if i > 0 and inner and " " not in inner and "(" not in inner and ")" not in inner:
            version, head = inner, head[:i]
    return head, version, handle


def split_who(who: str) -> tuple[str, str | None, str | None]:
    """Return (user, host, display) from the "user host [display [vendor_def]]" part of a checkout line."""
    parts = who.split(" ")
    n = len(parts)
    if n <= 3:
        return parts[0], parts[1] if n > 1 else None, parts[2] if n > 2 else None
    # Four words or more: a user name with spaces (Windows), or a vendor-defined string after the display. A display
    # is most often the host itself or "host:N", which marks where the host is; failing that, one-word user.
    for i in range(1, n - 1):
        host, display = parts[i], parts[i + 1]
        if display == host or display.startswith(host + ":"):
            return " ".join(parts[:i]), host, display
    return parts[0], parts[1], parts[2]


def odd_breaks(text: str) -> bool:
    """True if `text` holds a line break of str.splitlines() other than "\\n": a regex of lines splits at "\\n" alone."""
    # One substring test each: a regex character class takes several times as long over megabytes of text.
    return any(c in text for c in "\r\x0b\x0c\x1c\x1d\x1e") or (not text.isascii() and any(c in text for c in "\x85\u2028\u2029"))


class _Open:
    """The feature whose block is being read: its counts as the header line says, its detail lines' vendor and expiry."""

    __slots__ = ("name", "vendor", "issued", "in_use", "expiry", "error", "uncounted", "held", "reserved", "queued", "tokens")

    def __init__(self, name: str, vendor: str | None) -> None:
        self.name = name
        self.vendor = vendor
        self.issued: int | None = None
        self.in_use: int | None = None
        self.expiry: str | None = None
        self.error: str | None = None
        self.uncounted = False
        self.held = 0  # licenses of the checkout lines read, the in-use figure of an uncounted feature
        self.reserved = 0  # licenses of its "N RESERVATIONs for ..." lines: FlexNet counts them in use
        self.queued = 0
        self.tokens: set[str] | None = None  # the products its checkouts name ("FEATURE:PRODUCT"): a token feature

    def read_counts(self, rest: str) -> bool:
        """Take the counts from what follows "Users of FEATURE:"; return False if they cannot be read."""
        totals = _TOTALS.match(rest)
        if totals is not None:
            self.issued, self.in_use = int(totals.group(1)), int(totals.group(2))
        elif rest.startswith("(Uncounted"):
            self.uncounted = True
        elif rest.startswith("(Error:"):
            self.error = rest[1:].rstrip(")").strip()
        elif rest.startswith("Cannot get users of"):
            self.error = rest
        else:
            return rest == "None"  # "Users of F: None": lmstat's way to say nobody uses it, no counts
        return True

    def feature(self) -> Feature:
        in_use = self.held if self.uncounted else self.in_use
        listed = None if self.error is not None else self.held + self.reserved
        tokens = ", ".join(sorted(self.tokens)) if self.tokens else None
        return Feature(
            self.name, self.vendor, self.issued, in_use, self.expiry, self.error, self.reserved, self.queued, listed, tokens
        )


def _merged(old: Feature | None, new: Feature) -> Feature:
    """Return one row for a feature listed twice (two vendor daemons): the counts added up."""
    if old is None:
        return new
    return Feature(
        new.name,
        old.vendor or new.vendor,
        _add(old.issued, new.issued),
        _add(old.in_use, new.in_use),
        later_expiry(old.expiry, new.expiry),
        old.error or new.error,
        old.reserved + new.reserved,
        old.queued + new.queued,
        _add(old.listed, new.listed) if old.listed is not None and new.listed is not None else None,
        ", ".join(filter(None, (old.tokens, new.tokens))) or None,
    )


class _Reader:
    """One lmstat output being read, line by line: what the lines so far have said, and the feature block open."""

    def __init__(self, now: float, tz: datetime.tzinfo | None) -> None:
        self.report = StatusReport(up=True)
        self.checkouts = self.report.checkouts
        self.times = StartTimes(now, tz)
        self.seen = False  # a status report at all: a server status, a vendor daemon or a feature line
        self.down: str | None = None  # "lmgrd is not running: ..." / "Error getting status: ..."
        self.server_error: str | None = None  # a server line of a triad that could not be reached
        self.servers_up = 0
        self.in_vendors = False  # between "Vendor daemon status" and the features
        self.section_vendor: str | None = None  # "Users of features served by VENDOR:"
        self.cur: _Open | None = None
        self.malformed = 0

    def read(self, text: str) -> StatusReport:
        """Read every line of `text`; return the report they make."""
        if "\r" in text:
            text = text.replace("\r\n", "\n")  # one line break to splitlines() as to the lines' regex
        if not odd_breaks(text):
            self.read_lines(text)
        else:  # line breaks other than "\n" (splitlines() knows eight): the lines one by one
            line = self.line
            for raw in text.splitlines():
                line(raw.strip())
        self.close()
        return self.finish()

    def read_lines(self, text: str) -> None:
        """Read the lines of `text`, split by "\\n" alone: the plain checkout lines in one regex, the others one by one."""
        checkouts, new, times, line, malformed = self.checkouts, tuple.__new__, self.times, self.line, 0
        stamps = times.seen
        cur = self.cur
        for user, host, display, version, handle, start, n, other in _LINES.findall(text):
            if not user:  # not a plain checkout line
                if other and (other := other.strip()):
                    line(other)
                    cur = self.cur
                continue
            if cur is None:  # a checkout before any feature line: no feature to give it
                malformed += 1
                continue
            stamp = stamps.get(start, UNSEEN)
            if stamp is UNSEEN:
                stamp = times.text_stamp(start)
            count = int(n) if n else 1
            if stamp is None or count > MAX_COUNT:
                malformed += 1
                continue
            checkouts.append(new(Checkout, (cur.name, user, host, display, version, handle, stamp, count, cur.vendor)))
            cur.held += count
        self.malformed += malformed

    def line(self, line: str) -> None:
        """Read one line (stripped; an empty one says nothing)."""
        if not line:
            return
        # The commonest line by far: a checkout. The substring tests are cheap and rule the regex out for the others.
        at = line.find(", start ")
        if at < 0 and " queued for " in line:
            at = line.find(" queued for ")
        if at > 0 and not line.startswith("Users of "):
            self.checkout(line, at)
        elif line.startswith("Users of "):
            self.users_of(line)
        elif self.cur is not None:
            self.feature_line(self.cur, line)
        else:
            self.header(line)

    def checkout(self, line: str, at: int) -> None:
        """Read a checkout line (or a queued one), its ", start " or " queued for " at `at`."""
        cur = self.cur
        if cur is None:  # a checkout before any feature line: no feature to give it
            self.malformed += 1
            return
        m = _PLAIN_USE.match(line)
        if m is not None:
            user, host, display, version, handle, start, mo, d, h, mi, n = m.groups()
        else:
            who, version, handle = split_head(line[:at])
            user, host, display = split_who(who)
            if who.count(" ") >= 3 and who.rpartition(" ")[2].startswith(cur.name + ":"):
                # "user host display FEATURE:PRODUCT": a token feature, its tokens drawn for PRODUCT
                cur.tokens = cur.tokens or set()
                cur.tokens.add(who.rpartition(" ")[2][len(cur.name) + 1 :])
            if line[at] != ",":
                self.queued(cur, line, at, Checkout(cur.name, user, host, display, version, handle, None, 1, cur.vendor))
                return
            s = _START.match(line, at + 8)
            if s is None:
                self.malformed += 1
                return
            start, mo, d, h, mi, n = s.groups()
        stamp = self.times.stamp(start, mo, d, h, mi)
        count = int(n) if n is not None else 1
        if stamp is None or count > MAX_COUNT:
            self.malformed += 1
            return
        self.checkouts.append(Checkout(cur.name, user, host, display, version, handle, stamp, count, cur.vendor))
        cur.held += count

    def queued(self, cur: _Open, line: str, at: int, waiting: Checkout) -> None:
        """Read the " queued for N licenses" at `at` of a line waiting for a license (`waiting`, its count aside)."""
        q = _QUEUED.fullmatch(line, at)
        count = int(q.group(1)) if q is not None else MAX_COUNT + 1
        if count > MAX_COUNT:
            self.malformed += 1
            return
        self.report.queued.append(waiting._replace(licenses=count))
        cur.queued += count

    def users_of(self, line: str) -> None:
        """Read a "Users of ..." line: a feature's header, or the start of a vendor's features."""
        self.seen = True
        self.in_vendors = False
        if line.startswith("Users of features served by ") and line.endswith(":"):
            self.close()
            self.cur = None
            self.section_vendor = line[len("Users of features served by ") : -1].strip() or None
            return
        m = _USERS_OF.fullmatch(line)
        if m is None:
            self.malformed += 1
            return
        self.close()
        vendor = self.section_vendor
        if vendor is None and len(self.report.vendors) == 1:
            vendor = next(iter(self.report.vendors))
        self.cur = _Open(m.group(1), vendor)
        if not self.cur.read_counts(m.group(2)):
            self.malformed += 1

    def feature_line(self, cur: _Open, line: str) -> None:
        """Read a line of a feature's block other than a checkout: its detail line, a reservation, or a description."""
        if line[0] == '"':
            m = _DETAIL.fullmatch(line)
            if m is not None:
                cur.vendor = m.group(3)
                if m.group(4) is not None:
                    cur.expiry = later_expiry(cur.expiry, parse_expiry(m.group(4)))
                return
        if line[0].isdigit() and (r := _RESERVATION.match(line)) is not None:
            self.report.reservations.append(line)
            cur.reserved += min(int(r.group(1)[:9]), MAX_COUNT)  # [:9]: int() refuses thousands of digits
        # Everything else in a feature block describes the license: "floating license", "vendor_string: ...".

    def header(self, line: str) -> None:
        """Read a line of the header: the servers and the vendor daemons."""
        if line.startswith("License server status:"):
            self.seen = True
        elif line.startswith("lmgrd is not running:") or line.startswith("Error getting status:"):
            self.seen = True
            self.down = self.down or line
        elif line.startswith("Vendor daemon status"):
            self.seen = True
            self.in_vendors = True
        elif line.startswith("Feature usage info"):
            self.seen = True
            self.in_vendors = False
        elif ": " in line and not line.startswith("License file(s)"):
            self.daemon(line)

    def daemon(self, line: str) -> None:
        """Read "NAME: STATE": a vendor daemon's state, or a license server's."""
        name, _, state = line.partition(": ")
        if " " in name:
            return
        if self.in_vendors:
            # "UP v11.19.0", or "The desired vendor daemon is down. (-97,121)" and the other reasons a daemon gives
            self.report.vendors[name] = (state[2:].strip() or "UP") if state.startswith("UP") else "down"
        elif state.startswith("license server UP"):
            self.servers_up += 1
        elif "Cannot connect" in state or "(-" in state:
            self.server_error = self.server_error or line
            self.report.unreachable.append(name)  # a triad member: the answer may still be whole

    def close(self) -> None:
        """Add the feature whose block is open to the report."""
        cur = self.cur
        if cur is not None:
            features = self.report.features
            features[cur.name] = _merged(features.get(cur.name), cur.feature())

    def finish(self) -> StatusReport:
        """Return the report, down if the server could not be reached; raise UnparsableOutput if it is no report."""
        report = self.report
        report.malformed = self.malformed
        if not self.seen:
            raise UnparsableOutput("no lmstat report: expected 'License server status:', 'Users of ...' or a server error line")
        failed = self.down or self.server_error
        if not report.features and not any(v != "down" for v in report.vendors) and self.servers_up == 0 and failed:
            report.up = False
            report.error = failed
        return report


def parse_lmstat(text: str, now: float, tz: datetime.tzinfo | None = None) -> StatusReport:
    """Parse the output of `lmutil lmstat -a -c PORT@HOST` polled at `now`, its times printed in `tz` (None: local)."""
    return _Reader(now, tz).read(text)


def _add(a: int | None, b: int | None) -> int | None:
    return b if a is None else a if b is None else a + b
