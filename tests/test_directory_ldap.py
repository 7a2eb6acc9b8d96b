"""Who belongs where, from the company directory: lookups against a real OpenLDAP slapd, and what a failing one does."""

import contextlib
import logging
import socket
import threading
import time

import pytest
import requests

from dash_app.directory.ldap import LdapDirectory, user_filter
from dash_app.directory.lookup import DirectoryError
from dash_app.directory.mapping import ALWAYS, NOWHERE, UNASSIGNED, Membership
from dash_app.directory.service import DirectoryService, UserNames
from dash_app.state import get_state
from dash_app.store import Store
from dash_app.store.session_users import session_users_after
from dash_app.testing import ServerProcess
from dash_app.testing.ldap import (
    ADMIN_DN,
    ADMIN_PASSWORD,
    COST_CENTRE_ATTRIBUTE,
    READER_DN,
    READER_PASSWORD,
    SUFFIX,
    LdapServer,
)

ODD = "o*d(d)\\y"  # every character RFC 4515 escapes but NUL, which no uid holds
PEOPLE = [
    ("alice", "Engineering", "CC-100"),
    ("bob", "Engineering", "CC-100"),
    ("carol", "Sales", "CC-200"),
    (ODD, "Sales", None),
    ("eve", None, None),  # in the directory, but in no department
    ("érika", "Ventes", "CC-200"),
]
NOW = 1_800_000_000.0


@pytest.fixture(scope="module")
def slapd():
    with LdapServer(PEOPLE) as server:
        yield server


def directory(slapd, **changes):
    settings = {
        "base_dn": SUFFIX,
        "cost_centre_attribute": COST_CENTRE_ATTRIBUTE,
        "bind_dn": READER_DN,
        "password": READER_PASSWORD,
    }
    return LdapDirectory(slapd.url, **{**settings, **changes})


def until(condition, what, timeout=10):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(0.02)
    raise AssertionError(f"timed out waiting for {what}")


def test_a_user_name_is_escaped_per_rfc_4515_in_the_filter():
    assert user_filter("(uid={user})", "a*b(c)\\d\x00e") == "(uid=a\\2ab\\28c\\29\\5cd\\00e)"
    assert user_filter("(&(objectClass=person)(|(uid={user})(mail={user}@example.com)))", "x)(uid=*") == (
        "(&(objectClass=person)(|(uid=x\\29\\28uid=\\2a)(mail=x\\29\\28uid=\\2a@example.com)))"
    )


def test_users_are_looked_up_in_two_departments_with_their_cost_centres(slapd):
    asked = ["alice", "bob", "carol", ODD, "eve", "érika", "nobody", "*", "x\x00y"]
    lookup = directory(slapd).look_up(asked)
    mapping = lookup.mapping
    assert list(mapping.rows()) == [
        ("alice", ALWAYS, "Engineering", "CC-100"),
        ("bob", ALWAYS, "Engineering", "CC-100"),
        ("carol", ALWAYS, "Sales", "CC-200"),
        (ODD, ALWAYS, "Sales", ""),  # found by its own escaped name
        ("érika", ALWAYS, "Ventes", "CC-200"),
    ]
    assert (lookup.asked, lookup.unusable) == (len(asked), 1)  # eve names no department
    # Escaped, "*" is a name like any other: nobody is called that (unescaped, it would have matched everyone).
    for user in ("nobody", "*", "x\x00y", "eve"):
        assert mapping.at(user, NOW) == NOWHERE and mapping.at(user, NOW).group == UNASSIGNED
    assert mapping.groups("cost_centre") == sorted(["CC-100", "CC-200", UNASSIGNED])


def test_the_group_and_cost_centre_attributes_and_the_filter_are_settings(slapd):
    lookup = directory(slapd, group_attribute=COST_CENTRE_ATTRIBUTE, cost_centre_attribute="", bind_dn="", password="")
    assert lookup.look_up(["alice", "carol", ODD]).mapping.memberships("carol") == (Membership(ALWAYS, "CC-200", ""),)
    any_case = directory(slapd, group_attribute="DEPARTMENTNUMBER", cost_centre_attribute=COST_CENTRE_ATTRIBUTE.lower())
    assert any_case.look_up(["carol"]).mapping.memberships("carol") == (Membership(ALWAYS, "Sales", "CC-200"),)
    by_cn = directory(slapd, user_filter="(&(objectClass=inetOrgPerson)(cn={user}))")
    assert by_cn.look_up(["person2", "carol"]).mapping.users() == ["person2"]  # carol's entry is cn=person2


def test_ldaps_checks_the_directorys_certificate_and_name(monkeypatch):
    with LdapServer([("alice", "Engineering", "CC-100")], tls=True) as server:
        untrusted = LdapDirectory(server.ldaps_url, SUFFIX)
        with pytest.raises(DirectoryError) as refused:
            untrusted.look_up(["alice"])
        assert refused.value.error.kind == "tls failed" and "CERTIFICATE_VERIFY_FAILED" in refused.value.error.detail
        monkeypatch.setenv("SSL_CERT_FILE", str(server.cert_path))  # trusted: where OpenSSL's default paths look
        assert untrusted.look_up(["alice"]).mapping.memberships("alice") == (Membership(ALWAYS, "Engineering", ""),)
        other_name = LdapDirectory(server.ldaps_url.replace("127.0.0.1", "localhost"), SUFFIX)
        with pytest.raises(DirectoryError) as refused:
            other_name.look_up(["alice"])  # the certificate names 127.0.0.1 only
        assert refused.value.error.kind == "tls failed"


def test_a_referral_is_not_followed_so_the_password_goes_nowhere_else(slapd):
    # Another host the directory refers to: a bare listener that keeps whatever a client sends it.
    elsewhere = socket.create_server(("127.0.0.1", 0))
    received = []

    def keep():
        with contextlib.suppress(OSError):
            while True:
                client, _ = elsewhere.accept()
                client.settimeout(2)
                with client, contextlib.suppress(OSError):
                    received.append(client.recv(4096))

    threading.Thread(target=keep, daemon=True).start()
    referral = slapd.add_referral("ou=elsewhere", f"ldap://127.0.0.1:{elsewhere.getsockname()[1]}/{SUFFIX}")
    try:
        with pytest.raises(DirectoryError) as refused:
            directory(slapd, base_dn=referral, timeout=2).look_up(["alice"])
        assert refused.value.error.kind == "search failed" and "referral" in refused.value.error.detail
        assert directory(slapd).look_up(["alice"]).mapping.users() == ["alice"]  # below the suffix, it is passed over
        assert received == []
    finally:
        slapd.delete(referral)
        elsewhere.close()


def test_the_file_wins_over_the_directory_for_a_user_in_both(slapd, tmp_path):
    path = tmp_path / "groups.csv"
    path.write_text("user,group,cost_centre,from\nalice,Platform,CC-900,2026-11-01\ndave,Support,,\n")
    service = DirectoryService(str(path), directory(slapd), lambda: ["alice", "bob", "dave"], check_seconds=0.05)
    service.start()
    try:
        until(lambda: service.refreshes >= 1, "the first lookup")
        mapping = service.mapping()
        assert mapping.memberships("alice") == (Membership(1793491200.0, "Platform", "CC-900"),)  # the file's, whole
        assert mapping.at("alice", 0) == NOWHERE  # before the file's from date: not the directory's Engineering
        assert mapping.memberships("bob") == (Membership(ALWAYS, "Engineering", "CC-100"),)  # the directory's
        assert mapping.memberships("dave") == (Membership(ALWAYS, "Support", ""),)
        file_health, ldap_health = service.health()
        assert (file_health.name, ldap_health.name) == (str(path), slapd.url)
        assert ldap_health.as_dict()["state"] == "up" and ldap_health.as_dict()["found"] == 2  # alice too: the file hides her
    finally:
        service.stop()


def test_a_refused_bind_marks_the_directory_down_and_keeps_the_last_mapping(slapd, caplog):
    caplog.set_level(logging.DEBUG)
    service = DirectoryService(None, directory(slapd), lambda: ["alice", "carol"], check_seconds=0.05)
    service.start()
    try:
        until(lambda: service.refreshes == 1, "the first lookup")
        good = service.mapping()
        assert good.users() == ["alice", "carol"]
        slapd.set_password(READER_DN, "changed-by-the-admins")
        service.refresh()
        [health] = service.health()
        until(lambda: health.state == "down", "the directory down")
        assert service.mapping() is good
        entry = health.as_dict()
        assert entry["error"] == {"kind": "bind refused", "server": None, "detail": "invalidCredentials"}
        assert READER_PASSWORD not in caplog.text and READER_PASSWORD not in repr(service.health())
        assert READER_PASSWORD not in repr(directory(slapd)) and "password" not in repr(directory(slapd))
    finally:
        service.stop()
        slapd.set_password(READER_DN, READER_PASSWORD)


def test_a_directory_that_stops_answering_is_down_and_up_again_when_it_answers(slapd):
    # A refresh every 0.2 s: a down directory is asked again as soon (the refresh interval, at most a minute).
    service = DirectoryService(None, directory(slapd), lambda: ["bob"], refresh_seconds=0.2, check_seconds=0.05)
    service.start()
    [health] = service.health()
    try:
        until(lambda: service.refreshes >= 1, "the first lookup")
        good = service.mapping()
        slapd.stop()
        until(lambda: health.state == "down", "the directory down")
        assert health.as_dict()["error"]["kind"] == "no answer" and service.mapping() is good
        down_since = health.down_since
        slapd.start()
        refreshes = service.refreshes
        until(lambda: health.state == "up" and service.refreshes > refreshes, "the directory up again")
        assert service.mapping() == good and health.down_since is None and health.last_ok > down_since
    finally:
        service.stop()
        if slapd.process is None:
            slapd.start()


def test_users_seen_since_the_last_refresh_are_looked_up_on_their_own(slapd):
    users = ["alice"]
    asked = []

    class Recorded:
        """The real directory, noting whom each lookup asks about."""

        def __init__(self, directory):
            self.directory, self.name = directory, directory.name

        def look_up(self, wanted):
            asked.append(sorted(wanted))
            return self.directory.look_up(wanted)

    service = DirectoryService(None, Recorded(directory(slapd)), lambda: users, check_seconds=0.02, new_users_seconds=0.05)
    service.start()
    try:
        until(lambda: "alice" in service.mapping(), "alice looked up")
        users.append("carol")
        until(lambda: "carol" in service.mapping(), "carol looked up without a refresh")
        assert service.mapping().at("alice", NOW).group == "Engineering"  # still known
        assert asked[:2] == [["alice"], ["carol"]] and all(wanted for wanted in asked)
        service.refresh()
        until(lambda: ["alice", "carol"] in asked, "a whole refresh")
    finally:
        service.stop()


def test_the_users_asked_about_are_the_stored_sessions_read_in_steps_and_those_holding_licenses(tmp_path):
    store = Store(str(tmp_path / "users.db"))
    try:
        rows = [(f"b{n}", "Tool", f"user{n % 7}", float(n)) for n in range(20)]
        for borrow_id, tool, user, at in rows:
            store.read(
                'INSERT INTO borrows (id, tool, "user", borrowed_at, is_overage) VALUES (:id, :tool, :user, :at, 0)',
                {"id": borrow_id, "tool": tool, "user": user, "at": at},
            )
        names, last = session_users_after(store, 0, step=3)
        assert names == {user for _id, _tool, user, _at in rows} and last == 20
        assert session_users_after(store, last, step=3) == (set(), 20)
        store.read("INSERT INTO borrows (id, tool, \"user\", borrowed_at, is_overage) VALUES ('b20', 'T', 'zed', 1, 0)")
        assert session_users_after(store, last, step=3) == ({"zed"}, 21)
        live = ["live-only"]
        users = UserNames(lambda after: session_users_after(store, after, step=3), lambda: live)
        assert users() == {f"user{n}" for n in range(7)} | {"zed", "live-only"}
        live.clear()
        assert users() == {f"user{n}" for n in range(7)} | {"zed"}  # the stored ones are kept, not read again
    finally:
        store.close()


def test_the_app_looks_up_whoever_borrows(slapd, make_app):
    app = make_app(
        ldap_url=slapd.url,
        ldap_base_dn=SUFFIX,
        ldap_cost_centre_attribute=COST_CENTRE_ATTRIBUTE,
        ldap_bind_dn=ADMIN_DN,
        ldap_password=ADMIN_PASSWORD,
    )
    state = get_state(app)
    tool = state.pool.tools[0]
    state.pool.borrow(tool, "carol")
    state.directory.refresh()
    until(lambda: "carol" in state.directory.mapping(), "carol looked up")
    assert state.directory.mapping().at("carol", NOW) == Membership(ALWAYS, "Sales", "CC-200")


def test_sources_list_the_directory_down_without_its_password(slapd, tmp_path):
    path = tmp_path / "groups.csv"
    path.write_text("user,group\nalice,Eng\n")
    wrong = "wrong-password-Zq9"
    server = ServerProcess(
        {
            "DASH_APP_USER_GROUPS": str(path),
            "DASH_APP_LDAP_URL": slapd.url,
            "DASH_APP_LDAP_BASE_DN": SUFFIX,
            "DASH_APP_LDAP_BIND_DN": READER_DN,
            "DASH_APP_LDAP_PASSWORD": wrong,
        },
        tmp_path,
    )
    try:

        def ldap_entry():
            sources = requests.get(server.url + "/sources?format=json", timeout=5).json()["sources"]
            found = [entry for entry in sources if entry["kind"] == "directory" and entry["name"] == slapd.url]
            return found and found[0]["state"] == "down" and found[0]

        entry = until(ldap_entry, "the directory down", timeout=20)
        assert entry["last_error"] == "bind refused: invalidCredentials"
        sources = requests.get(server.url + "/sources?format=json", timeout=5).text
        page = requests.get(server.url + "/sources", headers={"Accept": "text/html"}, timeout=5).text
        assert "bind refused" in page and f"directory</span> {path}" in page
        for text in (sources, page):
            assert wrong not in text
    finally:
        server.stop()
    assert wrong not in server.log_path.read_text()
