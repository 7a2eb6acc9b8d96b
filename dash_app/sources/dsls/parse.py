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

from dash_app.sources.lmstat.parse import MAX_COUNT, later_expiry
from dash_app.sources.lmx.parse import IsoTimes, iso_expiry
from dash_app.sources.status import Checkout, Feature, StatusReport, UnparsableOutput

PROMPT = "admin >"
# The columns read, by their header names: the rest may come and go between versions.
_NEEDED = ("Editor", "Feature", "Expiration Date", "Count", "Inuse")
_NEEDED_SET = frozenset(_NEEDED)
_OPTIONAL = ("Tokens", "Host", "User", "Client Code Version", "Session ID", "Granted Since", "Queue Position")
# A user's columns; every other one is the license's, repeated on each of its users' rows.
_PER_USER = frozenset(_OPTIONAL) | {"Casual Usage (mn)", "Internal ID", "Active Process", "Last Used At", "Granted At"}
# How a line saying why there is no table begins (the server's own words follow).
_FAILED = re.compile(r"(?:error|cannot|could not|not connected|connection|unknown host|unreachable|timed? ?out)\b", re.IGNORECASE)


class _Columns:
    """Where each column read sits in a row, from the header line."""

    def __init__(self, header: list[str]) -> None:
        where = {name.strip(): i for i, name in enumerate(header)}
        self.editor, self.feature, self.expiry, self.count, self.inuse = (where[name] for name in _NEEDED)
        self.tokens, self.host, self.user, self.version, self.session, self.since, self.queue = (
            where.get(name, -1) for name in _OPTIONAL
        )
        self.license = [i for i, name in enumerate(header) if name.strip() and name.strip() not in _PER_USER]
        self.least = max(self.license) + 1  # a row shorter than this is cut off inside its license's columns
        # A user's row is whole when it reaches the last named column (the header ends with a comma: an empty name).
        self.whole = max(i for i, name in enumerate(header) if name.strip()) + 1


def _is_header(line: str) -> bool:
    """True for the table's header: a line naming every column read (in whatever order the version prints them)."""
    return "Inuse" in line and {name.strip() for name in line.split(",")} >= _NEEDED_SET


def _cell(row: list[str], at: int) -> str:
    return row[at].strip() if 0 <= at < len(row) else ""


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
        text_lines = text.splitlines()
        lines = [line[len(PROMPT) :] if line.startswith(PROMPT) else line for line in text_lines]
        start = next((i for i, line in enumerate(lines) if _is_header(line)), None)
        for line in lines if start is None else lines[:start]:
            self.server_line(line.strip())
        if start is None:
            if self.failure is not None:
                return StatusReport(up=False, error=self.failure)
            raise UnparsableOutput("no getLicenseUsage -csv report: expected its header 'Editor,...,Count,Inuse,...'")
        # The table ends where the console prompts again (for the next command, or `quit` as it echoes it).
        end = next((i for i in range(start + 1, len(lines)) if text_lines[i].startswith(PROMPT)), len(lines))
        rows = csv.reader(line.strip() for line in lines[start:end])
        columns = _Columns(next(rows))
        for row in rows:
            if row and not (len(row) == 1 and not row[0].strip()):
                self.row(row, columns)
        return self.finish()

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
        """Read one row: a license's figures, and the checkout (or queued request) of the user it names, if any."""
        if len(row) < c.least or not row[c.count].strip().isdigit() or not row[c.inuse].strip().isdigit():
            self.malformed += 1
            return
        feature, editor = row[c.feature].strip(), row[c.editor].strip()
        key = tuple(row[i].strip() for i in c.license)
        if key not in self.licenses:
            self.licenses[key] = (feature, editor, int(row[c.count]), int(row[c.inuse]), iso_expiry(row[c.expiry]))
        user = _cell(row, c.user)
        if user and len(row) < c.whole:  # cut off inside its user's columns: what they hold is not known
            self.malformed += 1
        elif user:
            self.user_row(row, c, feature, editor, user)

    def user_row(self, row: list[str], c: _Columns, feature: str, editor: str, user: str) -> None:
        """Read a row's user: what they hold (their tokens, else one license) since when, or what they wait for."""
        tokens = _cell(row, c.tokens)
        since = self.times.stamp(_cell(row, c.since))
        if (tokens and not tokens.isdigit()) or (tokens and int(tokens) > MAX_COUNT):
            self.malformed += 1
            return
        host = _cell(row, c.host).split(" ", 1)[0].split("/", 1)[0] or None  # "nid00123 (0123.0)/127.0.0.1"
        version, session = _cell(row, c.version) or None, _cell(row, c.session) or None
        held = Checkout(feature, user, host, None, version, session, since, int(tokens) if tokens else 1, editor)
        if _cell(row, c.queue):
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
                features[feature] = Feature(feature, editor, count, inuse, expiry)
            else:
                issued, in_use = (old.issued or 0) + count, (old.in_use or 0) + inuse
                features[feature] = Feature(feature, old.vendor, issued, in_use, later_expiry(old.expiry, expiry))
            report.vendors[editor] = self.version
        return report


def parse_dsls(text: str, now: float, tz: datetime.tzinfo | None = None) -> StatusReport:
    """Parse DSLicSrv's answer to `connect` and `getLicenseUsage -csv` polled at `now`, its times in `tz` (None: local)."""
    del now  # DSLS prints whole dates: a start needs no poll time to find its year
    return _Reader(tz).read(text)
