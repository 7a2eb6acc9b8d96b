"""lmstat and rlmstat output into StatusReports: the recorded fixtures, generated reports, garbage, the fake tools."""

import datetime
import os
import subprocess
import sys
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from dash_app.sources.lmstat import parse_lmstat
from dash_app.sources.lmstat.dates import StartTimes
from dash_app.sources.lmx import parse_lmx
from dash_app.sources.rlm import parse_rlmstat
from dash_app.sources.status import Checkout, Feature, StatusReport, UnparsableOutput

FIXTURES = Path(__file__).parent / "fixtures"
UTC = datetime.UTC


def at(*parts):
    """Return the epoch seconds of a UTC date and time."""
    return datetime.datetime(*parts, tzinfo=UTC).timestamp()


def lmstat(name, now, tz=UTC):
    return parse_lmstat((FIXTURES / "lmstat" / name).read_text(), now, tz)


def rlmstat(name, now, tz=UTC):
    return parse_rlmstat((FIXTURES / "rlmstat" / name).read_text(), now, tz)


# ---------------------------------------------------------------------------------------------------- lmstat fixtures


def test_one_vendor_daemon_every_kind_of_line():
    """FlexNet 11.19: counted, uncounted and error features, license counts, linger, PID, queued, reservations."""
    report = lmstat("lic01_one_vendor.txt", at(2025, 1, 14, 10, 2))

    def co(feature, user, host, display, version, handle, started_at, count=1):
        return Checkout(feature, user, host, display, version, "lic01/27000 " + handle, started_at, count, "cadmosd")

    assert report == StatusReport(
        up=True,
        features={
            "SOLVER_CORE": Feature("SOLVER_CORE", "cadmosd", 40, 13, "2026-12-31", listed=13),
            "MESHER": Feature("MESHER", "cadmosd", 5, 2, "permanent", queued=4, listed=2),
            "POST_VIEW": Feature("POST_VIEW", "cadmosd", 1, 0, listed=0),
            # expiry: 1-jan-0; in use: 64 checked out and 33 reserved (FlexNet counts reservations in use)
            "SOLVER_HPC": Feature("SOLVER_HPC", "cadmosd", 256, 97, "permanent", reserved=33, listed=97),
            "PLUGIN_SDK": Feature("PLUGIN_SDK", "cadmosd", None, 1, "2025-06-30", listed=1),  # uncounted: in use as listed
            "LEGACY_IO": Feature("LEGACY_IO", "cadmosd", error="Error: 2 licenses, unsupported by licensed server"),
        },
        checkouts=[
            co("SOLVER_CORE", "akowalski", "ws-0412", "ws-0412:0.0", "2024.1", "1201", at(2025, 1, 14, 8, 5)),
            co("SOLVER_CORE", "bnguyen", "ws-0388", "/dev/pts/3", "2023.2", "1302", at(2025, 1, 13, 17, 41), 4),
            # December, polled in January: last year
            co("SOLVER_CORE", "cfarouk", "render07", None, "2024.1", "1455", at(2024, 12, 30, 23, 58), 8),
            co("MESHER", "dpetrov", "ws-0290", "ws-0290", "2024.1", "2210", at(2025, 1, 10, 9, 30)),
            co("MESHER", "Anna Maria Rossi", "LAPTOP-AMR7", "LAPTOP-AMR7", "2024.1", "2311", at(2025, 1, 14, 9, 58)),
            co("SOLVER_HPC", "hlindqvist", "node017", "/dev/tty", "2024.1", "3101", at(2024, 12, 19, 22, 10), 64),
            co("PLUGIN_SDK", "ijansen", "ws-0412", "/dev/pts/1", "2024.1", "3302", at(2025, 1, 14, 7, 45)),
        ],
        queued=[
            co("MESHER", "ehansen", "ws-0175", "ws-0175:0", "2024.1", "2402", None),
            co("MESHER", "fmorales", "ws-0533", "ws-0533:0", "2024.1", "2413", None, 3),
        ],
        reservations=["32 RESERVATIONs for HOST_GROUP cluster_a (lic01/27000)", "1 RESERVATION for USER gwright (lic01/27000)"],
        vendors={"cadmosd": "v11.19.0"},
    )


def test_two_vendor_daemons_one_down():
    """Features after "Users of features served by VENDOR:" are that vendor's; a daemon that is down gives errors."""
    report = lmstat("lic02_two_vendors_one_down.txt", at(2025, 3, 5, 14, 20))
    handle = "lic02.example.net/27010 "
    at_0304 = at(2025, 3, 4, 19, 45)
    down = "The desired vendor daemon is down. (-97,121)"
    assert report == StatusReport(
        up=True,
        features={
            "GEO_MODEL": Feature("GEO_MODEL", "geotekd", 12, 4, "2025-08-15", listed=4),
            "GEO_VIEWER": Feature("GEO_VIEWER", "geotekd", 30, 0, listed=0),
            "PLOTRIX_PRO": Feature("PLOTRIX_PRO", "plotrixd", error="Cannot get users of PLOTRIX_PRO: " + down),
            "PLOTRIX_LITE": Feature("PLOTRIX_LITE", "plotrixd", error="Cannot get users of PLOTRIX_LITE: " + down),
        },
        checkouts=[
            Checkout("GEO_MODEL", "oyilmaz", "gpc-114", "gpc-114:1", "7.2", handle + "411", at(2025, 3, 5, 13, 2), 1, "geotekd"),
            Checkout("GEO_MODEL", "oyilmaz", "gpc-114", "gpc-114:2", "7.2", handle + "412", at(2025, 3, 5, 13, 7), 2, "geotekd"),
            Checkout("GEO_MODEL", "pbrandt", "gpc-020", "/dev/pts/7", "7.1", handle + "518", at_0304, 1, "geotekd"),
        ],
        vendors={"geotekd": "v11.18.2", "plotrixd": "down"},
    )


def test_triad_with_one_server_down_older_format():
    """A triad answers with two of three servers; an indented detail line without expiry, a vendor-defined field."""
    report = lmstat("lic03_triad_one_server_down.txt", at(2025, 12, 1, 9, 15))

    def co(user, host, display, version, handle, started_at, count=1, feature="FLUX_3D"):
        return Checkout(feature, user, host, display, version, "fx-b/27020 " + handle, started_at, count, "fluxd")

    assert report == StatusReport(
        up=True,
        features={
            "FLUX_3D": Feature("FLUX_3D", "fluxd", 20, 11, None, reserved=4, queued=2, listed=11),
            "FLUX_2D": Feature("FLUX_2D", "fluxd", 2, 2, "permanent", reserved=1, listed=2),  # expiry: 01-jan-0000
        },
        checkouts=[
            co("qsato", "srv-calc3", "/dev/tty", "12.0", "101", at(2025, 12, 1, 8, 59), 4),
            co("rokafor", "srv-calc9", "srv-calc9:0.0", "12.0", "202", at(2025, 11, 30, 21, 17)),
            co("smeyer", "wks88", "wks88", "11.4", "303", at(2025, 12, 1, 9, 4), 2),
            co("uwalker", "wks12", "wks12", "12.0", "505", at(2025, 11, 28, 16, 30), feature="FLUX_2D"),
        ],
        queued=[co("tchen", "wks41", "wks41", "12.0", "404", None, 2)],
        reservations=["4 RESERVATIONs for GROUP thermal (fx-b/27020)", "1 RESERVATION for HOST wks12 (fx-b/27020)"],
        vendors={"fluxd": "v11.13.1"},
        unreachable=["fx-c"],
    )


@pytest.mark.parametrize(
    "name, error",
    [
        (
            "down_lmgrd_not_running.txt",
            'lmgrd is not running: Cannot connect to license server system. (-15,570:115 "Operation now in progress")',
        ),
        (
            "down_error_getting_status.txt",
            'Error getting status: Cannot connect to license server system. (-15,10:111 "Connection refused")',
        ),
    ],
)
def test_server_down(name, error):
    """A server nobody answers on is a report: down, with lmutil's line as the reason."""
    assert lmstat(name, at(2025, 2, 6, 7, 45)) == StatusReport(up=False, error=error)


def test_unreadable_checkout_and_feature_lines_are_counted_not_fatal():
    """A month 13, a cut-off line and a feature line without numbers: counted, the rest of the report read."""
    report = lmstat("lic04_malformed_lines.txt", at(2025, 1, 14, 10, 5))
    assert report.malformed == 3
    assert [(c.user, c.feature) for c in report.checkouts] == [("akowalski", "SOLVER_CORE"), ("xu", "MESHER")]
    # Two lines of SOLVER_CORE could not be read: its section lists 1 of its 2 in use, and is not whole.
    assert report.features["SOLVER_CORE"] == Feature("SOLVER_CORE", "cadmosd", 40, 2, "2026-12-31", listed=1)
    assert not report.features["SOLVER_CORE"].consistent
    assert report.features["MESHER"] == Feature("MESHER", "cadmosd", listed=1)


@pytest.mark.parametrize("text", ["", "\n\n", (FIXTURES / "lmstat" / "garbage.txt").read_text(), "Users of\n    , start\n"])
def test_no_status_report_is_unparsable(text):
    with pytest.raises(UnparsableOutput):
        parse_lmstat(text, at(2025, 1, 1), UTC)


def test_banner_alone_is_unparsable():
    banner = "lmutil - Copyright (c) 1989-2024 Flexera. All Rights Reserved.\n"
    banner += "Flexible License Manager status on Tue 1/14/2025 10:02\n"
    with pytest.raises(UnparsableOutput):
        parse_lmstat(banner, at(2025, 1, 14), UTC)


def test_start_times_read_in_the_servers_zone():
    """The same text read as Berlin time (CET in January, UTC+1) starts an hour earlier in UTC."""
    berlin = lmstat("lic01_one_vendor.txt", at(2025, 1, 14, 10, 2), ZoneInfo("Europe/Berlin"))
    assert berlin.checkouts[0].started_at == at(2025, 1, 14, 7, 5)
    local = lmstat("lic01_one_vendor.txt", at(2025, 1, 14, 10, 2), None)
    assert local.checkouts[0].started_at == datetime.datetime(2025, 1, 14, 8, 5).timestamp()


@pytest.mark.parametrize(
    "now, start, expected",
    [
        (at(2025, 1, 14, 10, 2), "Mon 12/30 23:58", at(2024, 12, 30, 23, 58)),  # last year
        (at(2025, 12, 31, 23, 0), "Thu 1/1 0:30", at(2026, 1, 1, 0, 30)),  # a server clock ahead, over New Year
        (at(2025, 1, 14, 10, 2), "Wed 1/15 10:00", at(2025, 1, 15, 10, 0)),  # not more than a day ahead
        (at(2025, 1, 14, 10, 2), "Mon 1/15 10:30", at(2024, 1, 15, 10, 30)),  # more than a day ahead: a year ago
        (at(2025, 3, 1, 12, 0), "Thu 2/29 9:00", at(2024, 2, 29, 9, 0)),  # back to the leap year
        # The printed weekday picks the year: 12/30/2024 was a Monday, 12/30/2023 a Saturday.
        (at(2025, 1, 2, 9, 0), "Sat 12/30 9:00", at(2023, 12, 30, 9, 0)),
        (at(2025, 1, 14, 10, 2), "Wed 1/15 10:30", at(2020, 1, 15, 10, 30)),  # a day ahead is too far: 2020's Wednesday
        (at(2025, 3, 1, 12, 0), "Fri 2/29 9:00", at(2024, 2, 29, 9, 0)),  # no year near falls on it: as without one
        (at(2025, 1, 2, 9, 0), "Xyz 12/30 9:00", at(2024, 12, 30, 9, 0)),  # no weekday read: the latest
    ],
)
def test_yearless_start_times(now, start, expected):
    text = "Users of F:  (Total of 9 licenses issued;  Total of 1 license in use)\n"
    text += f"    u h d (v1) (lic/1 2), start {start}\n"
    assert parse_lmstat(text, now, UTC).checkouts[0].started_at == expected


ZONES = [UTC, ZoneInfo("Europe/Berlin"), ZoneInfo("America/New_York"), ZoneInfo("Australia/Lord_Howe"), None]
# Days of 2024 with a clock change in one of them (Lord Howe's moves by half an hour), and some that are no date.
ODD_DAYS = [(3, 31), (10, 27), (3, 10), (11, 3), (4, 7), (10, 6), (2, 29), (2, 30), (13, 1), (4, 31)]


@settings(max_examples=300, deadline=None)
@given(
    st.integers(int(at(2023, 6, 1, 0, 0)), int(at(2026, 6, 1, 0, 0))).map(float),
    st.sampled_from(ZONES),
    st.sampled_from(["", "Sun ", "Mon ", "Xyz "]),
    st.one_of(st.sampled_from(ODD_DAYS), st.tuples(st.integers(1, 12), st.integers(1, 31))),
    st.integers(0, 25),
    st.integers(0, 61),
    st.integers(-3, 3),
)
def test_a_start_time_worked_out_per_day_is_the_one_worked_out_alone(now, tz, weekday, date, hour, minute, days):
    """A start read whole (one day's times share its 0:00) is the moment resolve() finds for it alone, in every zone.

    Near the poll (`days` from it), on a day with a clock change, and for no date or time at all.
    """
    near = datetime.datetime.fromtimestamp(now + days * 86400, tz)
    for m, d in (date, (near.month, near.day)):
        text = f"{weekday}{m}/{d} {hour}:{minute:02d}"
        reference = StartTimes(now, tz).stamp(text, str(m), str(d), str(hour), f"{minute:02d}")
        assert StartTimes(now, tz).text_stamp(text) == reference


def outcome(parse, text, now):
    """Return what `parse` makes of `text`: its report, or the error it raises."""
    try:
        return parse(text, now, UTC)
    except UnparsableOutput as error:
        return str(error)


@pytest.mark.parametrize(
    "kind, parse",
    [("lmstat", parse_lmstat), ("rlmstat", parse_rlmstat), ("lmx", parse_lmx)],
)
def test_an_answer_reads_the_same_line_by_line_as_in_one_pass(kind, parse):
    """An answer with line breaks other than "\\n" (read line by line) or with "\\r\\n" says what it says with "\\n"."""
    for path in sorted((FIXTURES / kind).glob("*.txt")):
        text, now = path.read_text(), at(2025, 1, 14, 10, 2)
        expected = outcome(parse, text, now)
        assert outcome(parse, text + "\x0c", now) == expected, path.name
        assert outcome(parse, text.replace("\n", "\r\n"), now) == expected, path.name
        assert outcome(parse, text.replace("\n", "\u2028"), now) == expected, path.name


# ---------------------------------------------------------------------------------------------------- rlmstat fixtures


def test_rlm_v12_one_isv():
    """RLM v12: tab-indented blocks, an uncounted pool, permanent and year-0 expiry, usage lines with handles."""
    report = rlmstat("rlm_v12_one_isv.txt", at(2025, 12, 2, 10, 21))

    def co(product, user, host, handle, started_at, count=1):
        return Checkout(
            product, user, host, None, "3.1" if product != "paint_addon" else "2.0", handle, started_at, count, "artisan"
        )

    assert report == StatusReport(
        up=True,
        features={
            "sculpt": Feature("sculpt", "artisan", 25, 6, "2026-12-31", reserved=2, listed=6),
            "sculpt_render": Feature("sculpt_render", "artisan", 100, 16, "permanent", listed=16),
            "paint_addon": Feature("paint_addon", "artisan", None, 1, "2026-02-28", listed=1),
            "sculpt_beta": Feature("sculpt_beta", "artisan", 5, 0, "permanent", listed=0),
        },
        checkouts=[
            co("sculpt", "mjovanovic", "studio-14", "3a1", at(2025, 12, 2, 9, 12)),
            co("sculpt", "nokeke", "studio-02", "3b7", at(2025, 12, 1, 18, 40)),
            co("sculpt", "lucia.ferreira", "studio-21", "40c", at(2025, 11, 29, 10, 5), 4),
            co("sculpt_render", "farm", "rnd-node-08", "51", at(2025, 12, 2, 2, 30), 16),
            co("paint_addon", "nokeke", "studio-02", "6f2", at(2025, 12, 2, 10, 20)),
        ],
        vendors={"artisan": "v12.2"},
    )


def test_rlm_v15_two_isvs_one_down():
    """RLM v15: pool numbers, one product in two pools added up, count 0 as uncounted, an ISV server not running."""
    report = rlmstat("rlm_v15_two_isvs_one_down.txt", at(2026, 1, 2, 11, 0))

    def co(product, user, host, version, handle, started_at, count=1):
        return Checkout(product, user, host, None, version, handle, started_at, count, "lumen")

    assert report == StatusReport(
        up=True,
        features={
            "lumen_studio": Feature("lumen_studio", "lumen", 14, 4, "permanent", listed=4),
            "lumen_cli": Feature("lumen_cli", "lumen", None, 2, "permanent", listed=2),
        },
        checkouts=[
            co("lumen_studio", "kim.soyeon", "LT-0931", "2025.10", "1c4", at(2026, 1, 2, 8, 3)),
            co("lumen_studio", "Jonas Weber", "LT-1102", "2025.10", "1d9", at(2026, 1, 2, 9, 47)),
            co("lumen_studio", "build", "ci-runner-3", "2025.10", "18a", at(2025, 12, 31, 23, 50)),
            co("lumen_studio", "a.haddad", "WS-3320", "2025.04", "9e", at(2025, 12, 30, 14, 12)),
            co("lumen_cli", "build", "ci-runner-3", "2025.10", "1e0", at(2026, 1, 2, 10, 58), 2),
        ],
        vendors={"lumen": "v15.2", "strata": "down"},
    )


def test_rlm_public_answer_adds_up():
    """A real rlmstat -a answer (CONVERGE's csci ISV): one handle listed twice, 29 + 27 + 37 = the pool's 93 in use."""
    report = rlmstat("rlm_v12_converge_public.txt", at(2021, 11, 3, 12, 48))
    assert report.malformed == 0
    assert report.features["converge_super"] == Feature("converge_super", "csci", 1000, 93, "2022-01-31", listed=93)
    assert all(feature.consistent for feature in report.features.values())
    assert [(c.user, c.licenses) for c in report.checkouts] == [("asdj13", 29), ("cddcp2", 27), ("asdj13", 37)]


def test_rlm_shared_handles_count_once_and_token_lines_are_read():
    """Handles sharing a license (by user and host; at most 2 a license) count as the pool's inuse does."""
    report = rlmstat("rlm_v12_shared_and_tokens.txt", at(2021, 11, 3, 12, 48))
    assert report.malformed == 0
    features = report.features
    assert (features["converge_gui"].in_use, features["converge_gui"].listed) == (1, 1)
    assert (features["converge_tecplot"].in_use, features["converge_tecplot"].listed) == (2, 2)
    assert features["converge_token"].tokens == "maps to: converge_super v3.0 (4 tokens)"
    gui = [c for c in report.checkouts if c.feature == "converge_gui"]
    # One checkout for the two handles: the first start, no handle (the group outlives each of them).
    assert gui == [
        Checkout("converge_gui", "asdj13", "myserver.example.com", None, "1.0", None, at(2021, 11, 1, 9, 1), 1, "csci")
    ]


@pytest.mark.parametrize("where", ["after", "before"])
def test_rlm_a_token_line_before_or_after_its_counts_is_read(where):
    counts = "count: 0, # reservations: 0, inuse: 0, exp: permanent"
    block = [counts, "Token-based license"] if where == "after" else ["Token-based license", counts]
    text = "\n".join(["rlm status on h (port 5053), up 1d", "isv license pool status on h (port 41987)", "tok v1.0", *block])
    report = parse_rlmstat(text + "\n", at(2026, 1, 2), UTC)
    assert (report.malformed, report.features["tok"].tokens) == (0, "token-based")


def test_flexnet_token_feature_names_its_products():
    report = lmstat("msc_tokens_public.txt", at(2024, 3, 11, 14, 2))
    assert report.malformed == 0
    assert report.features["MSCONE"].tokens == "ADAMS_Car_Plugin, ADAMS_View"
    assert report.features["MSCONE"].consistent  # 5 + 1 + 5 + 1 + 5 + 1 = 18 in use
    assert {c.user for c in report.checkouts} == {"ABCDKK"}


@pytest.mark.parametrize(
    "name, error",
    [
        (
            "rlm_down_connection_refused.txt",
            'Error connecting to "rlm" server; Communications error with license server (-17); '
            "Connection refused at server (-111)",
        ),
        (
            "rlm_down_bad_hostname.txt",
            'Error connecting to "rlm" server; Bad hostname for network connect (-131); '
            "Cannot find hostname in network database (comm: -18)Unknown error -2 (errno: -2)",
        ),
    ],
)
def test_rlm_server_down(name, error):
    assert rlmstat(name, at(2026, 1, 2)) == StatusReport(up=False, error=error)


@pytest.mark.parametrize("text", ["", (FIXTURES / "rlmstat" / "garbage.txt").read_text(), "count: 5\nsculpt v1: a@b 1/0"])
def test_rlm_no_status_report_is_unparsable(text):
    with pytest.raises(UnparsableOutput):
        parse_rlmstat(text, at(2026, 1, 2), UTC)


def test_rlm_unreadable_usage_line_is_counted():
    text = (FIXTURES / "rlmstat" / "rlm_v12_one_isv.txt").read_text()
    text += "\tsculpt v3.1: someone@somewhere 1/0 at 14/40 09:12  (handle: 3a9)\n\tsculpt v3.1: x@y 1/0 at 12/02  (handle: 1)\n"
    report = parse_rlmstat(text, at(2025, 12, 2, 10, 21), UTC)
    assert report.malformed == 2
    assert len(report.checkouts) == 5


def test_rlm_pool_count_of_other_digits_is_counted_not_fatal():
    """A pool count that str.isdigit() takes and int() does not ("²") is a malformed line, not a crashed poll."""
    text = "rlm status on h (port 5053), up 1d\nartisan license pool status on h (port 41987)\nsculpt v3.1\n"
    text += "count: ², # reservations: 0, inuse: 1, exp: 31-dec-2026\n"
    report = parse_rlmstat(text, at(2026, 1, 2), UTC)
    assert report.malformed == 1
    assert report.features == {}


# ---------------------------------------------------------------------------------------------------- generated reports

MONTHS = ("jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec")
DAYS = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")
SERVER = "lic01"
words = st.from_regex(r"[A-Z][a-z]{1,8}", fullmatch=True)
hosts = st.from_regex(r"[a-z][a-z0-9-]{0,10}[0-9]", fullmatch=True)
plain_users = st.from_regex(r"[a-z][a-z0-9._]{0,10}", fullmatch=True)
versions = st.from_regex(r"[0-9]{1,4}(\.[0-9]{1,4})?", fullmatch=True)


@st.composite
def checkout_lines(draw, now):
    """One checkout: (user, host, display, version, handle, start as datetime, count)."""
    if draw(st.booleans()):
        # Windows: a user name with spaces, its display the host name, as lmstat prints it.
        user = " ".join(draw(st.lists(words, min_size=2, max_size=3, unique=True)))  # "Anna Anna host" is ambiguous
        host = draw(hosts)
        display = host
    else:
        user, host = draw(plain_users), draw(hosts)
        display = draw(st.sampled_from([None, host, host + ":0", host + ":0.0", "/dev/pts/3", "/dev/tty"]))
    back = draw(st.integers(0, 300 * 86400)) // 60 * 60  # up to 300 days ago, to the minute
    start = now - datetime.timedelta(seconds=back)
    start = start.replace(second=0)
    count = draw(st.integers(1, 500))
    return user, host, display, draw(versions), draw(st.integers(1, 99999)), start, count


@st.composite
def reports(draw):
    """A random lmstat report: (now, vendors, features), each feature a dict the renderer and the expectation share."""
    now = datetime.datetime(2020, 1, 1, tzinfo=UTC) + datetime.timedelta(minutes=draw(st.integers(0, 10 * 365 * 1440)))
    vendors = draw(st.lists(st.from_regex(r"[a-z]{3,8}d", fullmatch=True), min_size=1, max_size=3, unique=True))
    names = draw(st.lists(st.from_regex(r"[A-Za-z][A-Za-z0-9_-]{0,20}", fullmatch=True), max_size=8, unique=True))
    features = []
    for name in names:
        kind = draw(st.sampled_from(["counted", "counted", "counted", "uncounted", "error"]))
        uses = draw(st.lists(checkout_lines(now), max_size=6)) if kind != "error" else []
        queued = draw(st.lists(checkout_lines(now), max_size=2)) if kind == "counted" else []
        reservations = (
            draw(
                st.lists(
                    st.tuples(st.integers(1, 50), st.sampled_from(["USER", "HOST", "GROUP", "HOST_GROUP"]), hosts), max_size=2
                )
            )
            if kind == "counted"
            else []
        )
        dates = st.dates(datetime.date(2020, 1, 1), datetime.date(2040, 12, 31))
        expiry = draw(st.one_of(st.none(), st.just("permanent"), dates))
        features.append(
            {
                "name": name,
                "vendor": draw(st.sampled_from(vendors)),
                "kind": kind,
                "issued": draw(st.integers(0, 100000)),
                "in_use": draw(st.integers(0, 100000)),
                "uses": uses,
                "queued": queued,
                "reservations": reservations,
                "expiry": expiry,
                "detail": bool(uses or queued or reservations) or draw(st.booleans()),  # lmstat shows it for features in use
                "permanent_as": draw(st.sampled_from(["permanent(no expiration date)", "1-jan-0", "01-jan-0000"])),
                "suffix": draw(st.sampled_from(["", ", PID: 4711", "  (linger: 60 / 300)", " (linger: 900)"])),
                "indent": draw(st.sampled_from(["", "  "])),  # 11.19 prints the detail line at the margin, older ones indented
            }
        )
    return now, vendors, features


def plural(n, word):
    return f"{n} {word}" if n == 1 else f"{n} {word}s"


def render(now, vendors, features):
    """Write a report the way lmstat -a prints it."""
    out = [
        "lmutil - Copyright (c) 1989-2024 Flexera. All Rights Reserved.",
        f"Flexible License Manager status on {DAYS[now.weekday()]} {now.month}/{now.day}/{now.year} {now.hour}:{now:%M}",
        "",
        f"License server status: 27000@{SERVER}",
        f"    License file(s) on {SERVER}: /opt/flexlm/licenses/{SERVER}.lic:",
        "",
        f"   {SERVER}: license server UP (MASTER) v11.19.0",
        "",
        f"Vendor daemon status (on {SERVER}):",
        "",
    ]
    out += [f"{v:>10}: UP v11.19.0" for v in vendors]
    out += ["Feature usage info:", ""]
    for f in features:
        if f["kind"] == "counted":
            totals = f"(Total of {plural(f['issued'], 'license')} issued;  Total of {plural(f['in_use'], 'license')} in use)"
        elif f["kind"] == "uncounted":
            totals = "(Uncounted, node-locked)"
        else:
            totals = f"(Error: {f['issued']} licenses, unsupported by licensed server)"
        out += [f"Users of {f['name']}:  {totals}", ""]
        if f["detail"]:
            expiry = f["expiry"]
            if expiry == "permanent":
                expiry = f["permanent_as"]
            elif expiry is not None:
                expiry = f"{expiry.day}-{MONTHS[expiry.month - 1]}-{expiry.year}"
            line = f'{f["indent"]}"{f["name"]}" v1.0, vendor: {f["vendor"]}'
            out += [line + (f", expiry: {expiry}" if expiry is not None else ""), "  floating license", ""]
        for n, kind, who in f["reservations"]:
            out.append(f"\t{n} RESERVATION{'s' if n > 1 else ''} for {kind} {who} ({SERVER}/27000)")
        for user, host, display, version, handle, start, count in f["uses"]:
            who = f"{user} {host}" + (f" {display}" if display else "")
            when = f"{DAYS[start.weekday()]} {start.month}/{start.day} {start.hour}:{start:%M}"
            licenses = f", {count} licenses" if count > 1 else ""
            out.append(f"    {who} (v{version}) ({SERVER}/27000 {handle}), start {when}{licenses}{f['suffix']}")
        for user, host, display, version, handle, _start, count in f["queued"]:
            who = f"{user} {host}" + (f" {display}" if display else "")
            out.append(f"    {who} (v{version}) ({SERVER}/27000 {handle}) queued for {plural(count, 'license')}")
        out.append("")
    return "\n".join(out) + "\n"


def expected(vendors, features):
    """Return the StatusReport the rendered text says."""
    report = StatusReport(up=True, vendors={v: "v11.19.0" for v in vendors})
    for f in features:
        vendor = f["vendor"] if f["detail"] else vendors[0] if len(vendors) == 1 else None
        expiry = f["expiry"] if not f["detail"] or not isinstance(f["expiry"], datetime.date) else f["expiry"].isoformat()
        expiry = expiry if f["detail"] else None
        held = sum(use[-1] for use in f["uses"])
        reserved = sum(n for n, _kind, _who in f["reservations"])
        queued = sum(use[-1] for use in f["queued"])
        if f["kind"] == "counted":
            feature = Feature(f["name"], vendor, f["issued"], f["in_use"], expiry, None, reserved, queued, held + reserved)
        elif f["kind"] == "uncounted":
            feature = Feature(f["name"], vendor, None, held, expiry, listed=held)
        else:
            feature = Feature(
                f["name"], vendor, None, None, expiry, f"Error: {f['issued']} licenses, unsupported by licensed server"
            )
        report.features[f["name"]] = feature
        for user, host, display, version, handle, start, count in f["uses"]:
            report.checkouts.append(
                Checkout(f["name"], user, host, display, version, f"{SERVER}/27000 {handle}", start.timestamp(), count, vendor)
            )
        for user, host, display, version, handle, _start, count in f["queued"]:
            report.queued.append(
                Checkout(f["name"], user, host, display, version, f"{SERVER}/27000 {handle}", None, count, vendor)
            )
        for n, kind, who in f["reservations"]:
            report.reservations.append(f"{n} RESERVATION{'s' if n > 1 else ''} for {kind} {who} ({SERVER}/27000)")
    return report


# Each example is a whole report (vendors, features of every kind, their checkouts, queues and reservations): 100 of them
# are thousands of rendered lines read back.
@settings(max_examples=50, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(reports())
def test_rendered_reports_read_back_exactly(generated):
    now, vendors, features = generated
    assert parse_lmstat(render(now, vendors, features), now.timestamp(), UTC) == expected(vendors, features)


lines = st.text(st.characters(blacklist_categories=("Cs",)), max_size=120)
lmstat_like = st.sampled_from(
    [
        "Users of X:  (Total of 3 licenses issued;  Total of 1 license in use)",
        "    u h d (v1.0) (lic01/27000 5), start Mon 13/40 99:99",
        "    u h d (v1.0) (lic01/27000 5), start Mon 1/1 0:00, 99999999999 licenses",
        "    u h (v1.0) (lic01/27000 5) queued for 9999999999 licenses",
        "    , start ",
        '"X" v1, vendor: x, expiry: 31-feb-2026',
        "Users of features served by :",
        "\t3 RESERVATIONs for",
        "\t" + "9" * 5000 + " RESERVATIONs for USER u (lic01/27000)",
        "    u h d MSCONE:x (v1.0) (lic01/27000 5), start Mon 1/1 0:00",
        "lmgrd is not running: ",
        "vendor: UP",
    ]
)
rlmstat_like = st.sampled_from(
    [
        "rlm status on h (port 5053), up 1d 00:00:00",
        "a license pool status on h (port 1)",
        "a license usage status on h (port 1)",
        "p v1: u@h 1/0 at 99/99 99:99  (handle: zz)",
        "p v1: u@h 99999999999/0 at 01/01 00:00  (handle: 1)",
        "count: x, # reservations: 0, inuse: 0, exp: never",
        "count: 1, # reservations: 0, inuse: 0, exp: 31-feb-2026",
        "--------- ISV servers ----------",
        "a 1 No 0",
        'Error connecting to "rlm" server',
        "Token-based license, maps to: p v1 (2 tokens)",
        "p v1: u@h 1/0 at 01/01 00:00  (handle: 2)",
    ]
)


@settings(max_examples=300, deadline=None)
@given(st.lists(st.one_of(lines, lmstat_like, rlmstat_like), max_size=40), st.integers(0, 2**33))
def test_garbage_raises_nothing_but_unparsable(garbage, now):
    text = "\n".join(garbage)
    for parse in (parse_lmstat, parse_rlmstat):
        try:
            report = parse(text, float(now), UTC)
        except UnparsableOutput:
            continue
        assert isinstance(report, StatusReport)


@settings(max_examples=50, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(reports(), st.lists(lines, max_size=5), st.randoms(use_true_random=False))
def test_garbage_inside_a_report_never_raises(generated, garbage, random):
    now, vendors, features = generated
    text = render(now, vendors, features).split("\n")
    for line in garbage:
        text.insert(random.randrange(len(text) + 1), line)
    report = parse_lmstat("\n".join(text), now.timestamp(), UTC)
    assert report.up


# ---------------------------------------------------------------------------------------------------- the fake tools


def run_fake(tool, directory, *args):
    env = dict(os.environ, FAKE_LMUTIL_DIR=str(directory), FAKE_RLMUTIL_DIR=str(directory))
    return subprocess.run([sys.executable, str(FIXTURES / tool), *args], capture_output=True, text=True, env=env, timeout=30)


@pytest.mark.parametrize(
    "tool, command, fixture, parse",
    [
        ("fake_lmutil", "lmstat", FIXTURES / "lmstat" / "lic01_one_vendor.txt", parse_lmstat),
        ("fake_rlmutil", "rlmstat", FIXTURES / "rlmstat" / "rlm_v12_one_isv.txt", parse_rlmstat),
    ],
)
def test_fake_tools(tmp_path, tool, command, fixture, parse):
    """Each server's current output from its own file; missing means unreachable; .exit and .sleep files obeyed."""
    assert os.access(FIXTURES / tool, os.X_OK)
    (tmp_path / "27000@lic01.txt").write_text(fixture.read_text())
    result = run_fake(tool, tmp_path, command, "-a", "-c", "27000@lic01")
    assert (result.returncode, result.stdout) == (0, fixture.read_text())

    result = run_fake(tool, tmp_path, command, "-a", "-c", "27001@lic02")
    assert result.returncode == 1
    down = parse(result.stdout, at(2025, 1, 1), UTC)
    assert not down.up and "onnect" in (down.error or "")

    (tmp_path / "27000@lic01.exit").write_text("3\n")
    (tmp_path / "27000@lic01.sleep").write_text("0.2")
    result = run_fake(tool, tmp_path, command, "-a", "-c", "27000@lic01")
    assert (result.returncode, result.stdout) == (3, fixture.read_text())

    for wrong in (
        [command, "-c", "27000@lic01"],
        [command, "-a", "-c", "27000@lic01", "-x"],
        ["lmdown", "-a", "-c", "27000@lic01"],
        [command, "-a", "-c", "../etc/passwd"],
    ):
        result = run_fake(tool, tmp_path, *wrong)
        assert result.returncode == 2 and result.stdout == "" and "expected" in result.stderr
