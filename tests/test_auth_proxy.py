"""--auth proxy and the guard: every read needs an identity, roles come from groups, the write API keeps its token."""

import os
import re
import socket

import pytest
import requests

from dash_app.__main__ import main
from dash_app.testing import TEST_TOKEN
from dash_app.testing.slow_clients import start_module_server

AUTH = {"Authorization": f"Bearer {TEST_TOKEN}"}
TOOL = "GreenHills Multi IDE"
# Open with auth on: files with no data, the health check, the way in.
OPEN = {"/healthz", "/_favicon.ico", "/favicon.ico", "/auth/login", "/auth/callback", "/auth/logout", "/auth/signed-out"}
OPEN_PREFIXES = ("/_dash-component-suites/", "/assets/", "/static/")


def proxy_app(make_app, **config):
    settings = {"auth": "proxy", "trusted_proxies": ("127.0.0.1/32",), "proxy_groups_header": "X-Forwarded-Groups"}
    settings.update(config)
    return make_app(**settings)


def read_routes(server):
    """Every GET route the app serves, with a sample value in each of its variable parts."""
    for rule in server.url_map.iter_rules():
        if "GET" not in rule.methods:
            continue
        path = re.sub(r"<(?:[^:>]+:)?([^>]+)>", lambda m: "x", rule.rule)
        if path in OPEN or path.startswith(OPEN_PREFIXES):
            continue
        yield path


def test_every_read_route_answers_401_without_an_identity(make_app):
    app = proxy_app(make_app)
    client = app.server.test_client()
    paths = sorted(set(read_routes(app.server)))
    # The app's own routes, Dash's and the page: none may be missed by the guard.
    assert {"/", "/borrows", "/realtime/stream", "/metrics", "/_dash-layout", "/_dash-dependencies", "/auth/me"} <= set(paths)
    for path in paths:
        response = client.get(path)
        assert response.status_code == 401, path
        assert response.get_json()["error"] == "unauthorized", path
    callback = client.post("/_dash-update-component", json={"output": "x", "outputs": {}, "inputs": [], "changedPropIds": []})
    assert callback.status_code == 401


def test_the_user_header_counts_only_from_a_trusted_proxy(make_app):
    app = proxy_app(make_app)
    client = app.server.test_client()
    who = {"X-Forwarded-User": "ann", "X-Forwarded-Groups": "analyst"}
    assert client.get("/borrows", headers=who).status_code == 200
    assert client.get("/auth/me", headers=who).get_json() == {
        "auth": "proxy",
        "user": "ann",
        "role": "analyst",
        "names": "real",
        "csrf": None,
    }
    # The same header from anywhere else is anybody's word.
    assert client.get("/borrows", headers=who, environ_base={"REMOTE_ADDR": "10.1.2.3"}).status_code == 401
    assert client.get("/borrows", headers={"X-Forwarded-Groups": "admin"}).status_code == 401  # no user named


@pytest.mark.parametrize(
    ("groups", "role_map", "role", "names"),
    [
        ("", (), "viewer", "hidden"),  # no mapped role: viewer
        ("staff, engineering", (), "viewer", "hidden"),
        ("viewer", (), "viewer", "hidden"),
        ("analyst", (), "analyst", "real"),
        ("viewer,admin", (), "admin", "real"),  # the highest wins
        ("lic-admins", (("lic-admins", "admin"),), "admin", "real"),
        ("cost-team other", (("cost-team", "analyst"),), "analyst", "real"),
    ],
)
def test_roles_come_from_groups_mapped_by_name_or_by_the_role_map(make_app, groups, role_map, role, names):
    app = proxy_app(make_app, role_map=role_map)
    me = app.server.test_client().get("/auth/me", headers={"X-Forwarded-User": "u", "X-Forwarded-Groups": groups}).get_json()
    assert (me["role"], me["names"]) == (role, names)


def test_pseudonyms_for_viewers_with_privacy_mode(make_app):
    app = proxy_app(make_app, pseudonymize_users=True, pseudonym_key="k" * 32)
    me = app.server.test_client().get("/auth/me", headers={"X-Forwarded-User": "u"}).get_json()
    assert (me["role"], me["names"]) == ("viewer", "pseudonym")


def test_machine_writes_keep_the_bearer_token_and_metrics_may_take_their_own(make_app):
    app = proxy_app(make_app, metrics_token="m" * 24)
    client = app.server.test_client()
    borrowed = client.post("/licenses/borrow", json={"tool": TOOL, "user": "alice"}, headers=AUTH)
    assert borrowed.status_code == 200
    assert client.post("/licenses/borrow", json={"tool": TOOL, "user": "alice"}).status_code == 401  # still no token
    assert client.get("/metrics", headers={"Authorization": "Bearer " + "m" * 24}).status_code == 200
    assert client.get("/metrics", headers={"Authorization": "Bearer " + "x" * 24}).status_code == 401
    assert client.get("/metrics", headers=AUTH).status_code == 401  # the write token is not the metrics token


def test_a_post_from_another_site_with_an_identity_is_refused(make_app):
    app = proxy_app(make_app)
    client = app.server.test_client()
    body = {"output": "x", "outputs": {}, "inputs": [], "changedPropIds": []}
    who = {"X-Forwarded-User": "ann", "Origin": "https://evil.example"}
    assert client.post("/_dash-update-component", json=body, headers=who).status_code == 403


def test_a_real_server_behind_a_proxy(start_server):
    server = start_server(DASH_APP_AUTH="proxy", DASH_APP_TRUSTED_PROXIES="127.0.0.1/32")
    assert requests.get(server.url + "/borrows", timeout=5).status_code == 401
    assert requests.get(server.url + "/", timeout=5).status_code == 401
    page = requests.get(server.url + "/", headers={"X-Forwarded-User": "ann"}, timeout=5)
    assert page.status_code == 200 and "License usage" in page.text
    assert requests.get(server.url + "/healthz", timeout=5).json() == {"status": "ok"}
    other = start_server(DASH_APP_AUTH="proxy", DASH_APP_TRUSTED_PROXIES="10.0.0.0/8")
    assert requests.get(other.url + "/borrows", headers={"X-Forwarded-User": "ann"}, timeout=5).status_code == 401


@pytest.mark.parametrize("kind", ["procfile", "module"])
def test_a_user_header_spelled_with_underscores_names_no_one(start_server, tmp_path, kind):
    # X_Forwarded_User and X-Forwarded-User are the same WSGI variable: the server drops the spelling with _,
    # so a client that a proxy passes it through from cannot name itself with it.
    env = {"DASH_APP_AUTH": "proxy", "DASH_APP_TRUSTED_PROXIES": "127.0.0.1/32"}
    server = start_server(**env) if kind == "procfile" else start_module_server(tmp_path, **env)
    try:
        for name, status in [("X_Forwarded_User", 401), ("x_forwarded_user", 401), ("X-Forwarded-User", 200)]:
            with socket.create_connection(("127.0.0.1", server.port), timeout=10) as sock:
                sock.sendall(f"GET /auth/me HTTP/1.1\r\nHost: x\r\nConnection: close\r\n{name}: admin\r\n\r\n".encode())
                head = b""
                while chunk := sock.recv(65536):
                    head += chunk
            assert head.startswith(f"HTTP/1.1 {status} ".encode()), (name, head[:200])
    finally:
        if kind == "module":
            server.stop()


@pytest.mark.parametrize(
    ("args", "line"),
    [
        (["--auth", "proxy"], "--trusted-proxy: required with --auth proxy"),
        (["--auth", "oidc"], "--oidc-issuer: required with --auth oidc"),
        (["--auth", "ldap"], "--auth: expected one of none, oidc, proxy"),
        (["--pseudonymize-users"], "DASH_APP_PSEUDONYM_KEY: --pseudonymize-users needs a secret key"),
        (["--trusted-proxy", "10.0.0.0/33"], "--trusted-proxy:"),
        (["--role-map", "lic=owner"], "--role-map: expected GROUP=viewer|analyst|admin"),
        (["--proxy-user-header", "X_Remote_User"], "--proxy-user-header: expected a header name of letters, digits and -"),
        (["--proxy-groups-header", "X-Groups;"], "--proxy-groups-header: expected a header name"),
    ],
)
def test_auth_settings_that_cannot_work_end_with_one_line(args, line, monkeypatch, capsys):
    for name in [k for k in os.environ if k.startswith("DASH_APP_")]:
        monkeypatch.delenv(name)
    assert main(args) == 2  # in this process: the subject is the command line (test_app runs the real one)
    [message] = capsys.readouterr().err.strip().splitlines()
    assert line in message
