"""Who belongs where, from the --user-groups file: its format, its errors, re-reading it, and how a bad one shows."""

import csv
import io
import os
import subprocess
import sys
import time
from datetime import UTC, datetime

import pytest
import requests
from hypothesis import given, settings
from hypothesis import strategies as st

from dash_app.config import Config, ConfigError, coerce
from dash_app.directory.csvfile import GroupsFileError, parse_from, parse_groups
from dash_app.directory.mapping import ALWAYS, NOWHERE, UNASSIGNED, GroupMapping, Membership
from dash_app.directory.service import DirectoryService
from dash_app.testing import RedisServer, ServerProcess
from dash_app.testing.servers import ROOT, stop_all
from tests.test_privacy_page import refresh
from tests.test_server_polling import wait_for
from tests.test_source_errors import Reader

WHERE = "--user-groups groups.csv"
NOV_1 = datetime(2026, 11, 1, tzinfo=UTC).timestamp()
DEC_1_8H_CET = datetime(2026, 12, 1, 7, tzinfo=UTC).timestamp()  # 08:00 at +01:00

GOOD = """user,group,cost_centre,from
alice,Engineering,CC-100
bob,Engineering,,2026-11-01
bob,Sales,CC-200,2026-12-01T08:00:00+01:00

carol, Sales , CC-200 ,
"""


def test_a_good_file_gives_each_user_their_groups_in_time():
    mapping = parse_groups(GOOD, WHERE)
    assert list(mapping.rows()) == [
        ("alice", ALWAYS, "Engineering", "CC-100"),
        ("bob", NOV_1, "Engineering", ""),
        ("bob", DEC_1_8H_CET, "Sales", "CC-200"),
        ("carol", ALWAYS, "Sales", "CC-200"),  # spaces around a field are no part of it
    ]
    assert mapping.at("bob", NOV_1 - 1) == NOWHERE  # before his first row bob is (unassigned)
    assert mapping.at("bob", NOV_1).group == "Engineering"
    assert mapping.at("bob", DEC_1_8H_CET - 1).group == "Engineering"
    assert mapping.at("bob", DEC_1_8H_CET).key("cost_centre") == "CC-200"
    assert mapping.at("bob", NOV_1).key("cost_centre") == UNASSIGNED  # no cost centre given
    assert mapping.at("dave", NOV_1).group == UNASSIGNED


def test_the_header_may_name_two_or_three_columns_and_a_byte_order_mark_is_no_part_of_it(tmp_path):
    assert list(parse_groups("user,group\nalice,Eng\n", WHERE).rows()) == [("alice", ALWAYS, "Eng", "")]
    assert list(parse_groups("User,Group,Cost_Centre\nalice,Eng,CC\n", WHERE).rows()) == [("alice", ALWAYS, "Eng", "CC")]
    path = tmp_path / "bom.csv"
    path.write_text("user,group\nalice,Eng\n", encoding="utf-8-sig")
    assert DirectoryService(str(path), None, set).mapping().users() == ["alice"]


def test_a_file_from_a_spreadsheet_with_crlf_lines_reads_the_same():
    assert parse_groups(GOOD.replace("\n", "\r\n"), WHERE) == parse_groups(GOOD, WHERE)


def test_a_missing_or_unreadable_file_at_start_is_one_line(tmp_path):
    with pytest.raises(GroupsFileError, match=f"^--user-groups {tmp_path}/none.csv: not found$"):
        DirectoryService(str(tmp_path / "none.csv"), None, set)
    latin = tmp_path / "latin.csv"
    latin.write_bytes("user,group\nrené,Eng\n".encode("latin-1"))
    with pytest.raises(GroupsFileError, match=f"^--user-groups {latin}: cannot read: 'utf-8' codec can't decode"):
        DirectoryService(str(latin), None, set)


def test_from_is_a_date_at_midnight_utc_or_a_time_that_names_its_zone():
    assert parse_from("2026-11-01") == NOV_1
    assert parse_from("2026-11-01T00:00:00Z") == NOV_1
    assert parse_from("2026-12-01T08:00:00+01:00") == DEC_1_8H_CET
    assert parse_from("") == ALWAYS
    for bad in ("2026-11-01T08:00:00", "2026-13-01", "yesterday", "0001-01-01", "2026-11-01 08:00"):
        with pytest.raises(ValueError):
            parse_from(bad)


@pytest.mark.parametrize(
    ("text", "line", "problem"),
    [
        ("", 1, "expected the header user,group[,cost_centre[,from]], the file is empty"),
        ("name,group\nalice,Eng\n", 1, "expected the header user,group[,cost_centre[,from]], got 'name,group'"),
        ("user\nalice\n", 1, "expected the header"),
        ("user,group\n\nalice,Eng,CC\n", 3, "3 fields, the header names 2"),
        ("user,group\nalice,\n", 2, "group: must not be empty"),
        ("user,group\n,Eng\n", 2, "user: must not be empty"),
        ("user,group\nal\x07ice,Eng\n", 2, "user: must not contain control characters"),
        ("user,group\nalice," + "x" * 201 + "\n", 2, "group: at most 200 characters"),
        ("user,group,cost_centre\nalice,Eng,\x1b[31m\n", 2, "cost_centre: must not contain control characters"),
        ("user,group\nalice,(unused)\n", 2, "group: (unused) is kept for a tool's cost nobody used"),
        ("user,group,cost_centre,from\nalice,Eng,,2026-11-01T08:00\n", 2, "from: '2026-11-01T08:00' names no time zone"),
        ("user,group,cost_centre,from\nalice,Eng,,soon\n", 2, "from: expected an ISO date such as 2026-11-01"),
        ("user,group\nalice,Eng\nbob,Eng\nalice,Sales\n", 4, "user 'alice' is in a group at line 2 already without a from"),
        (
            "user,group,cost_centre,from\nalice,Eng,,2026-11-01\nalice,Ops,,2026-11-01T00:00:00+00:00\n",
            3,
            "user 'alice' is in a group at line 2 already with the same from: one group at a time",
        ),
        ('user,group\nalice,"Eng\n', 2, "unexpected end of data"),
    ],
)
def test_a_bad_line_is_refused_in_one_line_naming_it(text, line, problem):
    with pytest.raises(GroupsFileError) as refused:
        parse_groups(text, WHERE)
    message = str(refused.value)
    assert message.startswith(f"{WHERE}: line {line}: ") and problem in message, message
    assert "\n" not in message


users = st.sampled_from(["alice", "bob", "carol", "dave", "érika", "x y"])
groups = st.sampled_from(["Eng", "Sales", "Ops", UNASSIGNED])
days = st.integers(0, 60)  # days after 2026-11-01, or None for a row without from


@settings(max_examples=150, deadline=None)
@given(
    rows=st.dictionaries(st.tuples(users, st.none() | days), st.tuples(groups, st.sampled_from(["", "CC1", "CC2"]))),
    asks=st.lists(st.tuples(users, st.integers(-2, 62 * 24)), max_size=30),
)
def test_the_group_at_a_time_is_the_users_latest_row_from_before_it(rows, asks):
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(["user", "group", "cost_centre", "from"])
    for (user, day), (group, cost_centre) in rows.items():
        since = "" if day is None else datetime.fromtimestamp(NOV_1 + day * 86400, UTC).date().isoformat()
        writer.writerow([user, group, cost_centre, since])
    mapping = parse_groups(out.getvalue(), WHERE)
    for user, hour in asks:
        when = NOV_1 + hour * 3600
        # The brute force: every row of the user that starts at or before `when`; the latest one wins.
        started = [
            (ALWAYS if day is None else NOV_1 + day * 86400, group, cost_centre)
            for (name, day), (group, cost_centre) in rows.items()
            if name == user and (day is None or NOV_1 + day * 86400 <= when)
        ]
        expected = Membership(*max(started)) if started else NOWHERE
        assert mapping.at(user, when) == expected


def test_the_file_wins_over_the_directory_for_a_user_in_both():
    directory = GroupMapping({"alice": [Membership(ALWAYS, "Dir-Eng", "D1")], "bob": [Membership(ALWAYS, "Dir-Ops")]})
    file = parse_groups("user,group,cost_centre,from\nalice,File-Sales,F1,2026-11-01\ncarol,File-Eng,,\n", WHERE)
    merged = directory.overlaid(file)
    assert merged.memberships("alice") == (Membership(NOV_1, "File-Sales", "F1"),)  # the file's, whole
    assert merged.at("alice", NOV_1 - 1) == NOWHERE  # not the directory's group before the file's from date
    assert merged.memberships("bob") == (Membership(ALWAYS, "Dir-Ops"),)
    assert merged.users() == ["alice", "bob", "carol"]


# ------------------------------------------------------------------------------------------ the service, in process


def until(condition, what, timeout=10):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(0.02)
    raise AssertionError(f"timed out waiting for {what}")


def rewrite(path, text):
    """Write `text` over `path` and make its change visible at once (a file system's times may be coarse)."""
    path.write_text(text)
    stamp = time.time_ns() + 10_000_000
    os.utime(path, ns=(stamp, stamp))


def test_the_service_follows_the_file_and_keeps_the_last_good_mapping_while_it_is_malformed(tmp_path):
    path = tmp_path / "groups.csv"
    path.write_text("user,group\nalice,Eng\n")
    service = DirectoryService(str(path), None, set, check_seconds=0.02)
    service.start()
    try:
        first = service.mapping()
        assert first.at("alice", NOV_1).group == "Eng"
        [health] = service.health()
        assert health.as_dict()["kind"] == "directory" and health.state == "up" and health.name == str(path)

        rewrite(path, "user,group\nalice,Sales\nbob,Eng\n")
        until(lambda: service.mapping().users() == ["alice", "bob"], "the changed file read")
        assert service.mapping().at("alice", NOV_1).group == "Sales"
        good = service.mapping()

        rewrite(path, "user,group\nalice,Sales\nbob,\n")
        # Written in place, the file may be read empty first (an error too): its next change brings it whole.
        malformed = {"kind": "malformed file", "server": None, "detail": "line 3: group: must not be empty"}
        until(lambda: health.as_dict()["error"] == malformed, "the malformed file noted")
        assert service.mapping() is good and health.state == "down"
        entry = health.as_dict()
        assert entry["last_error"] == "malformed file: line 3: group: must not be empty"

        path.unlink()
        until(lambda: health.as_dict()["error"]["kind"] == "cannot open", "the missing file noted")
        assert service.mapping() is good and health.state == "down"

        rewrite(path, "user,group\ncarol,Ops\n")
        until(lambda: health.state == "up" and service.mapping().users() == ["carol"], "the good file read again")
    finally:
        service.stop()


def test_without_file_or_directory_the_mapping_is_empty_and_no_source_is_listed():
    service = DirectoryService(None, None, set)
    service.start()
    service.stop()
    assert service.mapping() == GroupMapping() and service.health() == []


# ---------------------------------------------------------------------------------------------------- settings


def test_the_directory_settings_are_checked_together():
    base = {"demo": False, "db": ":memory:"}
    for changes, message in [
        ({"ldap_url": "http://ldap.example.com"}, "--ldap-url"),
        ({"ldap_url": "ldap://"}, "--ldap-url"),
        ({"ldap_url": "ldap://cn=x:pw@host:389"}, "--ldap-url"),
        ({"ldap_url": "ldap://host:389/dc=x"}, "--ldap-url"),
        ({"ldap_url": "ldap://host:389"}, "--ldap-base-dn: required with --ldap-url"),
        ({"ldap_url": "ldap://host", "ldap_base_dn": "dc=x", "ldap_user_filter": "(uid=x)"}, "must contain {user}"),
        ({"ldap_url": "ldap://host", "ldap_base_dn": "dc=x", "ldap_user_filter": "(uid={user}{x})"}, "only {user}"),
        ({"ldap_url": "ldaps://host:636", "ldap_base_dn": "dc=x", "ldap_bind_dn": "cn=a"}, "DASH_APP_LDAP_PASSWORD"),
        ({"ldap_refresh_hours": 0}, "--ldap-refresh-hours: must be at least"),
    ]:
        with pytest.raises((ConfigError, ValueError)) as refused:
            coerce({**base, **changes})
        assert message in str(refused.value), (changes, str(refused.value))
    config = coerce({**base, "ldap_url": "ldaps://ldap.example.com:636", "ldap_base_dn": "dc=example,dc=com"})
    assert config.ldap_user_filter == "(uid={user})" and config.ldap_refresh_hours == 6.0


def test_the_ldap_password_comes_from_the_environment_only_and_is_in_no_repr(tmp_path):
    from dash_app.config.settings import SETTINGS

    [password] = [setting for setting in SETTINGS if setting.name == "ldap_password"]
    assert password.flag is None and password.env == "DASH_APP_LDAP_PASSWORD"
    config = Config(ldap_password="s3cret-pw")
    assert "s3cret-pw" not in repr(config) and "s3cret-pw" not in str(config)


# ------------------------------------------------------------------------------------------- a real server process


def test_a_malformed_file_at_start_ends_the_program_with_one_line_and_status_2(tmp_path):
    path = tmp_path / "bad.csv"
    path.write_text("user,group\nalice,Eng\nbob,Eng,extra\n")
    env = {k: v for k, v in os.environ.items() if not k.startswith("DASH_APP_")}
    env["PYTHONPATH"] = str(ROOT)
    done = subprocess.run(
        [sys.executable, "-m", "dash_app", "--user-groups", str(path), "--db", ":memory:", "--no-demo"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 2
    assert done.stderr.strip().splitlines() == [
        f"python -m dash_app: error: --user-groups {path}: line 3: 3 fields, the header names 2"
    ]


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    folder = tmp_path_factory.mktemp("directory")
    path = folder / "groups.csv"
    path.write_text("user,group,cost_centre\nalice,Eng,CC1\n")
    server = ServerProcess({"DASH_APP_USER_GROUPS": str(path)}, folder)
    yield server, path
    server.stop()


def directory_entries(server):
    sources = requests.get(server.url + "/sources?format=json", timeout=5).json()["sources"]
    return [entry for entry in sources if entry["kind"] == "directory"]


def test_a_malformed_change_shows_in_sources_and_the_source_strip_until_it_is_mended(served):
    server, path = served
    [entry] = directory_entries(server)
    assert entry["state"] == "up" and entry["name"] == str(path) and entry["users"] == 1
    client = Reader(server.url, {})
    _text, out = refresh(client)
    assert "source-strip" not in out or not out["source-strip"].get("is_open")

    rewrite(path, "user,group,cost_centre\nalice,Eng,CC1\nbob,Sales,CC2,2026-11-01\n")
    error = "malformed file: line 3: 4 fields, the header names 3"
    [entry] = wait_for(lambda: [e for e in directory_entries(server) if e["last_error"] == error], "the directory down")
    assert entry["state"] == "down"
    _text, out = refresh(client)
    strip = out["source-strip"]["children"][0]
    assert f"directory {path} down for 0 min (malformed file: line 3: 4 fields, the header names 3)" in strip

    rewrite(path, "user,group,cost_centre\nalice,Eng,CC1\nbob,Sales,CC2\n")
    wait_for(lambda: [e for e in directory_entries(server) if e["state"] == "up" and e["users"] == 2], "the file mended")


def test_with_redis_every_process_follows_the_file_and_lists_its_own_directory_source(tmp_path):
    path = tmp_path / "groups.csv"
    path.write_text("user,group\nalice,Eng\n")
    redis = RedisServer(tmp_path, persistent=False)
    servers = []
    try:
        for _ in range(2):
            env = {"DASH_APP_REDIS_URL": redis.url, "DASH_APP_DB": str(tmp_path / "shared.db"), "DASH_APP_USER_GROUPS": path}
            servers.append(ServerProcess({k: str(v) for k, v in env.items()}, tmp_path))

        def leading(server):
            return requests.get(server.url + "/healthz", timeout=5).json()["leader"]

        wait_for(lambda: any(leading(server) for server in servers), "a leader")
        other = next(server for server in servers if not leading(server))  # lists the leader's sources, and its own
        for server in servers:
            assert [entry["state"] for entry in directory_entries(server)] == ["up"]
        rewrite(path, "user,group\nalice,\n")
        for server in servers:
            wait_for(lambda: [e["state"] for e in directory_entries(server)] == ["down"], "each process's file down")  # noqa: B023
        client = Reader(other.url, {})
        _text, out = refresh(client)
        assert (
            f"directory {path} down for 0 min (malformed file: line 2: group: must not be empty)"
            in (out["source-strip"]["children"][0])
        )
    finally:
        stop_all(servers)
        redis.stop()
