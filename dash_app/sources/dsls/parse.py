"""The answer of Dassault Systèmes `DSLicSrv -admin` to `connect HOST PORT` and `getLicenseUsage -csv` into a StatusReport."""

# What DSLicSrv -admin prints for those commands on its standard input (the public samples are named in
# tests/fixtures/dsls/README.md), its prompt "admin >" before each answer:
#
#   License Administration Tool Version 6.425.0 Built on Jun 1, 2022, 5:10:11 AM.
#   admin >	Software version: 6.425.0
#   	Ready: yes
#   	Server name: lic01   Server id: DYP-41CA10215A9B2D81
#   admin >Editor,EditorId,Feature,Model,Commercial Type,...,Count,Inuse,Tokens,...,Host,User,...,Queue Position,
#   Dassault Systemes,5E756A80,SRU,Token,STD,423,...,2374,1559,493,,nid00123 (0123.0)/127.0.0.1,user_1,SRU,...
#
# One row per license and, for a license in use, one per user of it, the license's columns repeated: "Count" and
# "Inuse" are the server's figures for the license, "Tokens" what that user holds of a token license (one of any
# other). A license is known by its columns up to "Inuse"; a feature with several (releases, expiry dates, customer
# ids) adds them up. A row with a "Queue Position" waits for a license and holds none.

from __future__ import annotations

import csv
import datetime
import re
from operator import itemgetter

from dash_app.sources.lmstat.parse import MAX_COUNT, later_expiry
from dash_app.sources.lmx.parse import IsoTimes, iso_expiry
from dash_app.sources.status import Checkout, Feature, StatusReport, UnparsableOutput

PROMPT = "admin >"
# The columns read, by their header names: the rest may come and go between versions.
_NEEDED = ("Editor", "Feature", "Expiration Date", "Count", "Inuse")
_NEEDED_SET = frozenset(_NEEDED)
_OPTIONAL = ("Tokens", "Host", "User", "Client Code Version", "Session ID", "Granted Since", "Queue Position")
_OPTIONAL_SET = frozenset(_OPTIONAL)
# A user's columns; every other one is the license's, repeated on each of its users' rows.
_PER_USER = frozenset(_OPTIONAL) | {"Casual Usage (mn)", "Internal ID", "Active Process", "Last Used At", "Granted At"}
# How a line saying why there is no table begins (the server's own words follow).
_FAILED = re.compile(r"(?:error|cannot|could not|not connected|connection|unknown host|unreachable|timed? ?out)\b", re.IGNORECASE)


class _Columns:
    """Where each column read sits in a row, from the header line."""

    def __init__(self, header: list[str]) -> None:
        names = [name.strip() for name in header]
        where = {name: i for i, name in enumerate(names) if name}
        # A user's row is whole when it reaches the last named column (the header ends with a comma: an empty name).
        self.width = max(where.values()) + 1
        self.editor, self.feature, self.expiry, self.count, self.inuse = (where[name] for name in _NEEDED)
        license = [i for i, name in enumerate(names) if name and name not in _PER_USER]
        self.license = itemgetter(*license)  # a license's key: its columns, as its every row repeats them
        self.least = max(license) + 1  # a row shorter than this is cut off inside its license's columns
        # A column this version does not print reads as empty: it points past the named ones, into a row's padding.
        self.pad = not _OPTIONAL_SET <= where.keys()
        self.user = where.get("User", self.width)
        self.of_user = itemgetter(*(where.get(name, self.width) for name in _OPTIONAL if name != "User"))
        # A row of `width` cells whose license's columns come first (as every version seen prints them) is split from
        # its end in `tail` splits: its license's columns in one part, the user's one each (0: not so).
        shift = self.least - 1
        self.tail = self.width - self.least if license == list(range(self.least)) and not self.pad else 0
        self.tail_user = self.user - shift
        self.tail_of_user = itemgetter(*(where.get(name, self.width) - shift for name in _OPTIONAL if name != "User"))


def _is_header(line: str) -> bool:
    """True for the table's header: a line naming every column read (in whatever order the version prints them)."""
    return "Inuse" in line and {name.strip() for name in line.split(",")} >= _NEEDED_SET


def host_name(host: str) -> str | None:
    """Return the host's name from its column ("nid00123 (0123.0)/127.0.0.1"), None if it names none."""
    return host.split(" ", 1)[0].split("/", 1)[0].strip() or None


class _Reader:
    """One DSLicSrv answer being read: its server lines until the CSV header, then the rows."""

    def __init__(self, tz: datetime.tzinfo | None) -> None:
        self.report = StatusReport(up=True)
        self.times = IsoTimes(tz)
        self.licenses: dict[tuple[str, ...], tuple[str, str, int, int, str | None]] = {}  # license -> its figures
        self.failure: str | None = None
        self.version = "UP"
        self.malformed = 0

    def read(self, text: str) -> StatusReport:
        """Read `text`; return the report it makes."""
        lines = text.splitlines()
        start = next((i for i, line in enumerate(lines) if _is_header(line.removeprefix(PROMPT))), None)
        for line in lines if start is None else lines[:start]:
            self.server_line(line.removeprefix(PROMPT).strip())
        if start is None:
            if self.failure is not None:
                return StatusReport(up=False, error=self.failure)
            raise UnparsableOutput("no getLicenseUsage -csv report: expected its header 'Editor,...,Count,Inuse,...'")
        # The table ends where the console prompts again (for the next command, or `quit` as it echoes it).
        end = next((i for i in range(start + 1, len(lines)) if lines[i].startswith(PROMPT)), len(lines))
        columns = _Columns(next(csv.reader([lines[start].removeprefix(PROMPT).strip()])))
        self.rows(lines[start + 1 : end], columns)
        return self.finish()

    def rows(self, lines: list[str], c: _Columns) -> None:
        """Read the table's rows: a plain user's row of a license read before here, from its tail; any other by row()."""
        checkouts, new, stamp, licenses, row = self.report.checkouts, tuple.__new__, self.times.stamp, self.licenses, self.row
        tail, user_at, of_user = c.tail, c.tail_user, c.tail_of_user
        hosts: dict[str, str | None] = {}  # a host column as printed -> its host name (few hosts, many rows)
        same, figures = "\n", None  # the text of the last license's columns, and its figures: most rows repeat them
        for line in lines:
            parts = line.rsplit(",", tail) if tail and '"' not in line else []  # the license's columns as one, then the user's
            if len(parts) <= tail:  # a short row, one quoting, or a version whose rows are not split so
                # Most rows quote nothing: a split reads them in a fraction of the csv module's time.
                cells = line.split(",") if '"' not in line else next(csv.reader([line]))
                if len(cells) > 1 or cells[0].strip():
                    row(cells, c)
                continue
            if parts[0] != same:  # a row of more cells has more in its first part: no license's, so read by row()
                figures = licenses.get(tuple(parts[0].split(",")))
                same = parts[0] if figures is not None else "\n"
            user = parts[user_at].strip()
            tokens, host, version, session, since_text, queue = of_user(parts)
            if figures is None or not user or queue.strip() or (tokens and not (tokens.isdigit() and int(tokens) <= MAX_COUNT)):
                row(line.split(","), c)  # a new license, none in use, queued or garbled: read as any row
                continue
            since = stamp(since_text)
            if since is None:
                row(line.split(","), c)
                continue
            name = hosts.get(host, "\n")  # no host name holds a line break
            if name == "\n":
                name = hosts[host] = host_name(host)
            held = (figures[0], user, name, None, version or None, session or None, since, int(tokens or 1), figures[1])
            checkouts.append(new(Checkout, held))

    def server_line(self, line: str) -> None:
        """Read a line before the table: the server's version and readiness, or an error (said only if no table comes)."""
        key, colon, value = line.partition(":")
        if colon and key == "Software version":
            self.version = "v" + value.strip()
        elif colon and key == "Ready" and value.strip().lower() != "yes":
            self.failure = self.failure or f"server not ready: {line}"
        elif self.failure is None and _FAILED.match(line):
            self.failure = line

    def row(self, row: list[str], c: _Columns) -> None:
        """Read one row: a license's figures, and the checkout (or queued request) of the user it names, if any.

        A user's row holds their tokens (a token license), else one license, since "Granted Since".
        """
        if len(row) < c.least:
            self.malformed += 1
            return
        key = c.license(row)
        figures = self.licenses.get(key)
        if figures is None:
            count, inuse = row[c.count].strip(), row[c.inuse].strip()
            if not (count.isdigit() and inuse.isdigit()):
                self.malformed += 1
                return
            feature, editor = row[c.feature].strip(), row[c.editor].strip()
            figures = self.licenses[key] = (feature, editor, int(count), int(inuse), iso_expiry(row[c.expiry]))
        user = row[c.user].strip() if len(row) > c.user else ""
        if not user:
            return
        if len(row) < c.width:  # cut off inside its user's columns: what they hold is not known
            self.malformed += 1
            return
        tokens, host, version, session, since_text, queue = c.of_user(row[: c.width] + [""] if c.pad else row)
        if tokens and not (tokens.isdigit() and int(tokens) <= MAX_COUNT):
            self.malformed += 1
            return
        since = self.times.stamp(since_text)
        host = host_name(host)
        held = Checkout(figures[0], user, host, None, version or None, session or None, since, int(tokens or 1), figures[1])
        # A queued request holds nothing; a held one must say since when (a row cut short does not).
        if queue.strip():
            self.report.queued.append(held._replace(started_at=None))
        elif since is None:
            self.malformed += 1
        else:
            self.report.checkouts.append(held)

    def finish(self) -> StatusReport:
        """Return the report: each feature's licenses added up over its licenses."""
        report = self.report
        report.malformed = self.malformed
        features = report.features
        for feature, editor, count, inuse, expiry in self.licenses.values():
            old = features.get(feature)
            if old is None:
                features[feature] = Feature(feature, editor, count, inuse, expiry=expiry)
            else:
                issued, in_use = (old.issued or 0) + count, (old.in_use or 0) + inuse
                features[feature] = Feature(feature, old.vendor, issued, in_use, expiry=later_expiry(old.expiry, expiry))
            report.vendors[editor] = self.version
        report.count_listed()
        return report


def parse_dsls(text: str, now: float, tz: datetime.tzinfo | None = None) -> StatusReport:
    """Parse DSLicSrv's answer to `connect` and `getLicenseUsage -csv` polled at `now`, its times in `tz` (None: local)."""
    del now  # DSLS prints whole dates: a start needs no poll time to find its year
    return _Reader(tz).read(text)
