"""The FlexLM log fixtures and what ingesting them must give, worked out by hand from the log lines."""

import time
from datetime import UTC, datetime
from pathlib import Path

FIXTURES = Path(__file__).resolve().parent / "fixtures" / "flexlm"
TOOLS_FILE = FIXTURES / "tools.json"
LIC01 = FIXTURES / "lic01_two_vendors.log"
LIC02 = FIXTURES / "lic02_datestamp.log"
LIC03 = FIXTURES / "lic03_undated_debuglog.log"

# The fixtures are from March 2024: keep that far back in the buffer so their buckets can be checked.
RETENTION_HOURS = (time.time() - datetime(2024, 3, 13).timestamp()) / 3600
WINDOW = int(RETENTION_HOURS * 3600)


def minute(*args):
    """The bucket timestamp of a local wall-clock minute (plain debug-log times are local)."""
    return time.strftime("%Y-%m-%dT%H:%M:00Z", time.gmtime(datetime(*args).timestamp()))


def bucket(when, count, users, overage=0):
    return {"timestamp": when, "count": count, "users": sorted(users), "overage_count": overage}


def counters(**given):
    base = dict.fromkeys(
        (
            "lines",
            "borrows",
            "returns",
            "denials",
            "queued",
            "dequeued",
            "malformed",
            "ended_by_restart",
            "unmatched_returns",
            "clock_skew",
        ),
        0,
    )
    base.update(given)
    return base


# lic01: lmgrd with MLM and snpslmd; midnight at line 45, an MLM restart at 0:20, garbage, non-ASCII users.
LIC01_COUNTS = counters(
    lines=58, borrows=14, returns=6, denials=3, queued=1, dequeued=1, malformed=3, ended_by_restart=5, unmatched_returns=2
)
LIC01_OPEN = 3  # MATLAB for Jürgen and ADas after the restart, VCS for dave (snpslmd did not restart)
LIC01_STATUS = {  # tool: (total, borrowed, overage_borrows)
    "MATLAB": (3, 2, 2),
    "Simulink": (2, 0, 0),
    "Synopsys VCS": (10, 1, 0),
    "Design Compiler": (2, 0, 0),
    "ANSYS CFD": (4, 0, 0),
    "Signal_Toolbox": (None, 0, 0),
    "PrimeTime": (None, 0, 0),
}
LIC01_BUCKETS = {
    "MATLAB": [
        bucket(minute(2024, 3, 14, 22, 31), 1, ["anna"]),
        bucket(minute(2024, 3, 14, 22, 40), 1, ["Jürgen"]),
        bucket(minute(2024, 3, 14, 22, 52), 1, ["李明"], overage=1),
        bucket(minute(2024, 3, 14, 22, 58), 1, ["Åsa"], overage=1),
        bucket(minute(2024, 3, 15, 0, 21), 1, ["Jürgen"]),
        bucket(minute(2024, 3, 15, 0, 25), 1, ["ADas"]),
    ],
    "Signal_Toolbox": [bucket(minute(2024, 3, 14, 22, 31), 1, ["anna"])],
    "Synopsys VCS": [bucket(minute(2024, 3, 14, 22, 40), 4, ["ci-runner-7"]), bucket(minute(2024, 3, 15, 0, 10), 1, ["dave"])],
    "Design Compiler": [bucket(minute(2024, 3, 14, 23, 12), 1, ["bob"])],
    "Simulink": [bucket(minute(2024, 3, 15, 0, 0), 1, ["Jürgen"])],
}
LIC01_RETURNS = {  # tool: {local minute: returns}, IN lines and the MLM restart together
    "MATLAB": {(2024, 3, 14, 22, 58): 1, (2024, 3, 15, 0, 20): 3},
    "Signal_Toolbox": {(2024, 3, 15, 0, 20): 1},
    "Simulink": {(2024, 3, 15, 0, 20): 1},
    "Synopsys VCS": {(2024, 3, 14, 23, 59): 4},
    "Design Compiler": {(2024, 3, 15, 0, 30): 1},
}
LIC01_FAILURES = {
    "MATLAB": {(2024, 3, 14, 22, 53): {"exhausted: Licensed number of users already reached. (-4,342)": 1}},
    "PrimeTime": {(2024, 3, 14, 23, 5): {"unknown_tool: License server system does not support this feature. (-18,327)": 1}},
    "Design Compiler": {(2024, 3, 14, 23, 12): {"policy: User/host on EXCLUDE list for feature. (-38,348)": 1}},
}
LIC01_EVENTS = 14 + 6 + 5 + 3  # borrows, returns by IN, returns by the restart, failures

# lic02: lmgrd -datestamp (ISO times at +01:00), cdslmd, features not in the tools file.
LIC02_COUNTS = counters(lines=20, borrows=4, returns=2, denials=3, queued=1, dequeued=1)
LIC02_STATUS = {"Spectre": (None, 2, 0), "Virtuoso_Schematic_Editor_L": (None, 0, 0)}
LIC02_BUCKETS = {
    "Spectre": [
        bucket("2024-03-15T07:05:00Z", 1, ["søren"]),
        bucket("2024-03-15T07:09:00Z", 1, ["amélie"]),
        bucket("2024-03-15T07:14:00Z", 1, ["kofi"]),
    ],
    "Virtuoso_Schematic_Editor_L": [bucket("2024-03-15T07:05:00Z", 1, ["søren"])],
}
LIC02_FAILURES = {  # UTC minute: failures by reason
    (2024, 3, 15, 7, 9): {
        "exhausted: Licensed number of users already reached. (-4,342)": 1,
        "exhausted: Users are queued for this feature. (-24,332)": 1,
    },
    (2024, 3, 15, 7, 20): {"expired: Feature has expired. (-10,32)": 1},
}

# lic03: a vendor DEBUGLOG that starts mid-night with no date; the TIMESTAMP at 2:10 dates the lines before it.
LIC03_COUNTS = counters(lines=8, borrows=4, returns=3, denials=1)
LIC03_STATUS = {"ANSYS CFD": (4, 1, 1)}
LIC03_BUCKETS = {
    "ANSYS CFD": [
        bucket(minute(2024, 3, 15, 23, 41), 1, ["müller"]),
        bucket(minute(2024, 3, 15, 23, 52), 1, ["øyvind"]),
        bucket(minute(2024, 3, 16, 0, 4), 2, ["ci-runner-2"], overage=1),
    ],
}


def status_of(pool, tools):
    """Return {tool: (total, borrowed, overage_borrows)} for `tools` from the pool's status."""
    return {e["tool"]: (e["total"], e["borrowed"], e["overage_borrows"]) for e in pool.status() if e["tool"] in tools}


def flows_by_local_minute(buffer, field, tz=None):
    """Return {tool: {(y, m, d, H, M): value}} of one MinuteFlow field in local time (or `tz`), leaving out empty minutes."""
    out = {}
    for tool, rows in buffer.get_minute_flows(WINDOW).items():
        for row in rows:
            value = getattr(row, field)
            if value:
                t = datetime.fromtimestamp(row.minute, tz)
                out.setdefault(tool, {})[(t.year, t.month, t.day, t.hour, t.minute)] = value
    return out


def flows_by_utc_minute(buffer, field):
    """Like flows_by_local_minute, in UTC (for logs with ISO datestamps)."""
    return flows_by_local_minute(buffer, field, UTC)
