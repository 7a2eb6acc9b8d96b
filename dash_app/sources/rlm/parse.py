"""The output of Reprise `rlmutil rlmstat -a -c PORT@HOST` (RLM v12 to v15) into a StatusReport."""

# What rlmstat -a prints (v12 indents every line with a tab, v15 prints most at the margin; both are read stripped):
#
#   rlm status on HOST (port 5053), up 12d 04:18:51
#   rlm software version v12.2 (build:2)
#   ... statistics ...
#   --------- ISV servers ----------
#      Name           Port Running Restarts
#   artisan          41987   Yes      0
#   ------------------------
#   artisan ISV server status on HOST (port 41987), up 12d 04:18:44
#   artisan software version v12.2 (build: 2)
#   ... statistics ...
#   artisan license pool status on HOST (port 41987)
#   sculpt v3.1                                    (v15: "sculpt v3.1, pool: 1")
#       count: 25, # reservations: 2, inuse: 6, exp: 31-dec-2026
#       obsolete: 0, min_remove: 120, total checkouts: 8212
#   artisan license usage status on HOST (port 41987)
#   sculpt v3.1: user@host 1/0 at 12/02 09:12  (handle: 3a1)
#
# A usage line is "product vVERSION: user@host COUNT/RES at MM/DD HH:MM  (handle: HEX)", with whatever the server
# adds after the handle. One product may have several pools (versions, expiry dates): its Feature adds them up.
# A server that cannot be reached gives 'Error connecting to "rlm" server' and the reasons on the next lines.

from __future__ import annotations

import datetime
import re
from itertools import groupby

from dash_app.sources.lmstat.dates import UNSEEN, StartTimes, later_expiry, parse_expiry
from dash_app.sources.lmstat.parse import MAX_COUNT, odd_breaks
from dash_app.sources.rlm.sharing import shared
from dash_app.sources.status import Checkout, Feature, StatusReport, UnparsableOutput, feature_of, licenses_of

_USAGE = re.compile(
    r"(?P<product>\S+) v(?P<ver>\S*): (?P<user>.+)@(?P<host>\S+) (?P<n>\d+)/\d+ "
    r"at (?P<start>(?P<mo>\d{1,2})/(?P<d>\d{1,2}) (?P<h>\d{1,2}):(?P<mi>\d\d))\s+\(handle: (?P<handle>[0-9A-Fa-f]+)\)(?P<rest>.*)"
)
# Every line of an answer split by "\n" alone, in one pass: a usage line as _USAGE reads it (the whole line in the
# first group, then product, version, user, host, count, start and handle), any other line in the last group.
_LINES = re.compile(
    r"^[^\S\n]*(?:((\S+) v(\S*): ([^\n]+)@(\S+) (\d+)/\d+ at (\d{1,2}/\d{1,2} \d{1,2}:\d\d)[^\S\n]+"
    r"\(handle: ([0-9A-Fa-f]+)\)[^\n]*)|([^\n]*))(?:\n|\Z)",
    re.MULTILINE,
)
_POOL = re.compile(r"(\S+) v(\S+?)(?:, pool: \d+)?")
_COUNTS = re.compile(r"count: (\w+), # reservations: (\d+), inuse: (\d+), exp: (.+)")
_SECTION = re.compile(r"(\S+) (ISV server|license pool|license usage) status on ")
_ISV_ROW = re.compile(r"(\S+)\s+(\d+)\s+(Yes|No)\s+\d+")
_VERSION = re.compile(r"(\S+) software version (v\S+)")
_UNCOUNTED = ("0", "uncounted", "UNCOUNTED", "unlimited")


class _Pool:
    """One product's licenses over all its pools (versions, expiry dates), added up."""

    __slots__ = ("vendor", "issued", "in_use", "expiry", "reserved", "tokens")

    def __init__(self, vendor: str | None, issued: int | None, in_use: int, expiry: str | None, reserved: int) -> None:
        self.vendor, self.issued, self.in_use, self.expiry, self.reserved = vendor, issued, in_use, expiry, reserved
        self.tokens: list[str] = []  # a token-based product's mapping, as printed

    def add(self, issued: int | None, in_use: int, expiry: str | None, reserved: int) -> None:
        """Add another pool of the same product: its licenses add to the others."""
        self.issued = issued if self.issued is None else self.issued if issued is None else self.issued + issued
        self.in_use += in_use
        self.reserved += reserved
        self.expiry = later_expiry(self.expiry, expiry)

    def feature(self, name: str, listed: int) -> Feature:
        """Return the product's Feature; a token-based one's in use is counted in tokens, which no usage line shows."""
        tokens = "; ".join(self.tokens) if self.tokens else None
        checked = None if tokens is not None else listed
        return Feature(name, self.vendor, self.issued, self.in_use, self.expiry, None, self.reserved, 0, checked, tokens)


def _issued(count: str) -> int | None:
    """Return a pool's "count:" as a number, None for an uncounted pool; raise ValueError if it is neither."""
    if count in _UNCOUNTED:
        return None
    if not count.isdigit():
        raise ValueError(count)
    return int(count)


class _Reader:
    """One rlmstat output being read, line by line: what the lines so far have said, and the block being read."""

    def __init__(self, now: float, tz: datetime.tzinfo | None) -> None:
        self.report = StatusReport(up=True)
        self.times = StartTimes(now, tz)
        self.pools: dict[str, _Pool] = {}  # by product
        self.seen = False
        self.isv: str | None = None  # the ISV whose block is being read
        self.section = ""  # "ISV servers", "ISV server", "license pool", "license usage"
        self.product: str | None = None  # the pool line just read, waiting for its counts
        self.token_of: _Pool | None = None  # the pool whose "Token-based license" lines are being read
        self.tokens_ahead: list[str] = []  # a "Token-based license" line before its pool's counts
        self.error_lines: list[str] = []  # 'Error connecting to "rlm" server' and its reasons
        self.malformed = 0
        self._in_section = {"ISV servers": self.isv_row, "ISV server": self.isv_version, "license pool": self.pool_line}

    def read(self, text: str) -> StatusReport:
        """Read every line of `text`; return the report they make."""
        if "\r" in text:
            text = text.replace("\r\n", "\n")  # one line break to splitlines() as to the lines' regex
        if not odd_breaks(text):
            self.read_lines(text)
            return self.finish()
        for raw in text.splitlines():  # line breaks other than "\n": the lines one by one
            line = raw.strip()
            if line:
                self.line(line)
        return self.finish()

    def read_lines(self, text: str) -> None:
        """Read the lines of `text`, split by "\\n" alone: the usage lines in one regex, the others one by one."""
        checkouts, new, times, malformed = self.report.checkouts, tuple.__new__, self.times, 0
        stamps = times.seen
        usage, isv = False, self.isv  # a usage line is read as one where the usage section is open
        for whole, product, version, user, host, n, start, handle, other in _LINES.findall(text):
            if not usage or not whole:
                if line := (whole or other).strip():
                    self.line(line)
                    usage, isv = self.section == "license usage" and not (self.error_lines and not self.seen), self.isv
                continue
            stamp = stamps.get(start, UNSEEN)
            if stamp is UNSEEN:
                stamp = times.text_stamp(start)
            count = int(n)
            if stamp is None or count > MAX_COUNT:
                malformed += 1
                continue
            checkouts.append(new(Checkout, (product, user, host, None, version, handle, stamp, count, isv)))
        self.malformed += malformed

    def line(self, line: str) -> None:
        """Read one line (stripped, not empty)."""
        if self.error_lines and not self.seen:
            self.error_reason(line)
        elif self.section == "license usage" and " at " in line and "(handle: " in line:
            self.usage(line)
        elif line.startswith("-----"):
            self.section = "ISV servers" if "ISV servers" in line else ""
        elif line.startswith("rlm status on "):
            self.seen = True
        elif line.startswith("Error connecting to ") or line.startswith("Communications error"):
            self.connect_error(line)
        elif (m := _SECTION.match(line)) is not None:
            self.seen = True
            self.isv, self.section, self.product = m.group(1), m.group(2), None
            self.report.vendors.setdefault(self.isv, "UP")
        elif (read := self._in_section.get(self.section)) is not None:
            read(line)

    def error_reason(self, line: str) -> None:
        """Read a line after 'Error connecting to "rlm" server': a reason, or rlmutil's own explanation."""
        if line.startswith("This error usually means"):
            self.error_lines.append("")  # the explanation that follows is rlmutil's, not the server's
        elif self.error_lines[-1] and not line.startswith("Connection attempted"):
            self.error_lines.append(line)

    def connect_error(self, line: str) -> None:
        """Read a connect error: the rlm server's (the server is down) or one ISV server's."""
        if not self.seen and (line.startswith("Communications error") or '"rlm"' in line):
            self.error_lines.append(line)
        elif '"' in line:  # one ISV server cannot be reached, the rlm server can
            self.report.vendors[line.split('"')[1]] = "down"

    def usage(self, line: str) -> None:
        """Read a usage line: one checkout."""
        m = _USAGE.fullmatch(line)
        if m is None:
            self.malformed += 1
            return
        stamp = self.times.stamp(m.group("start"), m.group("mo"), m.group("d"), m.group("h"), m.group("mi"))
        count = int(m.group("n"))
        if stamp is None or count > MAX_COUNT:
            self.malformed += 1
            return
        product, user, host, version, handle = m.group("product", "user", "host", "ver", "handle")
        self.report.checkouts.append(Checkout(product, user, host, None, version, handle, stamp, count, self.isv))

    def isv_row(self, line: str) -> None:
        """Read a row of the ISV servers table: name, port, running, restarts."""
        row = _ISV_ROW.fullmatch(line)
        if row is not None:
            self.seen = True
            if row.group(3) == "No":
                self.report.vendors[row.group(1)] = "down"
            else:
                self.report.vendors.setdefault(row.group(1), "UP")

    def isv_version(self, line: str) -> None:
        """Read a line of an ISV server's status: its software version, if it is up."""
        v = _VERSION.match(line)
        vendors, isv = self.report.vendors, self.isv
        if v is not None and isv is not None and v.group(1) == isv and vendors.get(isv) != "down":
            vendors[isv] = v.group(2)

    def pool_line(self, line: str) -> None:
        """Read a line of a license pool block: a pool ("product vVERSION"), its counts, or its token mapping."""
        if line.startswith("count:"):
            self.pool_counts(line)
        elif line.startswith("Token-based license"):
            mapping = line[len("Token-based license") :].strip(" ,:;") or "token-based"
            (self.token_of.tokens if self.token_of is not None else self.tokens_ahead).append(mapping)
        elif not line.startswith("obsolete:"):
            p = _POOL.fullmatch(line)
            if p is None and self.token_of is not None and "token" in line.lower():
                self.token_of.tokens.append(line)  # a line of the mapping: "product vVERSION (N tokens)"
                return
            self.product = p.group(1) if p is not None else None
            self.token_of = None
            if p is None:
                self.malformed += 1

    def pool_counts(self, line: str) -> None:
        """Read the "count: ..." line of the pool just named."""
        c = _COUNTS.fullmatch(line)
        product = self.product
        if c is None or product is None:
            self.malformed += 1
            return
        try:
            issued = _issued(c.group(1))
        except ValueError:
            self.malformed += 1
            return
        in_use, expiry, reserved = int(c.group(3)), parse_expiry(c.group(4)), int(c.group(2))
        pool = self.pools.get(product)
        if pool is None:
            pool = self.pools[product] = _Pool(self.isv, issued, in_use, expiry, reserved)
        else:
            pool.add(issued, in_use, expiry, reserved)
        self.product = None
        self.token_of = pool
        pool.tokens += self.tokens_ahead
        self.tokens_ahead = []

    def finish(self) -> StatusReport:
        """Return the report, or a down one if the rlm server could not be reached; raise UnparsableOutput if neither."""
        report = self.report
        report.malformed = self.malformed
        uses: dict[str, list[Checkout]] = {}
        for feature, checkouts in groupby(report.checkouts, feature_of):  # a product's usage lines come together, mostly
            uses.setdefault(feature, []).extend(checkouts)
        merged = False
        for name, pool in self.pools.items():
            held = uses.get(name, [])
            if sum(map(licenses_of, held)) > pool.in_use and not pool.tokens:
                uses[name] = held = shared(held, pool.in_use)
                merged = True
            report.features[name] = pool.feature(name, sum(map(licenses_of, held)))
        if merged:
            report.checkouts = [checkout for held in uses.values() for checkout in held]
        if self.seen:
            return report
        if self.error_lines:
            return StatusReport(up=False, error="; ".join(line for line in self.error_lines if line))
        raise UnparsableOutput(
            "no rlmstat report: expected 'rlm status on HOST', a license pool or usage block, or a connect error"
        )


def parse_rlmstat(text: str, now: float, tz: datetime.tzinfo | None = None) -> StatusReport:
    """Parse the output of `rlmutil rlmstat -a -c PORT@HOST` polled at `now`, its times printed in `tz` (None: local)."""
    return _Reader(now, tz).read(text)
