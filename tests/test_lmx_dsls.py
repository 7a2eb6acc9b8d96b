"""LM-X and DSLS: their answers read into StatusReports (public samples, generated, cut-off, huge, failing ones), polled
through fake lmxendutil and DSLicSrv, and one real server polling both."""

import datetime
import json
import time
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
import requests
from hypothesis import given, settings
from hypothesis import strategies as st

from dash_app.buffer import RealtimeMetricsBuffer
from dash_app.licenses import LicensePool
from dash_app.recording import EventRecorder
from dash_app.sources.dsls import parse_dsls
from dash_app.sources.lmx import parse_lmx
from dash_app.sources.lmx.parse import IsoTimes
from dash_app.sources.polling import ServerPoll
from dash_app.sources.servers import DSLS, LMX
from dash_app.sources.status import Checkout, Feature, StatusReport, UnparsableOutput
from dash_app.testing.commands import run_refused

FIXTURES = Path(__file__).parent / "fixtures"
FAKE_LMXENDUTIL = FIXTURES / "fake_lmxendutil"
FAKE_DSLICSRV = FIXTURES / "fake_dslicsrv"
UTC = datetime.UTC
DSLS_HEADER = (
    "Editor,EditorId,Feature,Model,Commercial Type,Max Release Number,Max Release Date,Pricing Structure,"
    "Max Casual Duration,Expiration Date,Customer ID,Count,Inuse,Tokens,Casual Usage (mn),Host,User,Internal ID,"
    "Active Process,Client Code Version,Session ID,Granted Since,Last Used At,Granted At,Queue Position,"
)
DSLS_BANNER = (
    "License Administration Tool Version 6.424.0 Built on Jun 1, 2022, 5:10:11 AM.\n"
    "admin >\tSoftware version: 6.424.0\n\tStandalone mode\n\tReady: yes\n\tServer name: ds01   Server id: DYP-1\n"
)


def at(*parts):
    """Return the epoch seconds of a UTC date and time."""
    return datetime.datetime(*parts, tzinfo=UTC).timestamp()


def fixture(kind, name):
    return (FIXTURES / kind / name).read_text()


def local(stamp, seconds=False):
    """Return `stamp` as LM-X and DSLS print times (local time, the date in full)."""
    return time.strftime("%Y-%m-%d %H:%M:%S" if seconds else "%Y-%m-%d %H:%M", time.localtime(stamp))


def lmx_output(server, features):
    """Return lmxendutil -licstat output: `features` is [(name, issued, [(user, host, licenses, start text)])]."""
    lines = ["LM-X End-user Utility v4.9.3", "", "+" * 40, f"LM-X License Server on {server}:", "", "Server version: v4.9.3"]
    for name, issued, held in features:
        lines += ["-" * 40, f"Feature: {name} Version: 2024.1 Vendor: ALTAIR", "Start date: 2024-01-01 Expire date: 2027-03-31"]
        lines += [
            "Key type: EXCLUSIVE License sharing: HOST USER VIRTUAL",
            "",
            f"{sum(h[2] for h in held)} of {issued} license(s) used:",
        ]
        for user, host, licenses, start in held:
            lines += [
                "",
                f"{licenses} license(s) used by {user}@{host} [10.0.0.7]",
                f"Login time: {start}   Checkout time: {start}",
            ]
    return "\n".join(lines) + "\n"


def dsls_row(feature, count, inuse, user="", tokens="", host="", since="", session="", queue="", expiry="2027-03-31"):
    """Return one getLicenseUsage -csv row (a license's columns, then its user's if any)."""
    head = f"Dassault Systemes,5E756A80,{feature},Token,STD,423,{expiry} 00:59:00,YLC,0,{expiry} 00:59:00,11723,{count},{inuse},"
    if not user:
        return head
    who = f"{tokens},,{host} (0123.0)/10.0.0.7,{user},{feature},/opt/ds/bin/abaqus ( 4872),6.424,{session}"
    return head + f"{who},{since},{since},{since},{queue},"


def dsls_output(rows):
    return DSLS_BANNER + "admin >" + DSLS_HEADER + "\n" + "\n".join(rows) + "\nadmin >\n"


def listed(report, feature):
    return sum(c.licenses for c in report.checkouts if c.feature == feature)


# ------------------------------------------------------------------------------------------------------------ LM-X


def test_lmx_altair_units_every_line_read():
    """Altair units: the server's own "N of M" counts; an unlimited count is uncounted; each checkout dated by its line."""
    report = parse_lmx(fixture("lmx", "lmx01_altair_units.txt"), at(2022, 2, 18, 10, 0), UTC)

    def co(feature, user, host, started, licenses):
        return Checkout(feature, user, host, None, "21.0", None, started, licenses, "ALTAIR")

    def feature(name, issued, in_use):
        # Every feature is whole here: its checkout lines hold what the server says is in use.
        return Feature(name, "ALTAIR", issued, in_use, expiry="2023-01-31", listed=in_use)

    assert report == StatusReport(
        up=True,
        features={
            "CatiaV5Reader": feature("CatiaV5Reader", 3, 0),
            "GlobalZoneEU": feature("GlobalZoneEU", 1000003, 40000),
            "HWAIFPBS": feature("HWAIFPBS", None, 0),  # 0 of 2147483647: no limit
            "HWAWPF": feature("HWAWPF", None, 0),
            "HWActivate": feature("HWActivate", None, 0),
            "HWFlux2D": feature("HWFlux2D", None, 30000),
            "HyperWorks": feature("HyperWorks", 1000000, 25000),
        },
        checkouts=[
            co("GlobalZoneEU", "VRAAFG", "RD0082879", at(2022, 2, 18, 9, 29), 15000),
            co("GlobalZoneEU", "VRAAFG", "RD0082879", at(2022, 2, 18, 9, 26), 25000),
            co("HWFlux2D", "VRAAFG", "RD0082879", at(2022, 2, 18, 9, 29), 15000),
            co("HWFlux2D", "VRAAFG", "RD0082879", at(2022, 2, 18, 9, 26), 15000),
            co("HyperWorks", "sssaah", "RD0082406", at(2022, 2, 18, 9, 26), 25000),
        ],
        vendors={"ALTAIR": "v5.1"},
    )


def test_lmx_indented_times_a_start_date_of_none_and_nothing_in_use():
    report = parse_lmx(fixture("lmx", "lmx02_host_user_sharing.txt"), at(2024, 3, 12), UTC)
    assert report.features == {"FEMFAT_VISUALIZER": Feature("FEMFAT_VISUALIZER", "abc", 2, 2, expiry="2024-06-30", listed=2)}
    assert [(c.user, c.host, c.version, c.started_at, c.licenses) for c in report.checkouts] == [
        ("fdsva1", "dcv046.com_ver2023", "2024.0", at(2024, 3, 11, 12, 50), 1),
        ("asdsc1", "dcv048.com_ver2022a", "2024.0", at(2024, 3, 11, 17, 29), 1),
    ]
    assert (report.vendors, report.malformed) == ({"abc": "v4.9.3"}, 0)
    quiet = parse_lmx(fixture("lmx", "lmx03_nothing_in_use.txt"), at(2024, 3, 12), UTC)
    assert (quiet.up, quiet.checkouts, sorted(quiet.features)) == (True, [], ["CatiaV5Reader", "GlobalZoneEU", "HyperWorks"])
    assert all(f.in_use == 0 for f in quiet.features.values())


def test_lmx_borrowed_licenses_repeated_features_and_bad_lines():
    """A borrowed license is dated by its login; a feature listed twice adds up; a line that cannot be read is counted."""
    text = lmx_output("6200@lic01", [("SOLVER", 10, [("ann", "ws-1", 2, "2025-01-14 08:00")])])
    text += "\n".join(
        [
            "-" * 40,
            "Feature: SOLVER Version: 2023.1 Vendor: ALTAIR",
            "Start date: 2023-01-01 Expire date: 2028-12-31",
            "3 of 5 license(s) used:",
            "1 license(s) used by bob@laptop-7 [10.0.0.9]",
            "Login time: 2025-01-10 17:00   Borrow expire time: 2025-01-17 17:00",
            "1 license(s) used by cy@ws-3 [10.0.0.3]",  # no time line follows: not read as a checkout
            "1 license(s) used by dee@ws-4 [10.0.0.4]",
            "Login time: 2025-01-14 09:00   Checkout time: 2025-13-40 09:00",  # no such date
            "Feature: BROKEN Vendor ALTAIR",
        ]
    )
    report = parse_lmx(text + "\n", at(2025, 1, 14, 10, 0), UTC)
    # Two lines unread: the section lists 3 of the 5 in use, so a poll keeps what it held of SOLVER.
    assert report.features == {"SOLVER": Feature("SOLVER", "ALTAIR", 15, 5, expiry="2028-12-31", listed=3)}
    assert [(c.user, c.version, c.started_at, c.licenses) for c in report.checkouts] == [
        ("ann", "2024.1", at(2025, 1, 14, 8, 0), 2),
        ("bob", "2023.1", at(2025, 1, 10, 17, 0), 1),
    ]
    assert report.malformed == 3  # cy's line without its time, dee's impossible date, the broken feature line


def test_lmx_no_server_is_a_down_report_and_garbage_or_nothing_is_no_report():
    down = parse_lmx(fixture("lmx", "lmx_down_no_server.txt"), at(2025, 1, 14), UTC)
    assert (down.up, down.error) == (False, "There are no license server(s) available.")
    for text in (fixture("lmx", "garbage.txt"), "", "\n\n", "LM-X End-user Utility v3.32\n"):
        with pytest.raises(UnparsableOutput, match="LM-X License Server on"):
            parse_lmx(text, at(2025, 1, 14), UTC)


# ------------------------------------------------------------------------------------------------------------ DSLS


def test_dsls_powerflow_tokens_every_row_read():
    """Token licenses: "Inuse" is the server's figure, each user's "Tokens" what they hold; the rest are counts only."""
    report = parse_dsls(fixture("dsls", "dsls01_powerflow_tokens.txt"), at(2024, 9, 18, 16, 0), UTC)
    counts = {name: (f.issued, f.in_use, f.expiry, f.vendor) for name, f in report.features.items()}
    ds = "Dassault Systemes"
    assert counts == {
        "PAC": (1, 0, "2025-01-01", ds),
        "PAJ": (6, 0, "2025-01-01", ds),
        "PCA": (4, 0, "2025-01-01", ds),
        "PCO": (2, 0, "2025-01-01", ds),
        "PD5": (1, 0, "2025-01-01", ds),
        "PV6": (7, 0, "2025-01-01", ds),
        "PVG": (2, 0, "2025-01-01", ds),
        "PW7": (2000, 2, "2025-01-01", ds),
        "PW8": (2000, 0, "2025-01-01", ds),
        "SRU": (2374, 1559, "2025-01-01", ds),
    }
    since = at(2024, 9, 17, 17, 59, 34)
    assert report.checkouts == [
        Checkout("PW7", "user_1", "nid001627", None, "6.424", "2DBE10", since, 2, ds),
        Checkout("SRU", "user_2", "nid001626", None, "6.424", "2DBE16", since, 493, ds),
        Checkout("SRU", "user_3", "nid001601", None, "6.424", "2DBE17", since, 533, ds),
        Checkout("SRU", "user_4", "nid001671", None, "6.424", "2DBE18", since, 533, ds),
    ]
    assert all(listed(report, name) == f.in_use for name, f in report.features.items())
    assert (report.vendors, report.malformed, report.queued) == ({ds: "v6.424.0"}, 0, [])
    quiet = parse_dsls(fixture("dsls", "dsls02_nothing_in_use.txt"), at(2024, 9, 18), UTC)
    assert (quiet.checkouts, len(quiet.features)) == ([], 10)
    assert all(f.in_use == 0 for f in quiet.features.values())


def test_dsls_rows_are_read_by_their_column_names():
    """Columns found by name (in any order), the prompt anywhere or nowhere, a user license, a queue, two licenses."""
    since = "2025-01-14 08:30:00"
    rows = [
        dsls_row("CATIA_MD2", 5, 2, "ann", "", "ws-1", since, "S1"),  # a user license: no tokens, one license
        dsls_row("CATIA_MD2", 5, 2, "bob", "", "ws-2", since, "S2"),
        dsls_row("CATIA_MD2", 5, 2, "cy", "", "ws-3", "", "S3", queue="1"),  # waiting: holds nothing
        dsls_row("CATIA_MD2", 3, 1, "dee", "", "ws-4", since, "S4", expiry="2028-06-30"),  # a second license of it
    ]
    header = DSLS_HEADER.split(",")
    order = list(reversed(range(len(header) - 1)))  # every named column, last first (the trailing empty one dropped)
    shuffled = [",".join(cells[i] for i in order) for cells in (row.split(",") + [""] * len(header) for row in rows)]
    for text in (
        dsls_output(rows),
        DSLS_BANNER + "admin >getLicenseUsage -csv\n" + DSLS_HEADER + "\n" + "\n".join(rows) + "\nadmin >quit\n",
        DSLS_BANNER + ",".join(header[i] for i in order) + "\n" + "\n".join(shuffled) + "\n",
    ):
        report = parse_dsls(text, at(2025, 1, 14, 9, 0), UTC)
        assert report.features == {"CATIA_MD2": Feature("CATIA_MD2", "Dassault Systemes", 8, 3, expiry="2028-06-30", listed=3)}
        assert [(c.user, c.host, c.licenses, c.handle, c.started_at) for c in report.checkouts] == [
            ("ann", "ws-1", 1, "S1", at(2025, 1, 14, 8, 30)),
            ("bob", "ws-2", 1, "S2", at(2025, 1, 14, 8, 30)),
            ("dee", "ws-4", 1, "S4", at(2025, 1, 14, 8, 30)),
        ]
        assert [(q.user, q.started_at) for q in report.queued] == [("cy", None)]
        assert report.malformed == 0


def test_dsls_a_quoted_cell_with_a_comma_stays_one_cell():
    row = dsls_row("SRU", 10, 4, "ann", "4", "ws-1", "2025-01-14 08:30:00", "S1")
    quoted = row.replace("/opt/ds/bin/abaqus ( 4872)", '"C:\\Program Files\\Dassault Systemes, B424\\abaqus.exe ( 4872)"')
    report = parse_dsls(dsls_output([quoted]), at(2025, 1, 14, 9, 0), UTC)
    assert [(c.user, c.host, c.licenses, c.version, c.handle) for c in report.checkouts] == [("ann", "ws-1", 4, "6.424", "S1")]
    assert report.malformed == 0


def test_dsls_unreachable_or_not_ready_is_down_and_garbage_is_no_report():
    refused = "License Administration Tool Version 6.424.0\nadmin >ERROR: cannot connect to ds09 on port 4085\nadmin >\n"
    assert parse_dsls(refused, 0.0) == StatusReport(up=False, error="ERROR: cannot connect to ds09 on port 4085")
    not_ready = DSLS_BANNER.replace("Ready: yes", "Ready: no")
    assert parse_dsls(not_ready, 0.0) == StatusReport(up=False, error="server not ready: Ready: no")
    # A server whose name looks like an error word is no error.
    named = DSLS_BANNER.replace("ds01", "error-lic") + "admin >" + DSLS_HEADER + "\n" + dsls_row("PAC", 1, 0) + "\n"
    assert parse_dsls(named, 0.0).features["PAC"].issued == 1
    for text in ("", "Segmentation fault\n", DSLS_BANNER, DSLS_BANNER + "admin >Editor,EditorId,Feature,Model\n"):
        with pytest.raises(UnparsableOutput, match="getLicenseUsage"):
            parse_dsls(text, 0.0)


# ---------------------------------------------------------------------------------------- every reading rule, both


@pytest.mark.parametrize(
    ("parse", "text"),
    [
        (parse_lmx, fixture("lmx", "lmx01_altair_units.txt")),
        (parse_dsls, fixture("dsls", "dsls01_powerflow_tokens.txt")),
        (parse_dsls, dsls_output([dsls_row("F", 9, 3, u, "", "ws", "2025-01-14 08:30:00", u) for u in ("a", "b", "c")])),
    ],
    ids=["lmx", "dsls-tokens", "dsls-users"],
)
def test_a_cut_off_answer_never_passes_for_a_whole_one(parse, text):
    """Cut anywhere: a feature whose listed licenses match the server's count lists exactly what the whole answer does.

    So the poller's per-feature consistency (listed == in use) is never fooled by a cut-off answer into returning.
    """
    whole = parse(text, at(2025, 1, 14), UTC)
    for end in range(len(text)):
        try:
            cut = parse(text[:end], at(2025, 1, 14), UTC)
        except UnparsableOutput:
            continue
        for name, feature in cut.features.items():
            mine = [c for c in cut.checkouts if c.feature == name]
            if listed(cut, name) == feature.in_use:
                assert mine == [c for c in whole.checkouts if c.feature == name], (end, name)
                assert feature.in_use == whole.features[name].in_use, (end, name)


@pytest.mark.parametrize("kind", ["lmx", "dsls"])
def test_a_huge_answer_is_read_whole(kind):
    """Tens of thousands of checkouts over hundreds of features: every one read, every feature's figures as printed."""
    stamp = "2025-01-14 08:30"
    if kind == "lmx":
        features = [(f"F{i:03d}", 1000, [(f"u{j}", f"ws{j}", 1 + j % 3, stamp) for j in range(100)]) for i in range(200)]
        report = parse_lmx(lmx_output("6200@lic01", features), at(2025, 1, 14, 9, 0), UTC)
    else:
        in_use = sum(1 + j % 3 for j in range(100))
        rows = [
            dsls_row(f"F{i:03d}", 1000, in_use, f"u{j}", str(1 + j % 3), f"ws{j}", stamp + ":00", f"S{i}.{j}")
            for i in range(200)
            for j in range(100)
        ]
        report = parse_dsls(dsls_output(rows), at(2025, 1, 14, 9, 0), UTC)
    assert (len(report.features), len(report.checkouts), report.malformed) == (200, 20_000, 0)
    assert all(listed(report, name) == f.in_use for name, f in report.features.items())


# ------------------------------------------------------------------------------------ polled through their tools


def poll_of(kind, utility, server):
    pool = LicensePool({}, EventRecorder(RealtimeMetricsBuffer()))
    return pool, ServerPoll(kind, str(utility), server, pool, time.time)


@pytest.mark.parametrize("kind", ["lmx", "dsls"])
def test_polled_through_the_fake_tool_a_failed_poll_changes_nothing(kind, tmp_path, monkeypatch):
    """Checkouts appear with host, version and source; unreachable, failing, slow or garbled answers return nothing."""
    monkeypatch.setenv("FAKE_LMXENDUTIL_DIR", str(tmp_path))
    monkeypatch.setenv("FAKE_DSLICSRV_DIR", str(tmp_path))
    now = time.time()
    start = now - 600
    server = "6200@lic01" if kind == "lmx" else "4085@ds01"

    def answer(users):
        if kind == "lmx":
            return lmx_output(server, [("HyperWorks", 100, [(u, f"ws-{u}", n, local(start)) for u, n in users])])
        rows = [dsls_row("SRU", 100, sum(n for _, n in users), u, str(n), f"ws-{u}", local(start, True), u) for u, n in users]
        return dsls_output(rows)

    pool, poll = poll_of(LMX if kind == "lmx" else DSLS, FAKE_LMXENDUTIL if kind == "lmx" else FAKE_DSLICSRV, server)
    output = tmp_path / f"{server}.txt"
    output.write_text(answer([("ann", 2), ("bob", 3)]))
    assert poll.poll(timeout=10)
    held = pool.active_borrows()
    started = float(int(start) // 60 * 60 if kind == "lmx" else int(start))  # LM-X prints minutes, DSLS seconds
    assert (
        sorted((b.user, b.host, b.borrowed_at) for b in held)
        == [("ann", "ws-ann", started)] * 2 + [("bob", "ws-bob", started)] * 3
    )
    assert {b.id.split("|")[0] for b in held} == {kind}
    assert {b.version for b in held} == ({"2024.1"} if kind == "lmx" else {"6.424"})
    assert poll.health.extra["features"]["HyperWorks" if kind == "lmx" else "SRU"]["expiry"] == "2027-03-31"

    def fails(exit_status=None, sleep=None):
        if exit_status is not None:
            (tmp_path / f"{server}.exit").write_text(str(exit_status))
        if sleep is not None:
            (tmp_path / f"{server}.sleep").write_text(str(sleep))

    unreachable = "no license server(s) available" if kind == "lmx" else "server down: ERROR: cannot connect to ds01"
    for text, status, sleep, expected in (
        (None, None, None, unreachable),  # no answer file: the fake says what its tool says for a dead server
        (answer([]), 3, None, "exit status 3"),  # an answer of nothing held, from a tool that failed
        ("\x00garbage\n", None, None, "output unreadable"),
        (answer([]), None, 3, "no answer within 1 s"),
    ):
        for leftover in (output, tmp_path / f"{server}.exit", tmp_path / f"{server}.sleep"):
            leftover.unlink(missing_ok=True)
        if text is not None:
            output.write_text(text)
        fails(status, sleep)
        assert not poll.poll(timeout=1)
        assert poll.health.state == "down"
        assert expected in poll.health.last_error
        assert len(pool.active_borrows()) == 5  # a failed poll returns nothing
    (tmp_path / f"{server}.sleep").unlink()

    output.write_text(answer([("ann", 2)]))
    assert poll.poll(timeout=10)
    assert sorted(b.user for b in pool.active_borrows()) == ["ann", "ann"]
    assert (poll.health.state, poll.health.counters["returns"]) == ("up", 3)


@pytest.mark.parametrize("kind", ["lmx", "dsls"])
def test_a_cut_off_answer_returns_nothing_and_the_source_names_the_feature(kind, tmp_path, monkeypatch):
    """A section cut short lists fewer than its server's in-use figure: its checkouts stay, the source says which."""
    monkeypatch.setenv("FAKE_LMXENDUTIL_DIR", str(tmp_path))
    monkeypatch.setenv("FAKE_DSLICSRV_DIR", str(tmp_path))
    start = local(time.time() - 600, seconds=kind == "dsls")
    server = "6200@lic01" if kind == "lmx" else "4085@ds01"
    held = {"SOLVER": [("ann", 2), ("bob", 3)], "MESHER": [("cy", 1)]}
    if kind == "lmx":
        whole = lmx_output(server, [(name, 10, [(u, f"ws-{u}", n, start) for u, n in users]) for name, users in held.items()])
        inside, between = "license(s) used by bob@", "Feature: MESHER"
    else:
        rows = [
            dsls_row(name, 10, sum(n for _, n in users), u, str(n), f"ws-{u}", start, f"{name}-{u}")
            for name, users in held.items()
            for u, n in users
        ]
        whole = dsls_output(rows)
        inside, between = "(0123.0)/10.0.0.7,bob", "Dassault Systemes,5E756A80,MESHER"
    pool, poll = poll_of(LMX if kind == "lmx" else DSLS, FAKE_LMXENDUTIL if kind == "lmx" else FAKE_DSLICSRV, server)
    output = tmp_path / f"{server}.txt"
    output.write_text(whole)
    assert poll.poll(timeout=10)
    assert len(pool.active_borrows()) == 6

    # Cut inside bob's checkout of SOLVER: it lists 2 of its 5, MESHER is missing; nothing is usable, nothing returned.
    output.write_text(whole[: whole.index(inside)])
    assert not poll.poll(timeout=10)
    assert (poll.health.state, len(pool.active_borrows())) == ("down", 6)
    assert "SOLVER: 5 in use, 2 listed" in poll.health.error.detail

    # Cut before MESHER: SOLVER is whole and unchanged, MESHER keeps its checkout and the source says so.
    output.write_text(whole[: whole.index(between)])
    assert poll.poll(timeout=10)
    assert (poll.health.state, len(pool.active_borrows())) == ("degraded", 6)
    assert "MESHER: not in the answer" in poll.health.error.detail
    assert poll.health.counters["returns"] == 0


def test_servers_and_tools_come_from_flags_or_variables_and_bad_ones_are_refused():
    import argparse

    from dash_app.config import add_arguments, from_args

    parser = add_arguments(argparse.ArgumentParser())
    flags = parser.parse_args(
        ["--lmx", "6200@lic01", "--lmx", "6200@lic02", "--dsls", "4085@ds01", "--dslicsrv", "/opt/ds/DSLicSrv"]
    )
    config = from_args(flags, environ={})
    assert (config.lmx_servers, config.dsls_servers) == (("6200@lic01", "6200@lic02"), ("4085@ds01",))
    assert (config.lmxendutil, config.dslicsrv) == ("lmxendutil", "/opt/ds/DSLicSrv")
    environ = {"DASH_APP_LMX": "6200@a, 6201@b", "DASH_APP_DSLS": "4085@c", "DASH_APP_LMXENDUTIL": "/opt/lmx/lmxendutil"}
    env = from_args(parser.parse_args([]), environ=environ | {"DASH_APP_DSLICSRV": "/opt/ds/bin/DSLicSrv"})
    assert (env.lmx_servers, env.dsls_servers) == (("6200@a", "6201@b"), ("4085@c",))
    assert (env.lmxendutil, env.dslicsrv) == ("/opt/lmx/lmxendutil", "/opt/ds/bin/DSLicSrv")
    for args, message in (
        (["--lmx", "lic01"], "--lmx: expected PORT@HOST, got 'lic01'"),
        (["--dsls", "@ds"], "--dsls: expected PORT@HOST, got '@ds'"),
    ):
        done = run_refused(args)
        assert (done.returncode, done.stderr.strip().splitlines()) == (2, [f"python -m dash_app: error: {message}"])


# ----------------------------------------------------------------------------------------------- one real server


def test_a_server_polls_lmx_and_dsls_and_shows_both_in_sources_and_status(start_server, tmp_path):
    start = time.time() - 600
    fakes = tmp_path / "fakes"
    fakes.mkdir()
    (fakes / "6200@lic01.txt").write_text(lmx_output("6200@lic01", [("HyperWorks", 40, [("ann", "ws-1", 4, local(start))])]))
    rows = [dsls_row("SRU", 30, 7, u, str(n), f"ws-{u}", local(start, True), u) for u, n in (("bob", 5), ("cy", 2))]
    (fakes / "4085@ds01.txt").write_text(dsls_output(rows))
    tools = tmp_path / "tools.json"
    limits = {"total": 40, "commit_qty": 30, "max_overage": 10, "commit_price": 900, "overage_price_per_license": 40}
    tools.write_text(json.dumps([{"tool": "Altair HyperWorks", "feature": "HyperWorks", **limits}]))
    server = start_server(
        DASH_APP_LMX="6200@lic01",
        DASH_APP_LMXENDUTIL=str(FAKE_LMXENDUTIL),
        DASH_APP_DSLS="4085@ds01,4085@ds02",
        DASH_APP_DSLICSRV=str(FAKE_DSLICSRV),
        DASH_APP_POLL_SECONDS="1",
        DASH_APP_TOOLS=str(tools),
        FAKE_LMXENDUTIL_DIR=str(fakes),
        FAKE_DSLICSRV_DIR=str(fakes),
    )
    expected = {"6200@lic01": "up", "4085@ds01": "up", "4085@ds02": "down"}  # ds02: nobody answers there
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        sources = {e["name"]: e for e in requests.get(server.url + "/sources", timeout=5).json()["sources"]}
        # Up after a good poll (a source is "up" before its first), down after a failed one.
        seen = {
            name: sources[name]["state"] if sources.get(name, {}).get("last_ok") or sources.get(name, {}).get("error") else None
            for name in expected
        }
        if seen == expected:
            break
        time.sleep(0.1)
    else:
        raise AssertionError(f"timed out waiting for {expected}: {sources}")
    assert (sources["6200@lic01"]["kind"], sources["6200@lic01"]["state"]) == ("lmx", "up")
    assert (sources["4085@ds01"]["kind"], sources["4085@ds01"]["state"]) == ("dsls", "up")
    assert (sources["4085@ds02"]["kind"], sources["4085@ds02"]["state"]) == ("dsls", "down")
    assert sources["4085@ds01"]["features"]["SRU"]["in_use"] == 7
    # The tools file maps LM-X's feature to its tool; DSLS's, unlisted, is a tool of its own with its server's total.
    status = {e["tool"]: e for e in requests.get(server.url + "/licenses/status", timeout=5).json()}
    assert (status["Altair HyperWorks"]["borrowed"], status["Altair HyperWorks"]["total"]) == (4, 40)
    assert (status["SRU"]["borrowed"], status["SRU"]["total"], status["SRU"]["expiry"]) == (7, 30, "2027-03-31")
    borrows = requests.get(server.url + "/borrows", timeout=5).json()
    assert sorted({(b["tool"], b["user"], b["host"], b["version"], b["source"]) for b in borrows}) == [
        ("Altair HyperWorks", "ann", "ws-1", "2024.1", "lmx"),
        ("SRU", "bob", "ws-bob", "6.424", "dsls"),
        ("SRU", "cy", "ws-cy", "6.424", "dsls"),
    ]


def iso_reference(text, tz):
    """The epoch seconds of "YYYY-MM-DD HH:MM[:SS]" worked out alone, None for no such time."""
    try:
        moment = datetime.datetime.strptime(text, "%Y-%m-%d %H:%M:%S" if len(text) == 19 else "%Y-%m-%d %H:%M")
    except ValueError:
        return None
    return (moment if tz is None else moment.replace(tzinfo=tz)).timestamp()


@settings(max_examples=200, deadline=None)
@given(
    st.sampled_from([datetime.UTC, ZoneInfo("Europe/Berlin"), ZoneInfo("Australia/Lord_Howe"), None]),
    # Days of 2024 with a clock change in one of the zones (Lord Howe's moves by half an hour), any day, and no day.
    st.one_of(
        st.sampled_from(["2024-03-31", "2024-10-27", "2024-04-07", "2024-10-06", "2024-02-30"]),
        st.dates(datetime.date(1970, 1, 2), datetime.date(2199, 12, 31)).map(str),
    ),
    st.integers(0, 25),
    st.integers(0, 61),
    st.one_of(st.none(), st.integers(0, 59)),
)
def test_an_iso_time_worked_out_per_day_is_the_one_worked_out_alone(tz, day, hour, minute, second):
    """A time "YYYY-MM-DD HH:MM[:SS]" read once per day (its 0:00 and the minutes since) is the moment read alone."""
    text = f"{day} {hour:02d}:{minute:02d}" + (f":{second:02d}" if second is not None else "")
    times = IsoTimes(tz)
    assert times.stamp(text) == iso_reference(text, tz)
    assert times.stamp(text) == iso_reference(text, tz)  # the second time from what the first kept
