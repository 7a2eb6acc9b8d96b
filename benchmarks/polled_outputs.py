"""What bench_sources.py feeds the rlmstat, LM-X and DSLS parsers: generated answers, and a baseline parser for each.

Each generator writes a server's answer the way its tool prints it (the parsers' public samples, tests/fixtures/*/),
with `features` features sharing `checkouts` checkout lines, every start in the working week before `now`, of 1 to
16 licenses. Each baseline is what a competent engineer writes first: a cheap test (a prefix, a substring) sends each
line to the one regular expression of its kind (or, for DSLS's CSV, `csv.DictReader`), and every time is read with
`strptime`; it must build the same report as ours (`summary` compares what both say).
"""

import csv
import datetime
import random
import re

from dash_app.sources.lmstat.parse import parse_expiry
from dash_app.sources.status import Checkout, Feature, StatusReport

MONTHS = ("jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec")
DSLS_COLUMNS = (
    "Editor,EditorId,Feature,Model,Commercial Type,Max Release Number,Max Release Date,Pricing Structure,"
    "Max Casual Duration,Expiration Date,Customer ID,Count,Inuse,Tokens,Casual Usage (mn),Host,User,Internal ID,"
    "Active Process,Client Code Version,Session ID,Granted Since,Last Used At,Granted At,Queue Position,"
)


def spread(features, checkouts, now, seed):
    """Yield (feature index, [(user, host, start, licenses)]) for each feature: `checkouts` shared out over them."""
    rng = random.Random(seed)
    users = [f"user{n:04d}" for n in range(800)]
    for i in range(features):
        held = []
        for _ in range(checkouts // features + (1 if i < checkouts % features else 0)):
            start = now - datetime.timedelta(minutes=rng.randrange(7 * 1440), seconds=rng.randrange(60))
            held.append((rng.choice(users), f"ws-{rng.randrange(2000):04d}", start, rng.choice([1, 1, 1, 1, 2, 4, 16])))
        yield i, held


def rlmstat_output(features, checkouts, now, seed=7, server="5053@rlm01"):
    """Return `rlmutil rlmstat -a` output (v15) of one ISV serving `features` products."""
    port, host = server.split("@")
    out = [f"Setting license file path to {server}", "rlmutil v15.2", "", f"rlm status on {host} (port {port}), up 3d 02:11:40"]
    out += ["rlm software version v15.2 (build:3)", "", "--------- ISV servers ----------", "   Name  Port Running Restarts"]
    out += ["artisan  41987   Yes      0", "------------------------", ""]
    out += [f"artisan ISV server status on {host} (port 41987), up 3d 02:11:33", "artisan software version v15.2 (build: 3)"]
    pools, usage = [f"artisan license pool status on {host} (port 41987)", ""], []
    handle = 0x100
    for i, held in spread(features, checkouts, now, seed):
        name, exp = f"product_{i:04d}", f"{1 + i % 28}-{MONTHS[i % 12]}-{2026 + i % 3}"
        pools += [
            f"{name} v3.1",
            f"    count: {sum(h[3] for h in held) + 10}, # reservations: 0, inuse: {sum(h[3] for h in held)}, exp: {exp}",
        ]
        pools.append("    obsolete: 0, min_remove: 120, total checkouts: 8212")
        for user, where, start, count in held:
            handle += 1
            usage.append(f"{name} v3.1: {user}@{where} {count}/0 at {start:%m/%d %H:%M}  (handle: {handle:x})")
    out += pools + ["", f"artisan license usage status on {host} (port 41987)", ""] + usage
    return "\n".join(out) + "\n"


def lmx_output(features, checkouts, now, seed=7, server="6200@lmx01"):
    """Return `lmxendutil -licstat` output of one LM-X v5 server serving `features` features."""
    out = [
        "LM-X End-user Utility v4.9.3",
        "",
        "+" * 40,
        f"LM-X License Server on {server}:",
        "",
        "Server version: v5.1 Uptime: 3 day(s)",
    ]
    for i, held in spread(features, checkouts, now, seed):
        out += [
            "-" * 40,
            f"Feature: FEATURE_{i:04d} Version: 21.0 Vendor: ALTAIR",
            "Start date: 2024-02-17 Expire date: 2027-01-31",
        ]
        out += [
            "Key type: EXCLUSIVE License sharing: HOST USER VIRTUAL",
            "",
            f"{sum(h[3] for h in held)} of 100000 license(s) used:",
        ]
        for user, where, start, count in held:
            out += ["", f"{count} license(s) used by {user}@{where} [10.1.2.3]"]
            out += [f"Login time: {start:%Y-%m-%d %H:%M}   Checkout time: {start:%Y-%m-%d %H:%M}", f"Shared on username: {user}"]
    return "\n".join(out) + "\n"


def dsls_output(features, checkouts, now, seed=7, server="4085@dsls01"):
    """Return `DSLicSrv -admin`'s answer to connect and getLicenseUsage -csv: `features` token features."""
    out = ["License Administration Tool Version 6.424.0 Built on Jun 1, 2022, 5:10:11 AM.", "admin >\tSoftware version: 6.424.0"]
    out += [
        "\tStandalone mode",
        "\tReady: yes",
        f"\tServer name: {server.split('@')[1]}   Server id: DYP-1",
        "admin >" + DSLS_COLUMNS,
    ]
    session = 0x2DBE00
    for i, held in spread(features, checkouts, now, seed):
        head = f"Dassault Systemes,5E756A80,F{i:04d},Token,STD,423,2027-01-01 00:59:00,YLC,0,2027-01-01 00:59:00,11723,"
        head += f"{sum(h[3] for h in held) + 10},{sum(h[3] for h in held)},"
        if not held:
            out.append(head)
        for user, where, start, count in held:
            session += 1
            when = f"{start:%Y-%m-%d %H:%M:%S}"
            who = f"{count},,{where} (0123.0)/10.1.2.3,{user},F{i:04d},/opt/ds/bin/x ( 4872),6.424,{session:X}"
            out.append(head + f"{who},{when},{when},{when},")
    return "\n".join(out + ["admin >"]) + "\n"


def summary(report):
    """Return what a report says of features, checkouts and queued requests (fields other helpers may add aside)."""
    features = sorted((f.name, f.vendor, f.issued, f.in_use, f.expiry) for f in report.features.values())
    return report.up, features, sorted(report.checkouts, key=repr), sorted(report.queued, key=repr), report.malformed


def yearless(text, when, tz):
    """Epoch seconds of "11/30 9:04": strptime with this year, a year back when more than a day ahead."""
    moment = datetime.datetime.strptime(f"{when.year} {text}", "%Y %m/%d %H:%M").replace(tzinfo=tz)
    if moment.timestamp() > when.timestamp() + 86400:
        moment = moment.replace(year=moment.year - 1)
    return moment.timestamp()


B_RLM_USE = re.compile(r"(\S+) v(\S*): (.+)@(\S+) (\d+)/\d+ at (\d+/\d+ \d+:\d+)\s+\(handle: ([0-9a-fA-F]+)\)")
B_RLM_SECTION = re.compile(r"(\S+) (ISV server|license pool|license usage) status on ")
B_RLM_POOL = re.compile(r"(\S+) v(\S+?)(?:, pool: \d+)?")
B_RLM_COUNTS = re.compile(r"count: (\d+), # reservations: \d+, inuse: (\d+), exp: (.+)")
B_RLM_VERSION = re.compile(r"(\S+) software version (v\S+)")


def baseline_rlmstat(text, now, tz):
    """Read rlmstat -a output line by line: the section decides which regex reads a line."""
    report, when = StatusReport(up=True), datetime.datetime.fromtimestamp(now, tz)
    isv = section = product = None
    rows = {}  # product -> [vendor, issued, in use, expiry]
    for raw in text.splitlines():
        line = raw.strip()
        if m := B_RLM_SECTION.match(line):
            isv, section = m.group(1), m.group(2)
            report.vendors.setdefault(isv, "UP")
        elif section == "license usage" and (m := B_RLM_USE.fullmatch(line)):
            start = yearless(m.group(6), when, tz)
            report.checkouts.append(
                Checkout(m.group(1), m.group(3), m.group(4), None, m.group(2), m.group(7), start, int(m.group(5)), isv)
            )
        elif section == "license pool" and line.startswith("count:"):
            m = B_RLM_COUNTS.fullmatch(line)
            row = rows.setdefault(product, [isv, 0, 0, None])
            row[1], row[2], row[3] = row[1] + int(m.group(1)), row[2] + int(m.group(2)), parse_expiry(m.group(3))
        elif section == "license pool" and (m := B_RLM_POOL.fullmatch(line)):
            product = m.group(1)
        elif section == "ISV server" and (m := B_RLM_VERSION.match(line)) and m.group(1) == isv:
            report.vendors[isv] = m.group(2)
    for name, (vendor, issued, in_use, expiry) in rows.items():
        report.features[name] = Feature(name, vendor, issued, in_use, expiry=expiry)
    return report


B_LMX_FEATURE = re.compile(r"Feature: (\S+) Version: (\S*) Vendor: (\S+)")
B_LMX_USED = re.compile(r"(\d+) of (\d+) license\(s\) used:?")
B_LMX_BY = re.compile(r"(\d+) license\(s\) used by (.+)@(\S+) \[[^\]]*\]")
B_LMX_TIME = re.compile(r"Login time: (\S+ \S+)\s+Checkout time: (\S+ \S+)")


def baseline_lmx(text, now, tz):
    """Read lmxendutil -licstat output line by line: a prefix picks the regex, strptime reads the times."""
    report = StatusReport(up=True)
    feature = waiting = None
    rows = {}
    for raw in text.splitlines():
        line = raw.strip()
        if line.startswith("Feature:"):
            feature = B_LMX_FEATURE.fullmatch(line).groups()
            report.vendors[feature[2]] = "v5.1"
        elif line.startswith("Start date:"):
            rows[feature[0]] = [feature[2], None, None, line.partition("Expire date: ")[2]]
        elif " used by " in line:
            waiting = B_LMX_BY.fullmatch(line).groups()
        elif line.startswith("Login time:"):
            checked = datetime.datetime.strptime(B_LMX_TIME.fullmatch(line).group(2), "%Y-%m-%d %H:%M").replace(tzinfo=tz)
            count, user, host = waiting
            report.checkouts.append(
                Checkout(feature[0], user, host, None, feature[1], None, checked.timestamp(), int(count), feature[2])
            )
        elif m := B_LMX_USED.fullmatch(line):
            rows[feature[0]][1:3] = int(m.group(2)), int(m.group(1))
    for name, (vendor, issued, in_use, expiry) in rows.items():
        report.features[name] = Feature(name, vendor, issued, in_use, expiry=expiry)
    return report


def baseline_dsls(text, now, tz):
    """Read DSLicSrv's answer: the lines from the header on through csv.DictReader, each time with strptime."""
    report = StatusReport(up=True)
    lines = [line.removeprefix("admin >") for line in text.splitlines()]
    start = next(i for i, line in enumerate(lines) if line.startswith("Editor,"))
    seen = set()
    for row in csv.DictReader(line for line in lines[start:] if line):
        license = (row["Feature"], row["Count"], row["Inuse"], row["Expiration Date"])
        if license not in seen:
            seen.add(license)
            expiry = row["Expiration Date"][:10]
            report.features[row["Feature"]] = Feature(
                row["Feature"], row["Editor"], int(row["Count"]), int(row["Inuse"]), expiry=expiry
            )
            report.vendors[row["Editor"]] = "v6.424.0"
        if row.get("User"):
            since = datetime.datetime.strptime(row["Granted Since"], "%Y-%m-%d %H:%M:%S").replace(tzinfo=tz).timestamp()
            host = row["Host"].split(" ")[0]
            tokens = int(row["Tokens"] or 1)
            report.checkouts.append(
                Checkout(
                    row["Feature"],
                    row["User"],
                    host,
                    None,
                    row["Client Code Version"],
                    row["Session ID"],
                    since,
                    tokens,
                    row["Editor"],
                )
            )
    return report
