"""Benchmark polled sources: parsing one lmstat output, diffing it into the pool, and polling 100 servers.

Run: python benchmarks/bench_sources.py [--features 500] [--checkouts 20000] [--repeat 5] [--servers 100] [--rounds 4]

1. Parse: one lmstat -a output of 500 features and 20,000 checkouts, generated here the way lmstat -a prints it
   (11.19: detail lines at the margin, PID suffixes; some checkouts of several licenses, some lingering, queued lines
   and reservations). The baseline is a competent first parser: a cheap test (a prefix, a substring) sends each line
   to the one regex of its kind, and every start time is read with strptime; both must build the same StatusReport.
   Target: 100 ms or less (best of --repeat).
2. Diff: that poll against the previous one with 1 % of the checkouts gone and 1 % new, through ObservedCheckouts
   into a real pool and buffer. The baseline is a competent first poller: count the licenses per checkout key, return
   what went and borrow what came (without ObservedCheckouts' digests, which let a restart match its borrows again);
   both must leave the same borrows in the pool. Target: 50 ms or less.
3. Poll: --servers servers (each 50 features and 200 checkouts) polled by the real ServerPoller through the fake
   lmutil of the tests, every 2 s for --rounds rounds after the first; this process's CPU time per round, scaled to
   one round every 30 s, is the share of a core. Target: 5 % or less. The fake lmutil is a Python script, whose start
   costs far more than the real (C) lmutil's; its CPU is shown apart.
"""

import argparse
import datetime
import os
import random
import re
import resource
import tempfile
import time
from collections import Counter
from pathlib import Path

from dash_app.buffer import RealtimeMetricsBuffer
from dash_app.licenses import LicensePool
from dash_app.recording import EventRecorder
from dash_app.sources.lmstat import parse_lmstat
from dash_app.sources.lmstat.parse import parse_expiry, split_who
from dash_app.sources.observed import ObservedCheckouts
from dash_app.sources.polling import ServerPoll, ServerPoller
from dash_app.sources.servers import LMSTAT
from dash_app.sources.status import KEY_FIELDS, Checkout, Feature, StatusReport

TARGET_MS = 100.0
MONTHS = ("jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec")
DAYS = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")
UTC = datetime.UTC


def generate(features, checkouts, now, seed=7):
    """Return lmstat -a output of `features` features sharing `checkouts` checkout lines, all started before `now`."""
    rng = random.Random(seed)
    vendors = ["cadmosd", "geotekd"]
    out = [
        "lmutil - Copyright (c) 1989-2024 Flexera. All Rights Reserved.",
        f"Flexible License Manager status on {DAYS[now.weekday()]} {now.month}/{now.day}/{now.year} {now.hour}:{now:%M}",
        "",
        "License server status: 27000@lic01",
        "    License file(s) on lic01: /opt/flexlm/licenses/lic01.lic:",
        "",
        "   lic01: license server UP (MASTER) v11.19.0",
        "",
        "Vendor daemon status (on lic01):",
        "",
    ]
    out += [f"{v:>10}: UP v11.19.0" for v in vendors]
    out += ["Feature usage info:", ""]
    per_feature = [checkouts // features + (1 if i < checkouts % features else 0) for i in range(features)]
    users = [f"user{n:04d}" for n in range(800)]
    handle = 100
    for i, uses in enumerate(per_feature):
        name = f"FEATURE_{i:04d}"
        held = []
        for _ in range(uses):
            # A working week of starts, to the minute: many lines share a start time, as on a busy server.
            start = now - datetime.timedelta(minutes=rng.randrange(7 * 1440))
            count = rng.choice([1, 1, 1, 1, 2, 4, 16])
            held.append((rng.choice(users), f"ws-{rng.randrange(2000):04d}", start, count))
        reserved = 2 if held and i % 50 == 0 else 0
        in_use = sum(h[3] for h in held) + reserved  # FlexNet counts reservations in use
        out += [f"Users of {name}:  (Total of {in_use + 10} licenses issued;  Total of {in_use} licenses in use)", ""]
        if held:
            expiry = "permanent(no expiration date)" if i % 3 == 0 else f"{1 + i % 28}-{MONTHS[i % 12]}-{2026 + i % 3}"
            out += ["  ", f'"{name}" v2024.1, vendor: {vendors[i % 2]}, expiry: {expiry}', "  floating license", ""]
            if reserved:
                out.append(f"\t{reserved} RESERVATIONs for HOST_GROUP cluster_a (lic01/27000)")
            for user, host, start, count in held:
                handle += 1
                when = f"{DAYS[start.weekday()]} {start.month}/{start.day} {start.hour}:{start:%M}"
                licenses = f", {count} licenses" if count > 1 else ""
                tail = "  (linger: 300 / 900)" if handle % 97 == 0 else f", PID: {handle * 7}"
                out.append(f"    {user} {host} {host}:0 (v2024.1) (lic01/27000 {handle}), start {when}{licenses}{tail}")
            if i % 40 == 0:
                out.append(f"    {users[i]} ws-9999 ws-9999:0 (v2024.1) (lic01/27000 {handle + 1}) queued for 2 licenses")
        out.append("")
    return "\n".join(out) + "\n"


# The baseline: what a competent first parser does. Each line goes by a cheap test (a prefix, a substring) to the one
# regex of its kind, and each start time is read with strptime; no caching, no year or leap-day subtleties.
B_VENDOR = re.compile(r"(\S+): (UP|The desired vendor daemon is down.*)(?: (v\S+))?")
B_SERVED = re.compile(r"Users of features served by (\S+):")
B_USERS = re.compile(r"Users of (\S+?):\s+(.*)")
B_TOTALS = re.compile(r"\(Total of (\d+) licenses? issued;\s+Total of (\d+) licenses? in use\)")
B_DETAIL = re.compile(r"\"([^\"]*)\" v(\S*?),? vendor: ([^,\s]+)(?:, expiry: (.*))?")
B_CHECKOUT = re.compile(
    r"(.+?)(?: \(v([^()\s]*)\))?(?: \(([^()/]+/[^()]*)\))?, start (\w+ \d{1,2}/\d{1,2} \d{1,2}:\d\d)(?:, (\d+) licenses?)?(.*)"
)
B_QUEUED = re.compile(r"(.+?)(?: \(v([^()\s]*)\))?(?: \(([^()/]+/[^()]*)\))? queued for (\d+) licenses?")
B_RESERVATION = re.compile(r"\d+ RESERVATIONs? for .*")


def baseline_start(text, now, tz):
    """Epoch seconds of "Mon 11/30 9:04": strptime with this year, a year back when more than a day ahead."""
    moment = datetime.datetime.strptime(f"{now.year} {text.split(' ', 1)[1]}", "%Y %m/%d %H:%M").replace(tzinfo=tz)
    if moment.timestamp() > now.timestamp() + 86400:
        moment = moment.replace(year=moment.year - 1)
    return moment.timestamp()


def baseline_parse(text, now, tz):
    """Read lmstat -a output line by line: a cheap test picks the line's kind, one regex reads it."""
    report = StatusReport(up=True)
    when = datetime.datetime.fromtimestamp(now, tz)
    feature = vendor = section = None
    rows = {}  # feature -> [vendor, issued, in use, expiry, error, reserved, queued, licenses listed]
    for raw in text.splitlines():
        line = raw.strip()
        if ", start " in line and feature is not None:
            m = B_CHECKOUT.fullmatch(line)
            user, host, display = split_who(m.group(1))
            start = baseline_start(m.group(4), when, tz)
            report.checkouts.append(
                Checkout(feature, user, host, display, m.group(2), m.group(3), start, int(m.group(5) or 1), vendor)
            )
            rows[feature][7] += int(m.group(5) or 1)
        elif " queued for " in line and feature is not None:
            m = B_QUEUED.fullmatch(line)
            user, host, display = split_who(m.group(1))
            report.queued.append(Checkout(feature, user, host, display, m.group(2), m.group(3), None, int(m.group(4)), vendor))
            rows[feature][6] += int(m.group(4))
        elif line.startswith("Users of "):
            if m := B_SERVED.fullmatch(line):
                section = m.group(1)
                continue
            m = B_USERS.fullmatch(line)
            feature, rest = m.group(1), m.group(2)
            vendor = section or (next(iter(report.vendors)) if len(report.vendors) == 1 else None)
            if totals := B_TOTALS.fullmatch(rest):
                rows[feature] = [vendor, int(totals.group(1)), int(totals.group(2)), None, None, 0, 0, 0]
            elif rest.startswith("(Uncounted"):
                rows[feature] = [vendor, None, 0, None, None, 0, 0, 0]
            else:
                rows[feature] = [vendor, None, None, None, rest.strip("()"), 0, 0, 0]
        elif line.startswith('"') and feature is not None:
            m = B_DETAIL.fullmatch(line)
            vendor = rows[feature][0] = m.group(3)
            if m.group(4):
                rows[feature][3] = parse_expiry(m.group(4))
        elif B_RESERVATION.fullmatch(line):
            report.reservations.append(line)
            if feature is not None:
                rows[feature][5] += int(line.split(" ", 1)[0])
        elif line.startswith(("lmgrd is not running:", "Error getting status:")):
            report.up, report.error = False, line
        elif feature is None and (m := B_VENDOR.fullmatch(line)) and " license server " not in line:
            report.vendors[m.group(1)] = (m.group(3) or "UP") if m.group(2) == "UP" else "down"
    for name, (vendor, issued, in_use, expiry, error, reserved, queued, held) in rows.items():
        listed = None if error is not None else held + reserved  # FlexNet counts reservations in use
        report.features[name] = Feature(name, vendor, issued, in_use, expiry, error, reserved, queued, listed)
    return report


def best_of(repeat, fn):
    """Return (best seconds, last result) of `repeat` calls."""
    best, result = float("inf"), None
    for _ in range(repeat):
        start = time.perf_counter()
        result = fn()
        best = min(best, time.perf_counter() - start)
    return best, result


DIFF_TARGET_MS = 50.0
CPU_TARGET = 0.05
FAKE_LMUTIL = Path(__file__).resolve().parents[1] / "tests" / "fixtures" / "fake_lmutil"


def churned(checkouts, share, seed=3):
    """Return `checkouts` with `share` of them gone and as many new ones (other users, new handles, started now)."""
    rng = random.Random(seed)
    gone = set(rng.sample(range(len(checkouts)), int(len(checkouts) * share)))
    kept = [c for i, c in enumerate(checkouts) if i not in gone]
    fresh = [c._replace(user=f"new{i}", handle=f"lic01/27000 {900000 + i}") for i, c in enumerate(checkouts) if i in gone]
    return kept + fresh


def fresh_pool():
    """Return a pool over an empty inventory with a real buffer (every feature is a tool of its own)."""
    return LicensePool({}, EventRecorder(RealtimeMetricsBuffer(max_borrows=1_000_000, max_returns=1_000_000)))


class KeyDiff:
    """The baseline poller: count each checkout key's licenses, return what went, borrow what came (no restart care)."""

    def __init__(self, pool):
        self.pool = pool
        self.held = {}  # checkout key -> borrow ids

    def apply(self, polled, at):
        wanted, first = Counter(), {}
        for c in polled:
            wanted[c[:KEY_FIELDS]] += c.licenses
            first.setdefault(c[:KEY_FIELDS], c)
        with self.pool.recording_batch():
            for key, ids in list(self.held.items()):
                while len(ids) > wanted[key]:
                    self.pool.observe_return(ids.pop(), at)
                if not ids:
                    del self.held[key]
            for key, count in wanted.items():
                ids = self.held.setdefault(key, [])
                c = first[key]
                start = c.started_at if c.started_at is not None and c.started_at <= at else at
                while len(ids) < count:
                    ids.append(self.pool.observe_borrow(c.feature, c.user, start, None, c.host, c.version).id)


def held_by(pool):
    """Return what `pool` holds: a count per (tool, user, host, version, borrowed at)."""
    return Counter((b.tool, b.user, b.host, b.version, b.borrowed_at) for b in pool.active_borrows())


def bench_diff(checkouts, now, repeat):
    """Return (ours, baseline) best seconds of diffing a poll with 1 % churn into the pool; both must hold the same."""
    after = churned(checkouts, 0.01)
    polls = [after if step % 2 == 0 else checkouts for step in range(repeat)]
    results = []
    for make in (lambda pool: ObservedCheckouts(pool, "lmstat", "27000@lic01"), KeyDiff):
        pool = fresh_pool()
        differ = make(pool)
        differ.apply(checkouts, now)
        best = float("inf")
        for polled in polls:
            started = time.perf_counter()
            differ.apply(polled, now + 1)
            best = min(best, time.perf_counter() - started)
        results.append((best, held_by(pool)))
    (ours, ours_held), (baseline, base_held) = results
    if ours_held != base_held:
        raise SystemExit("the two pollers leave different borrows in the pool")
    return ours, baseline


def bench_polling(servers, rounds, now):
    """Return (this process's CPU seconds per round, the fake lmutil's CPU seconds per round, seconds per round)."""
    with tempfile.TemporaryDirectory() as folder:
        names = [f"{27000 + n}@lic{n:03d}" for n in range(servers)]
        for n, name in enumerate(names):
            Path(folder, f"{name}.txt").write_text(generate(50, 200, now, seed=n).replace("27000@lic01", name))
        os.environ["FAKE_LMUTIL_DIR"] = folder
        pool = fresh_pool()
        polls = [ServerPoll(LMSTAT, str(FAKE_LMUTIL), name, pool, time.time) for name in names]
        poller = ServerPoller(polls, poll_seconds=2.0)
        poller.start()
        try:
            if not poller.wait_rounds(1, timeout=120):
                raise SystemExit("the first round of polls did not finish")
            self_before = resource.getrusage(resource.RUSAGE_SELF)
            children_before = resource.getrusage(resource.RUSAGE_CHILDREN)
            started = time.monotonic()
            if not poller.wait_rounds(rounds, timeout=60 * rounds):
                raise SystemExit("polls did not finish")
            elapsed = time.monotonic() - started
            self_after = resource.getrusage(resource.RUSAGE_SELF)
            children_after = resource.getrusage(resource.RUSAGE_CHILDREN)
        finally:
            poller.stop()
        down = [p.server for p in polls if p.health.state != "up"]
        if down:
            raise SystemExit(f"servers down during the benchmark: {down[:3]}")

    def cpu(after, before):
        return (after.ru_utime + after.ru_stime) - (before.ru_utime + before.ru_stime)

    return cpu(self_after, self_before) / rounds, cpu(children_after, children_before) / rounds, elapsed / rounds


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--features", type=int, default=500)
    parser.add_argument("--checkouts", type=int, default=20_000)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--servers", type=int, default=100)
    parser.add_argument("--rounds", type=int, default=4)
    args = parser.parse_args()

    now = datetime.datetime(2025, 1, 14, 10, 2, tzinfo=UTC)
    text = generate(args.features, args.checkouts, now)
    lines = text.count("\n")
    ours_s, ours = best_of(args.repeat, lambda: parse_lmstat(text, now.timestamp(), UTC))
    base_s, base = best_of(args.repeat, lambda: baseline_parse(text, now.timestamp(), UTC))

    print(
        f"lmstat -a output: {args.features:,} features, {len(ours.checkouts):,} checkouts, {lines:,} lines, "
        f"{len(text) / 1e6:.2f} MB; best of {args.repeat}"
    )
    print(f"{'parser':<34} {'ms':>9} {'lines/s':>12}")
    for label, seconds in (("parse_lmstat", ours_s), ("baseline (regex per line kind)", base_s)):
        print(f"{label:<34} {seconds * 1000:>9.1f} {lines / seconds:>12,.0f}")
    print(f"speed-up: {base_s / ours_s:.1f}x; target <= {TARGET_MS:.0f} ms: {'met' if ours_s * 1000 <= TARGET_MS else 'MISSED'}")
    if ours != base:
        raise SystemExit("the two parsers disagree")
    if len(ours.checkouts) != args.checkouts:
        raise SystemExit(f"expected {args.checkouts} checkouts, read {len(ours.checkouts)}")
    print("both parsers built the same StatusReport")

    # Start times relative to the real clock: the buffer refuses events from the future.
    live_now = datetime.datetime.now(UTC).replace(second=0, microsecond=0)
    live = parse_lmstat(generate(args.features, args.checkouts, live_now), live_now.timestamp(), UTC)
    ours_diff, base_diff = bench_diff(live.checkouts, time.time(), args.repeat)
    print()
    print(f"diff of a poll with 1 % churn ({len(live.checkouts):,} checkouts) into the pool, best of {args.repeat}")
    print(f"{'ObservedCheckouts.apply':<34} {ours_diff * 1000:>9.1f} ms")
    print(f"{'baseline (diff by checkout key)':<34} {base_diff * 1000:>9.1f} ms")
    met = "met" if ours_diff * 1000 <= DIFF_TARGET_MS else "MISSED"
    print(f"speed-up: {base_diff / ours_diff:.1f}x; target <= {DIFF_TARGET_MS:.0f} ms: {met}; both leave the same borrows")

    per_round, fake, seconds = bench_polling(args.servers, args.rounds, live_now)
    share = per_round / 30.0
    print()
    print(f"{args.servers} servers (50 features, 200 checkouts each) polled every 2 s, {args.rounds} rounds")
    print(f"{'our CPU per round':<34} {per_round * 1000:>9.1f} ms   (a round took {seconds:.2f} s of wall time)")
    print(
        f"{'as a share of a core at 30 s':<34} {share * 100:>9.2f} %   (target <= {CPU_TARGET * 100:.0f} %: "
        f"{'met' if share <= CPU_TARGET else 'MISSED'})"
    )
    print(f"{'the fake lmutil (Python) per round':<34} {fake * 1000:>9.1f} ms   (the vendor tool's cost, not ours)")


if __name__ == "__main__":
    main()
