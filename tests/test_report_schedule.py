"""The reports file and the reports' schedule: every bad file refused in one line, due times and periods in the report's
zone across daylight saving, against a brute-force walk of the clock."""

import json
from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from dash_app.reports.rules import ReportsError, load_reports, parse_reports
from dash_app.reports.schedule import due_at, last_due, next_due, period_of, wall
from dash_app.testing.commands import run_refused


def refuse_nonsense(url):
    return "not a URL apprise knows" if url.startswith("nonsense") else None


EXAMPLE = [
    {
        "name": "Monthly costs",
        "every": "month",
        "at": "07:00",
        "tz": "Europe/Berlin",
        "period": "last-month",
        "to": ["mailto://user:secret@smtp.example.com?to=finance@example.com"],
        "content": ["summary", "capacity", "recommendations", "chargeback"],
    },
    {"name": "Weekly", "every": "week", "day": "friday", "at": "17:30:15", "period": "last-week", "to": ["json://h/x"]},
]


def test_the_example_is_read_as_written():
    monthly, weekly = parse_reports(EXAMPLE, refuse_nonsense)
    assert (monthly.name, monthly.every, monthly.at, monthly.tz, monthly.period, monthly.day) == (
        "Monthly costs",
        "month",
        time(7, 0),
        "Europe/Berlin",
        "last-month",
        1,
    )
    assert monthly.content == ("summary", "capacity", "recommendations", "chargeback")
    assert monthly.to == tuple(EXAMPLE[0]["to"])
    # Defaults: UTC, every content; a weekday by name (1 = Monday).
    assert (weekly.tz, weekly.day, weekly.at, len(weekly.content)) == ("UTC", 5, time(17, 30, 15), 4)


def bad(**change):
    entry = {**EXAMPLE[0], **change}
    return [{k: v for k, v in entry.items() if v is not None}]


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"name": "x"}, "reports: expected a JSON list of reports"),
        (["x"], "reports: report 1: expected an object"),
        (bad(name=""), "reports: report 1: 'name' must be a short printable text"),
        (bad(every="hour"), "report 1 ('Monthly costs'): 'every' must be one of month, week, day"),
        (bad(every=None), "report 1 ('Monthly costs'): missing field 'every'"),
        (bad(at="7:00"), "report 1 ('Monthly costs'): 'at' must be a time of day as HH:MM"),
        (bad(at="24:00"), "'at' must be a time of day as HH:MM"),
        (bad(tz="Mars/Olympus"), "report 1 ('Monthly costs'): 'tz' must be an IANA time zone name"),
        (bad(tz="../../etc/passwd"), "'tz' must be an IANA time zone name"),
        (bad(period="last-year"), "'period' must be one of last-month, last-week, yesterday"),
        (bad(to=[]), "'to' must be a list of apprise URLs, at least one"),
        (bad(to=["json://ok", "nonsense://user:secret@x"]), "'to' URL 2 cannot be used: not a URL apprise knows"),
        (bad(content=["summary", "gossip"]), "'content' must be a list of summary, capacity, recommendations, chargeback"),
        (bad(content=[]), "'content' must be a list"),
        (bad(day=29), "'day' must be a day of the month from 1 to 28"),
        (bad(every="week", day="someday"), "'day' must be a day of the week"),
        (bad(every="day", day=3), "'day' is for reports every week or month"),
        (bad(colour="red"), "report 1 ('Monthly costs'): unknown field 'colour'"),
        ([EXAMPLE[0], EXAMPLE[0]], "report 2: the name 'Monthly costs' is used twice"),
    ],
)
def test_a_bad_file_is_refused_with_one_line_naming_the_report_and_field(data, message):
    with pytest.raises(ReportsError) as refused:
        parse_reports(data, refuse_nonsense)
    text = str(refused.value)
    assert message in text
    assert "\n" not in text and "secret" not in text  # a URL's password never reaches the message


def test_the_command_line_refuses_a_bad_file_with_exit_status_2(tmp_path):
    path = tmp_path / "reports.json"
    path.write_text(json.dumps(bad(period="fortnight")))
    done = run_refused(["--reports", str(path)])
    assert done.returncode == 2
    assert done.stderr.strip().splitlines() == [
        f"python -m dash_app: error: reports {path}: report 1 ('Monthly costs'): 'period' must be one of last-month, "
        "last-week, yesterday"
    ]
    missing = run_refused(["--reports", str(tmp_path / "none.json")])
    assert missing.returncode == 2 and f"reports {tmp_path / 'none.json'}: not found" in missing.stderr
    assert load_reports(None, refuse_nonsense) == ()


def report(**fields):
    entry = {"name": "r", "every": "day", "at": "07:00", "tz": "UTC", "period": "yesterday", "to": ["json://h/x"]}
    entry.update(fields)
    return parse_reports([entry], refuse_nonsense)[0]


def utc(*args):
    return datetime(*args, tzinfo=UTC).timestamp()


def test_a_time_the_clock_skips_is_due_when_it_skips_it_and_one_it_shows_twice_the_first_time():
    berlin = report(at="02:30", tz="Europe/Berlin")
    # 2026-03-29: 02:00 CET becomes 03:00 CEST (01:00 UTC); 02:30 never shows.
    assert next_due(berlin, utc(2026, 3, 29, 0, 0)) == (date(2026, 3, 29), utc(2026, 3, 29, 1, 0))
    # 2026-10-25: 03:00 CEST becomes 02:00 CET (01:00 UTC); 02:30 shows at 00:30 UTC and again at 01:30 UTC.
    assert next_due(berlin, utc(2026, 10, 25, 0, 0)) == (date(2026, 10, 25), utc(2026, 10, 25, 0, 30))
    assert last_due(berlin, utc(2026, 10, 25, 1, 45)) == (date(2026, 10, 25), utc(2026, 10, 25, 0, 30))
    # Yesterday, across the spring change: 23 hours.
    start, end = period_of(berlin, date(2026, 3, 30))
    assert (start, end) == (utc(2026, 3, 28, 23, 0), utc(2026, 3, 29, 22, 0))


def test_last_month_and_last_week_are_whole_local_days():
    monthly = report(every="month", period="last-month", tz="America/New_York", at="06:00")
    day, due = last_due(monthly, utc(2026, 12, 7, 14, 0))
    assert day == date(2026, 12, 1) and due == utc(2026, 12, 1, 11, 0)  # EST, UTC-5
    # November 2026 in New York: EDT until the 1st at 02:00, so it starts at 04:00 UTC and ends at 05:00 UTC.
    assert period_of(monthly, day) == (utc(2026, 11, 1, 4, 0), utc(2026, 12, 1, 5, 0))
    weekly = report(every="week", day="wednesday", period="last-week")
    day, due = last_due(weekly, utc(2026, 12, 7, 14, 0))  # a Monday: the last Wednesday was 2 December
    assert day == date(2026, 12, 2)
    assert period_of(weekly, day) == (utc(2026, 11, 23), utc(2026, 11, 30))  # Monday to Monday


# Zones whose changes since 2000 fall on quarter hours: the walk's step. Santiago changes at midnight (a day that
# starts at 01:00), Lord Howe by half an hour, Kathmandu never, at +05:45.
ZONES = ["UTC", "Europe/Berlin", "America/New_York", "America/Santiago", "Australia/Lord_Howe", "Asia/Kathmandu"]
STEP = 900
LOOK = 66 * 86400


def crossings(zone, lo, hi, at):
    """Walk the clock from `lo` to `hi` in STEP seconds: {local date: the first instant its clock showed `at` or later}."""
    first = {}
    before = wall(zone, lo - STEP)
    for instant in range(lo, hi, STEP):
        now = wall(zone, instant)
        if now > before:
            day = before.date()
            while day <= now.date():
                target = datetime.combine(day, at)
                if before < target <= now and day not in first:
                    first[day] = float(instant)
                day += timedelta(days=1)
        before = now
    return first


def due_days(rule, days):
    if rule.every == "month":
        return [d for d in days if d.day == rule.day]
    if rule.every == "week":
        return [d for d in days if d.isoweekday() == rule.day]
    return list(days)


def expected_period(kind, day):
    """The period's first local date and the one after its last, counted independently of schedule.period_dates."""
    if kind == "last-month":
        year, month = (day.year, day.month - 1) if day.month > 1 else (day.year - 1, 12)
        return date(year, month, 1), date(day.year, day.month, 1)
    if kind == "last-week":
        year, week, _ = day.isocalendar()
        monday = date.fromisocalendar(year, week, 1)
        return monday - timedelta(weeks=1), monday
    return day - timedelta(days=1), day


def changes(zone):
    """The instants from 2021 to 2030 at which the zone's offset changes (found day by day, then to the second)."""
    tz, found = ZoneInfo(zone), []

    def offset(instant):
        return datetime.fromtimestamp(instant, tz).utcoffset()

    day = int(utc(2021, 1, 1))
    while day < utc(2030, 12, 1):
        if offset(day) != offset(day + 86400):
            low, high = day, day + 86400
            while high - low > 1:
                middle = (low + high) // 2
                low, high = (middle, high) if offset(middle) == offset(low) else (low, middle)
            found.append(high)
        day += 86400
    return found


CHANGES = {zone: changes(zone) for zone in ZONES}


@st.composite
def moments(draw):
    """A zone, an instant and a time of day, and whether the report is daily: most of them a few days around one of the
    zone's clock changes, daily, at a time of day within an hour of the change's (skipped, repeated, or next to it)."""
    if draw(st.integers(0, 3)):
        zone = draw(st.sampled_from([zone for zone in ZONES if CHANGES[zone]]))
        change = draw(st.sampled_from(CHANGES[zone]))
        now = change + draw(st.integers(-3 * 86400, 3 * 86400))
        local = wall(ZoneInfo(zone), change - 1) + timedelta(minutes=15 * draw(st.integers(-3, 5)))
        return zone, now, local.hour, local.minute // 15, True
    zone = draw(st.sampled_from(ZONES))
    now = draw(st.integers(int(utc(2021, 1, 1)), int(utc(2030, 12, 31))))
    return zone, now, draw(st.integers(0, 23)), draw(st.integers(0, 3)), False


@settings(max_examples=50, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    moment=moments(),
    every=st.sampled_from(["day", "week", "month"]),
    weekday=st.integers(1, 7),
    monthday=st.integers(1, 28),
    kind=st.sampled_from(["last-month", "last-week", "yesterday"]),
)
def test_due_times_and_periods_match_a_walk_of_the_clock(moment, every, weekday, monthday, kind):
    zone, now, hour, quarter, daily = moment
    every = "day" if daily else every
    names = ("monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday")
    day = {"day": monthday} if every == "month" else {"day": names[weekday - 1]} if every == "week" else {}
    rule = report(tz=zone, at=f"{hour:02d}:{quarter * 15:02d}", every=every, period=kind, **day)
    tz = ZoneInfo(zone)
    lo, hi = (now - LOOK) // STEP * STEP, now + LOOK
    reached = crossings(tz, lo, hi, rule.at)
    dues = [(d, reached[d]) for d in due_days(rule, sorted(reached))]
    # Every due day of the walk (but its ends) is due when the walk first saw the clock reach `at` that day.
    inside = [(d, instant) for d, instant in dues if lo + 2 * 86400 < instant < hi - 2 * 86400]
    assert [(d, due_at(rule, d)) for d, _ in inside] == inside
    assert last_due(rule, now) == max((due for due in dues if due[1] <= now), key=lambda due: due[1])
    assert next_due(rule, now) == min((due for due in dues if due[1] > now), key=lambda due: due[1])
    # The period of the latest due day: from its first date's midnight to the midnight after its last date.
    due_day = last_due(rule, now)[0]
    first, after = expected_period(kind, due_day)
    midnights = crossings(
        tz,
        int(utc(first.year, first.month, first.day)) - 2 * 86400,
        int(utc(after.year, after.month, after.day)) + 86400,
        time(0, 0),
    )
    assert period_of(rule, due_day) == (midnights[first], midnights[after])


@pytest.mark.parametrize("zone", [zone for zone in ZONES if CHANGES[zone]])
def test_every_quarter_hour_around_each_clock_change_of_a_year_is_due_when_the_walk_reaches_it(zone):
    """Exhaustively, for each change of 2026: every time of day within two hours of the change's, on the days around it."""
    tz = ZoneInfo(zone)
    for change in [c for c in CHANGES[zone] if utc(2026, 1, 1) <= c < utc(2027, 1, 1)]:
        for quarters in range(-8, 9):
            local = wall(tz, change - 1) + timedelta(minutes=15 * quarters)
            at = time(local.hour, local.minute // 15 * 15)
            reached = crossings(tz, (change - 2 * 86400) // STEP * STEP, change + 2 * 86400, at)
            rule = report(tz=zone, at=at.strftime("%H:%M"))
            inside = {d: instant for d, instant in reached.items() if abs(instant - change) < 86400}
            assert inside and {d: due_at(rule, d) for d in inside} == inside, (zone, at)
