"""Property test: ingesting a random debug log agrees with a plain list-based model of the license server."""

from datetime import datetime, timedelta

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from dash_app.buffer import RealtimeMetricsBuffer
from dash_app.licenses import LicensePool
from dash_app.recording import EventRecorder
from dash_app.sources.flexlm import LogIngest

START = datetime(2024, 3, 14, 21, 0, 0)
FEATURES = {"MLM": ["MATLAB", "SIMULINK"], "snpslmd": ["VCSRuntime_Net"]}
USERS = ["jürgen", "李明"]
HOSTS = ["ws-1"]  # few users and hosts, so the same one often holds several checkouts

vendor = st.sampled_from(sorted(FEATURES))
who = st.tuples(vendor, st.integers(0, 1), st.sampled_from(USERS), st.sampled_from(HOSTS))
operation = st.one_of(
    st.tuples(st.just("out"), st.tuples(who, st.sampled_from([1, 1, 1, 2, 3]))),
    st.tuples(st.just("in"), who),
    st.tuples(st.just("in"), who),
    st.tuples(st.just("denied"), who),
    st.tuples(st.just("queued"), who),
    st.tuples(st.just("down"), st.one_of(st.none(), vendor)),
    st.tuples(st.just("garbage"), st.just(None)),
)
# Gaps up to 80 minutes: long enough to cross midnight, short enough that a day is never skipped unseen.
step = st.tuples(st.integers(0, 4800), operation)


def feature_of(vendor_name, index):
    features = FEATURES[vendor_name]
    return features[index % len(features)]


def render_and_model(steps):
    """Return the log lines and what the license server did: open checkouts, counters, borrows per minute."""
    lines = [f"{START:%H:%M:%S} (lmgrd) TIMESTAMP {START.month}/{START.day}/{START.year}"]
    moment = START
    open_ = []  # [vendor, feature, user, host, licenses, checked out at], oldest first
    counts = dict.fromkeys(("borrows", "returns", "denials", "queued", "ended_by_restart", "unmatched_returns", "malformed"), 0)
    per_minute = {}
    for gap, (kind, arg) in steps:
        moment += timedelta(seconds=gap)
        stamp = f"{moment.hour:2d}:{moment.minute:02d}:{moment.second:02d}"
        if kind == "garbage":
            lines.append("lmgrd: cannot write to socket")
            counts["malformed"] += 1
            continue
        if kind == "down":
            lines.append(f"{stamp} ({arg or 'lmgrd'}) EXITING DUE TO SIGNAL 15")
            ended = [c for c in open_ if arg is None or c[0] == arg]
            counts["ended_by_restart"] += sum(c[4] for c in ended)
            open_ = [c for c in open_ if c not in ended]
            continue
        if kind == "out":
            (v, f, u, h), n = arg
        else:
            v, f, u, h = arg
        feature = feature_of(v, f)
        subject = f'"{feature}" {u}@{h}'
        if kind == "out":
            lines.append(f"{stamp} ({v}) OUT: {subject}  " + (f"({n} licenses)" if n > 1 else ""))
            open_.append([v, feature, u, h, n, moment.timestamp()])
            counts["borrows"] += n
            key = (feature, int(moment.timestamp() // 60))
            per_minute[key] = per_minute.get(key, 0) + n
        elif kind == "in":
            lines.append(f"{stamp} ({v}) IN: {subject}  ")
            match = next((c for c in open_ if c[:4] == [v, feature, u, h]), None)  # the oldest
            if match is None:
                counts["unmatched_returns"] += 1
            else:
                open_.remove(match)
                counts["returns"] += match[4]
        elif kind == "denied":
            lines.append(f"{stamp} ({v}) DENIED: {subject}  (Licensed number of users already reached. (-4,342))")
            counts["denials"] += 1
        else:
            lines.append(f"{stamp} ({v}) QUEUED: {subject}  ")
            counts["queued"] += 1
    held = sorted((c[1], c[2], c[5]) for c in open_ for _ in range(c[4]))
    return lines, held, counts, per_minute


@settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(step, max_size=60))
def test_ingest_agrees_with_the_model(steps):
    lines, held, counts, per_minute = render_and_model(steps)
    buffer = RealtimeMetricsBuffer(retention_seconds=(datetime.now() - START).total_seconds() + 86400 * 3)
    pool = LicensePool({}, EventRecorder(buffer))
    ingest = LogIngest(pool, "prop")
    ingest.start_file("f", 0)
    ingest.feed(lines)

    assert sorted((b.tool, b.user, b.borrowed_at) for b in pool.active_borrows()) == held
    in_use = {}
    for tool, _user, _at in held:
        in_use[tool] = in_use.get(tool, 0) + 1
    assert {e["tool"]: e["borrowed"] for e in pool.status() if e["borrowed"]} == in_use
    assert {name: ingest.counts[name] for name in counts} == counts
    assert ingest.counts["lines"] == len(lines)
    assert ingest.open_borrows == sum(in_use.values())
    flows = buffer.get_minute_flows(int(buffer.retention_seconds))
    assert {(tool, row.minute // 60): row.borrows for tool, rows in flows.items() for row in rows if row.borrows} == per_minute
