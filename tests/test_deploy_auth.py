"""--auth proxy in the production setup (deploy/run): only a sign-in step nginx asks (auth_request) names the user."""

import json
import os
import signal
import socket
import subprocess
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from dash_app.testing import ROOT, free_port
from dash_app.testing.slow_clients import clean_env, start_production

RUN = str(ROOT / "deploy" / "run")
TOOL = "GreenHills Multi IDE"
# A client elsewhere: nginx sees this address, the app sees nginx's 127.0.0.1 (its trusted proxy).
CLIENT = "127.0.0.2"
# Sign-in cookies the sign-in service knows: ann, an analyst; guest, let through but named as nobody.
ANN, GUEST = "signin=ann", "signin=guest"
SIGN_IN_PAGE = "https://auth.example/oauth2/start"


class SignInService:
    """A sign-in service's check endpoint (as oauth2-proxy's /oauth2/auth): 2xx naming the user, or 401."""

    def __init__(self):
        class Handler(BaseHTTPRequestHandler):
            def do_GET(self):
                cookie = self.headers.get("Cookie", "")
                self.send_response(200 if ANN in cookie or GUEST in cookie else 401)
                if ANN in cookie:
                    self.send_header("X-Auth-Request-User", "ann")
                    self.send_header("X-Auth-Request-Groups", "analyst")
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, format, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", free_port()), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_port}/oauth2/auth"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def stop(self):
        self.server.shutdown()
        self.server.server_close()


def request(port, path, headers=(), method="GET", body=b"", source=CLIENT):
    """Send one request from `source` with `headers` (name, value) exactly as spelled; return (status, body, head)."""
    lines = [f"{method} {path} HTTP/1.1", f"Host: 127.0.0.1:{port}", "Connection: close", f"Content-Length: {len(body)}"]
    lines += [f"{name}: {value}" for name, value in headers]
    with socket.create_connection(("127.0.0.1", port), timeout=10, source_address=(source, 0)) as sock:
        sock.sendall("\r\n".join(lines).encode() + b"\r\n\r\n" + body)
        data = b""
        while chunk := sock.recv(65536):
            data += chunk
    head, _, payload = data.partition(b"\r\n\r\n")
    return int(head.split()[1]), payload, head.decode("latin-1")


def spellings(name):
    """The ways a client may spell header `name`: as is, lower and upper case, and with _ for -."""
    return [name, name.lower(), name.upper(), name.replace("-", "_"), name.lower().replace("-", "_")]


# The app's header names as deploy/run is given them: the defaults, and names of the operator's choosing.
HEADERS = [
    ("X-Forwarded-User", "X-Forwarded-Groups", []),
    ("X-Remote-User", "X-Remote-Groups", ["--proxy-user-header", "X-Remote-User", "--proxy-groups-header", "X-Remote-Groups"]),
]


@pytest.fixture(scope="module", params=HEADERS, ids=["default-headers", "own-headers"])
def production(request, tmp_path_factory):
    user_header, groups_header, flags = request.param
    service = SignInService()
    try:
        args = ["--auth", "proxy", "--trusted-proxy", "127.0.0.1/32", "--auth-request", service.url, *flags]
        args += ["--auth-signin", SIGN_IN_PAGE]
        env = {} if flags else {"DASH_APP_PROXY_GROUPS_HEADER": groups_header}
        server = start_production(tmp_path_factory.mktemp("production"), *args, **env)
    except BaseException:
        service.stop()
        raise
    yield server, user_header, groups_header
    try:
        assert server.stop() == 0
    finally:
        service.stop()


def me(port, *headers):
    status, body, _ = request(port, "/auth/me", headers)
    return status, json.loads(body) if status == 200 else None


def test_identity_headers_a_client_sends_are_never_believed(production):
    server, user_header, groups_header = production
    forged = [
        (name, "admin") for name in [*spellings(user_header), *spellings(groups_header), "X-Forwarded-User", "X-Forwarded-Groups"]
    ]
    # Not signed in: the sign-in service says no, whatever the client claims, and nginx sends the person to sign in.
    status, _, head = request(server.port, "/auth/me?x=1", forged)
    assert status == 302 and f"\r\nLocation: {SIGN_IN_PAGE}?rd=http://127.0.0.1:{server.port}/auth/me?x=1\r\n" in head + "\r\n"
    # Let through by the sign-in service but named as nobody: the client's own word does not name anyone.
    for header in forged:
        assert me(server.port, ("Cookie", GUEST), header)[0] == 401, header
        assert request(server.port, "/borrows", [("Cookie", GUEST), header])[0] == 401, header
    assert me(server.port, ("Cookie", GUEST), *forged)[0] == 401
    # Signed in as ann, an analyst: forged headers change neither who nor the role.
    signed_in = {"auth": "proxy", "user": "ann", "role": "analyst", "names": "real", "csrf": None}
    assert me(server.port, ("Cookie", ANN)) == (200, signed_in)
    assert me(server.port, ("Cookie", ANN), *forged) == (200, signed_in)


def test_the_write_api_and_the_health_check_need_no_sign_in(production):
    server = production[0]
    assert request(server.port, "/healthz")[0] == 200
    body = json.dumps({"tool": TOOL, "user": "alice"}).encode()
    headers = [("Content-Type", "application/json"), *server.headers().items()]
    assert request(server.port, "/licenses/borrow", headers, method="POST", body=body)[0] == 200
    assert request(server.port, "/licenses/borrow", headers[:1], method="POST", body=body)[0] == 401  # the token counts
    assert request(server.port, "/borrows", [("Cookie", ANN)])[0] == 200
    # Past the sign-in step (or let through by it as nobody), a forged header names no one either.
    for path in ("/metrics", "/licenses/borrow", "/healthz/"):
        forged = [("Cookie", GUEST), (production[1], "admin"), ("X-Forwarded-User", "admin")]
        assert request(server.port, path, forged)[0] == 401, path


def test_a_flag_over_the_environment_decides_what_nginx_enforces(tmp_path):
    # DASH_APP_AUTH=proxy in the environment, --auth none given: the flag wins, so no sign-in step is needed.
    server = start_production(tmp_path, "--auth", "none", DASH_APP_AUTH="proxy")
    try:
        status, body, _ = request(server.port, "/auth/me", [("X-Forwarded-User", "admin")])
        assert status == 200 and json.loads(body)["auth"] == "none" and json.loads(body)["user"] is None
    finally:
        assert server.stop() == 0


@pytest.mark.parametrize(
    ("args", "env", "line"),
    [
        (["--auth", "proxy", "--trusted-proxy", "127.0.0.1/32"], {}, "--auth proxy: needs --auth-request"),
        (["--trusted-proxy", "127.0.0.1/32"], {"DASH_APP_AUTH": "proxy"}, "--auth proxy: needs --auth-request"),
        ([], {"DASH_APP_AUTH": "proxy", "DASH_APP_TRUSTED_PROXIES": "127.0.0.1/32"}, "--auth proxy: needs --auth-request"),
        (["--auth-request", "http://127.0.0.1:4180/oauth2/auth"], {}, "--auth-request: only with --auth proxy"),
        (["--auth", "proxy", "--auth-request", "http://127.0.0.1:4180/oauth2/auth"], {}, "--trusted-proxy: required"),
        (["--auth", "proxy", "--trusted-proxy", "127.0.0.1/32", "--auth-request", "http://x/a;b"], {}, "--auth-request:"),
        (["--proxy-user-header", "X_Remote_User"], {}, "--proxy-user-header:"),
        (["--auth-signin", "https://auth.example/oauth2/start"], {}, "--auth-signin: only with --auth-request"),
    ],
)
def test_settings_nginx_cannot_enforce_end_with_one_line(tmp_path, args, env, line):
    command = [RUN, "--listen", f"127.0.0.1:{free_port()}", "--upstream-port", str(free_port()), *args]
    run = subprocess.Popen(
        command, cwd=ROOT, env=clean_env(env, tmp_path), stderr=subprocess.PIPE, text=True, start_new_session=True
    )
    try:
        # Far longer than the refusal takes: a start that wrongly succeeds is still running then.
        _, stderr = run.communicate(timeout=90)
    except subprocess.TimeoutExpired:
        os.killpg(run.pid, signal.SIGTERM)  # deploy/run stops nginx and the app it started
        run.communicate()
        raise AssertionError(f"deploy/run {' '.join(args)} started") from None
    assert run.returncode == 2
    [message] = stderr.strip().splitlines()
    assert message.startswith("deploy/run: error: ") and line in message
