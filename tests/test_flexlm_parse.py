"""The FlexNet debug-log line parser: event forms, reasons, dates, midnight and undated lines."""

from datetime import UTC, datetime, timedelta

import pytest

from dash_app.sources.flexlm.parse import (
    ALL_VENDORS,
    DATE,
    DENIED,
    DEQUEUED,
    DOWN,
    IN,
    MALFORMED,
    OUT,
    QUEUED,
    LineParser,
    denial_reason,
)

DAY = datetime(2024, 3, 14).toordinal()


def local(*args):
    """Epoch seconds of a local wall-clock time, as the license server wrote it."""
    return datetime(*args).timestamp()


def dated():
    return LineParser(day=DAY, last_tod=0)


@pytest.mark.parametrize(
    "line, expected",
    [
        ('22:31:15 (MLM) OUT: "MATLAB" anna@ws-anna  ', (OUT, "MLM", "MATLAB", "anna", "ws-anna", 1, None)),
        ('22:31:15 (MLM) IN: "MATLAB" anna@ws-anna  (INACTIVE)', (IN, "MLM", "MATLAB", "anna", "ws-anna", 1, None)),
        (
            ' 9:02:03 (snpslmd) OUT: "VCSRuntime_Net" ci-runner-7@build-07  (4 licenses)',
            (OUT, "snpslmd", "VCSRuntime_Net", "ci-runner-7", "build-07", 4, None),
        ),
        # Old and token-based servers leave the feature unquoted and add a checkout-data string.
        (
            "14:46:39 (telelogic) OUT: DOORS indkach@indkach  [telelogic] (3 licenses)",
            (OUT, "telelogic", "DOORS", "indkach", "indkach", 3, None),
        ),
        # Verbose logs (ls_enable_verbose_dlog): fields between ^^^ marks; the user may be missing before the @.
        (
            '8:41:54 (demo) OUT: "f1" ADas@BLR-LT-104276 ^^^ 1.0 ADas 127.0.0.1 29865 0x12CE 3 10 - 11 19 3/14/2024 8:41:54 0 ^^^',  # noqa: E501
            (OUT, "demo", "f1", "ADas", "BLR-LT-104276", 1, None),
        ),
        (
            '8:41:55 (demo) IN: "f1" @BLR-LT-104276 (1) ^^^ 1.0 ADas 127.0.0.1 29865 0x12CE 2 10 - 11 19 3/14/2024 8:41:55 0 ^^^',
            (IN, "demo", "f1", "ADas", "BLR-LT-104276", 1, None),
        ),
        ('22:53:11 (MLM) QUEUED: "MATLAB" Åsa@ws-asa  ', (QUEUED, "MLM", "MATLAB", "Åsa", "ws-asa", 1, None)),
        ('22:58:30 (MLM) DEQUEUED: "MATLAB" Åsa@ws-asa', (DEQUEUED, "MLM", "MATLAB", "Åsa", "ws-asa", 1, None)),
        # A forked copy of the vendor daemon is the same vendor; user names may hold spaces and any script.
        ('10:00:00 (MLM_2) OUT: "MATLAB" John Smith@PC-17', (OUT, "MLM", "MATLAB", "John Smith", "PC-17", 1, None)),
        ('10:00:01 (cdslmd) OUT: "Spectre" 李明@eda-ws-11\r', (OUT, "cdslmd", "Spectre", "李明", "eda-ws-11", 1, None)),
        # The short form without a host.
        ('10:00:02 (MLM) IN: "MATLAB" anna (2 licenses)', (IN, "MLM", "MATLAB", "anna", "", 2, None)),
    ],
)
def test_event_forms(line, expected):
    record = dated().parse(line)
    kind, _ts, _tod, vendor, feature, user, host, count, detail = record
    assert (kind, vendor, feature, user, host, count, detail) == expected


@pytest.mark.parametrize(
    "tail, reason",
    [
        ("(Licensed number of users already reached. (-4,342))", "exhausted: Licensed number of users already reached. (-4,342)"),
        (
            "[telelogic] (Licensed number of users already reached. (-4,342:10054 ))",
            "exhausted: Licensed number of users already reached. (-4,342)",
        ),
        (
            "(25 licenses) (Users are queued for this feature. (-24,332))",
            "exhausted: Users are queued for this feature. (-24,332)",
        ),
        (
            "(License server system does not support this feature. (-18,327))",
            "unknown_tool: License server system does not support this feature. (-18,327)",
        ),
        ("(No such feature exists. (-5,414))", "unknown_tool: No such feature exists. (-5,414)"),
        ("(User/host on EXCLUDE list for feature. (-38,348))", "policy: User/host on EXCLUDE list for feature. (-38,348)"),
        (
            "(Checkout exceeds MAX specified in options file. (-87,147))",
            "policy: Checkout exceeds MAX specified in options file. (-87,147)",
        ),
        ("(Feature has expired. (-10,32))", "expired: Feature has expired. (-10,32)"),
        (
            "(License server system does not support this version of this feature. (-25,334))",
            "version: License server system does not support this version of this feature. (-25,334)",
        ),
        # An error number we do not know keeps its text under the generic reason; so does text without a number.
        ("(Vendor-defined checkout filter said no. (-999,1))", "denied: Vendor-defined checkout filter said no. (-999,1)"),
        ("(All licenses are reserved for others)", "policy: All licenses are reserved for others"),
        ("", "denied"),
    ],
)
def test_denial_reasons_keep_text_and_code(tail, reason):
    assert denial_reason(tail) == reason
    record = dated().parse(f'12:00:00 (MLM) DENIED: "MATLAB" bob@ws-bob  {tail}')
    assert record[0] == DENIED and record[8] == reason


def test_unsupported_is_a_denial():
    record = dated().parse(
        '23:05:00 (snpslmd) UNSUPPORTED: "PrimeTime" bob@ws-bob  (License server system does not support this feature. (-18,327))'
    )
    assert record[0] == DENIED and record[4] == "PrimeTime" and record[8].startswith("unknown_tool: ")


@pytest.mark.parametrize(
    "line",
    [
        "Connection to lic01 closed by remote host.",
        "\x00\x00\x00\x1b[2K",
        " 0:15:20 (MLM) OUT:",
        '12:00:00 (MLM) OUT: "MATLAB" @ws-1',  # no user anywhere
        "25:61:00 MLM OUT",
        '2024-13-45T10:00:00Z (MLM) OUT: "MATLAB" anna@ws',  # not a date
    ],
)
def test_malformed_lines(line):
    assert dated().parse(line) is MALFORMED


@pytest.mark.parametrize(
    "line",
    [
        "",
        "   ",
        "12:00:00 (MLM) SLOG: Statistics Log Frequency is 240 minute(s).",
        "12:00:00 (lmgrd) lmgrd tcp-port 27000",
        "12:00:00 (lmgrd) ",
    ],
)
def test_informational_lines_carry_no_record(line):
    assert dated().parse(line) is None


def test_times_roll_over_at_midnight_and_timestamp_lines_set_the_date():
    p = LineParser()
    assert p.parse('23:59:58 (MLM) OUT: "MATLAB" anna@ws')[1] is None  # no date yet
    assert p.parse("23:59:59 (lmgrd) TIMESTAMP 3/14/2024")[0] == DATE
    assert p.parse('23:59:59 (MLM) OUT: "MATLAB" anna@ws')[1] == local(2024, 3, 14, 23, 59, 59)
    assert p.parse(' 0:00:04 (MLM) IN: "MATLAB" anna@ws')[1] == local(2024, 3, 15, 0, 0, 4)
    # A step back of under an hour and a minute (clock fix, daylight saving) is the same day.
    assert p.parse(' 0:00:01 (MLM) OUT: "MATLAB" anna@ws')[1] == local(2024, 3, 15, 0, 0, 1)
    assert p.parse('23:10:00 (MLM) OUT: "MATLAB" anna@ws')[1] == local(2024, 3, 15, 23, 10, 0)
    assert p.parse('22:10:00 (MLM) OUT: "MATLAB" anna@ws')[1] == local(2024, 3, 15, 22, 10, 0)
    # More than that, and it is the next day (an idle night with no line between).
    assert p.parse('21:08:59 (MLM) OUT: "MATLAB" anna@ws')[1] == local(2024, 3, 16, 21, 8, 59)
    # A TIMESTAMP line corrects the date whatever was inferred.
    p.parse("21:10:00 (lmgrd) TIMESTAMP 3/20/2024")
    assert p.parse('21:10:01 (MLM) OUT: "MATLAB" anna@ws')[1] == local(2024, 3, 20, 21, 10, 1)


@pytest.mark.parametrize(
    "line, day",
    [
        (
            "13:53:54 (lmgrd) FlexNet Licensing (v11.16.2.1 build 245043 x64_n6) started on flexlm01 (linux) (4/6/2022)",
            (2022, 4, 6),
        ),
        ("9:49:40 (lmgrd) Server's System Date and Time: Thu Jun 08 2017 09:49:40 EDT", (2017, 6, 8)),
        ("7:47:04 (lmgrd) (@lmgrd-SLOG@) Start-Date: Mon Oct 06 2014 07:47:04 Central Daylight Time", (2014, 10, 6)),
        ("14:50:01 (ansyslmd) TIMESTAMP 6/23/2017", (2017, 6, 23)),
    ],
)
def test_start_banners_give_the_date(line, day):
    p = LineParser()
    p.parse(line)
    assert p.day == datetime(*day).toordinal()


def test_iso_datestamps_carry_their_offset():
    p = LineParser()
    record = p.parse('2024-03-15T08:05:10+01:00 (cdslmd) OUT: "Spectre" søren@eda-ws-11  ')
    assert record[1] == datetime(2024, 3, 15, 7, 5, 10, tzinfo=UTC).timestamp()
    assert (
        p.parse('2024-03-15T08:05:11Z (cdslmd) IN: "Spectre" søren@eda-ws-11')[1]
        == datetime(2024, 3, 15, 8, 5, 11, tzinfo=UTC).timestamp()
    )
    assert (
        p.parse("2024-03-15T08:05:12-0400 (lmgrd) EXITING DUE TO SIGNAL 15")[1]
        == datetime(2024, 3, 15, 12, 5, 12, tzinfo=UTC).timestamp()
    )


def test_backdate_counts_days_back_across_midnight():
    p = LineParser()
    p.parse("2:10:00 (ansyslmd) TIMESTAMP 3/16/2024")
    tods = [23 * 3600 + 41 * 60 + 7, 23 * 3600 + 52 * 60 + 40, 3 * 60 + 15, 1 * 3600 + 16 * 60 + 44]
    assert p.backdate(tods) == [
        local(2024, 3, 15, 23, 41, 7),
        local(2024, 3, 15, 23, 52, 40),
        local(2024, 3, 16, 0, 3, 15),
        local(2024, 3, 16, 1, 16, 44),
    ]


def test_anchor_takes_the_local_date_of_a_moment():
    p = LineParser()
    moment = datetime(2024, 3, 16, 0, 30, 0)
    p.anchor(moment.timestamp())
    assert p.backdate([23 * 3600 + 59 * 60, 10 * 60]) == [
        (moment - timedelta(minutes=31)).timestamp(),
        (moment - timedelta(minutes=20)).timestamp(),
    ]


@pytest.mark.parametrize(
    "line, vendor",
    [
        ("0:20:00 (MLM) EXITING DUE TO SIGNAL 15 Exit reason 2", "MLM"),
        ("0:20:00 (lmgrd) MLM exited with status 15 (Exited because of a signal)", "MLM"),
        ("0:20:31 (lmgrd) REStarted MLM (internet tcp_port 27010)", "MLM"),
        ("21:53:14 (lmgrd) Started MLM (internet tcp_port 42249 pid 10861)", "MLM"),
        ("21:53:14 (MLM) Server started on life1 for:\tMATLAB\t\t", "MLM"),
        ("21:53:14 (MLM_1) FlexNet Licensing version v11.16.2.1 build 244538 x64_lsb", "MLM"),
        ("10:15:02 (lmgrd) Shutting down snpslmd pid=4189 because of signal 15", "snpslmd"),
        ("10:15:02 (lmgrd) EXITING DUE TO SIGNAL 15", ALL_VENDORS),
        (
            "13:53:54 (lmgrd) FlexNet Licensing (v11.5.0.0 build 56285 amd64_re3) started on bl-1-4 (linux) (4/3/2008)",
            ALL_VENDORS,
        ),
    ],
)
def test_daemon_stops_and_starts(line, vendor):
    record = dated().parse(line)
    assert record[0] == DOWN and record[3] == vendor


def test_starting_vendor_daemons_is_not_a_restart():
    assert dated().parse("13:53:54 (lmgrd) Starting vendor daemons ... ") is None
