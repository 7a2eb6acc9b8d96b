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

from dash_app.sources.lmstat.parse import MAX_COUNT, StartTimes, later_expiry, parse_expiry
from dash_app.sources.status import Checkout, Feature, StatusReport, UnparsableOutput

_USAGE = re.compile(
    r"(?P<product>\S+) v(?P<ver>\S*): (?P<user>.+)@(?P<host>\S+) (?P<n>\d+)/\d+ "
    r"at (?P<start>(?P<mo>\d{1,2})/(?P<d>\d{1,2}) (?P<h>\d{1,2}):(?P<mi>\d\d))\s+\(handle: (?P<handle>[0-9A-Fa-f]+)\)(?P<rest>.*)"
)
_POOL = re.compile(r"(\S+) v(\S+?)(?:, pool: \d+)?")
_COUNTS = re.compile(r"count: (\w+), # reservations: (\d+), inuse: (\d+), exp: (.+)")
_SECTION = re.compile(r"(\S+) (ISV server|license pool|license usage) status on ")
_ISV_ROW = re.compile(r"(\S+)\s+(\d+)\s+(Yes|No)\s+\d+")
_VERSION = re.compile(r"(\S+) software version (v\S+)")
_UNCOUNTED = ("0", "uncounted", "UNCOUNTED", "unlimited")


def parse_rlmstat(text: str, now: float, tz: datetime.tzinfo | None = None) -> StatusReport:
    """Parse the output of `rlmutil rlmstat -a -c PORT@HOST` polled at `now`, its times printed in `tz` (None: local)."""
    report = StatusReport(up=True)
    times = StartTimes(now, tz)
    cache = times.cache
    checkouts = report.checkouts
    vendors = report.vendors
    pools: dict[str, list] = {}  # product -> [vendor, issued, in_use, expiry, uncounted pools only]
    seen = False
    isv: str | None = None  # the ISV whose block is being read
    section = ""  # "ISV servers", "license pool", "license usage"
    product: str | None = None  # the pool line just read, waiting for its counts
    error_lines: list[str] = []  # 'Error connecting to "rlm" server' and its reasons
    malformed = 0

    for raw in text.splitlines():
        line = raw.strip()
        if not line:
            continue
        if error_lines and not seen:
            if line.startswith("This error usually means"):
                error_lines.append("")  # the explanation that follows is rlmutil's, not the server's
            elif error_lines[-1] and not line.startswith("Connection attempted"):
                error_lines.append(line)
            continue
        if section == "license usage" and " at " in line and "(handle: " in line:
            m = _USAGE.fullmatch(line)
            if m is None:
                malformed += 1
                continue
            start = m.group("start")
            if start in cache:
                stamp = cache[start]
            else:
                stamp = cache[start] = times.resolve(int(m.group("mo")), int(m.group("d")), int(m.group("h")), int(m.group("mi")))
            count = int(m.group("n"))
            if stamp is None or count > MAX_COUNT:
                malformed += 1
                continue
            checkouts.append(
                Checkout(
                    m.group("product"),
                    m.group("user"),
                    m.group("host"),
                    None,
                    m.group("ver"),
                    m.group("handle"),
                    stamp,
                    count,
                    isv,
                )
            )
            continue
        if line.startswith("-----"):
            section = "ISV servers" if "ISV servers" in line else ""
            continue
        if line.startswith("rlm status on "):
            seen = True
            continue
        if line.startswith("Error connecting to ") or line.startswith("Communications error"):
            if not seen and (line.startswith("Communications error") or '"rlm"' in line):
                error_lines.append(line)
            elif '"' in line:  # one ISV server cannot be reached, the rlm server can
                vendors[line.split('"')[1]] = "down"
            continue
        m = _SECTION.match(line)
        if m is not None:
            seen = True
            isv, section, product = m.group(1), m.group(2), None
            vendors.setdefault(isv, "UP")
            continue
        if section == "ISV servers":
            row = _ISV_ROW.fullmatch(line)
            if row is not None:
                seen = True
                if row.group(3) == "No":
                    vendors[row.group(1)] = "down"
                else:
                    vendors.setdefault(row.group(1), "UP")
            continue
        if section == "ISV server":
            v = _VERSION.match(line)
            if v is not None and isv is not None and v.group(1) == isv and vendors.get(isv) != "down":
                vendors[isv] = v.group(2)
            continue
        if section == "license pool":
            if line.startswith("count:"):
                c = _COUNTS.fullmatch(line)
                if c is None or product is None:
                    malformed += 1
                    continue
                issued = None if c.group(1) in _UNCOUNTED else int(c.group(1)) if c.group(1).isdigit() else -1
                if issued == -1:
                    malformed += 1
                    continue
                pool = pools.get(product)
                if pool is None:
                    pools[product] = [isv, issued, int(c.group(3)), parse_expiry(c.group(4))]
                else:  # another pool of the same product: its licenses add to the others
                    pool[1] = issued if pool[1] is None else pool[1] if issued is None else pool[1] + issued
                    pool[2] += int(c.group(3))
                    pool[3] = later_expiry(pool[3], parse_expiry(c.group(4)))
                product = None
            elif not line.startswith("obsolete:"):
                p = _POOL.fullmatch(line)
                product = p.group(1) if p is not None else None
                if p is None:
                    malformed += 1
            continue
    report.malformed = malformed
    for name, (vendor, issued, in_use, expiry) in pools.items():
        report.features[name] = Feature(name, vendor, issued, in_use, expiry)
    if seen:
        return report
    if error_lines:
        return StatusReport(up=False, error="; ".join(line for line in error_lines if line))
    raise UnparsableOutput("no rlmstat report: expected 'rlm status on HOST', a license pool or usage block, or a connect error")
