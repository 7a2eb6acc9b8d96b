"""--auth oidc against a real OpenID Connect provider (oidc-provider on Node) and a real browser and server."""

import hashlib
import json
import os
import time
from urllib.parse import unquote, urljoin, urlsplit

import pytest
import requests
from flask.sessions import SecureCookieSessionInterface
from hypothesis import given, settings
from hypothesis import strategies as st
from itsdangerous import URLSafeTimedSerializer
from selenium.webdriver.common.by import By

from dash_app.auth.cookie import SESSION_KEY
from dash_app.auth.oidc import safe_next
from dash_app.auth.viewer import PSEUDONYM, Names
from dash_app.testing import ServerProcess, free_port
from dash_app.testing.oidc import LOGIN_FIELD, LOGOUT_SELECTOR, PASSWORD_FIELD, SUBMIT_SELECTOR, OidcProvider
from dash_app.testing.receivers import WebhookReceiver
from dash_app.testing.sse_client import SseClient
from tests.browser_helpers import GH, table_users
from tests.test_server_polling import wait_for

SECRET = "client-secret-for-tests-only"
REAL_USER, REAL_HOST = "alice.realname", "ws-secret-host"
ACCOUNTS = {
    "alice": {"preferred_username": "alice", "name": "Alice Analyst", "roles": ["analyst"]},
    "ada": {"preferred_username": "ada", "name": "Ada Admin", "roles": ["lic-admins"]},
    "vic": {"preferred_username": "vic", "name": "Vic Viewer"},  # no role: a viewer
}


class Site:
    """A provider and a dashboard server registered with each other."""

    def __init__(self, tmp_path, **env):
        port = free_port()
        app = f"http://127.0.0.1:{port}"
        client = {
            "client_id": "dash",
            "client_secret": SECRET,
            "redirect_uris": [app + "/auth/callback"],
            "post_logout_redirect_uris": [app + "/auth/signed-out"],
        }
        self.provider = OidcProvider(tmp_path, [client], ACCOUNTS)
        settings = {
            "DASH_APP_AUTH": "oidc",
            "DASH_APP_OIDC_ISSUER": self.provider.issuer,
            "DASH_APP_OIDC_CLIENT_ID": "dash",
            "DASH_APP_OIDC_CLIENT_SECRET": SECRET,
            "DASH_APP_OIDC_SCOPES": "openid profile roles",
            "DASH_APP_ROLE_MAP": "lic-admins=admin",
            "DASH_APP_PUBLIC_URL": app,
        }
        settings.update(env)
        try:
            self.server = ServerProcess(settings, tmp_path, port=port)
        except Exception:
            self.provider.stop()
            raise
        self.url = app

    def stop(self):
        self.server.stop()
        self.provider.stop()


@pytest.fixture
def site(tmp_path):
    sites = []

    def start(**env):
        sites.append(Site(tmp_path, **env))
        return sites[-1]

    yield start
    for s in sites:
        s.stop()


@pytest.fixture(scope="module")
def shared_site(tmp_path_factory):
    """One provider and server with the default settings for the tests that change neither (each test's browser is new)."""
    s = Site(tmp_path_factory.mktemp("site"))
    yield s
    s.stop()


def sign_in(driver, login):
    """On the provider's login page: type the account id, any password, and submit."""
    field = wait_for(lambda: driver.find_elements(By.NAME, LOGIN_FIELD), "the provider's login form")[0]
    field.send_keys(login)
    driver.find_element(By.NAME, PASSWORD_FIELD).send_keys("any password")
    driver.find_element(By.CSS_SELECTOR, SUBMIT_SELECTOR).click()


def bar_text(driver):
    found = driver.find_elements(By.ID, "auth-user")
    return found[0].text if found else ""


def cookie_header(driver):
    """The browser's cookies for the dashboard, as one Cookie header."""
    return "; ".join(f"{c['name']}={c['value']}" for c in driver.get_cookies())


def session_of(driver):
    """A requests session carrying the browser's cookies for the dashboard."""
    http = requests.Session()
    for cookie in driver.get_cookies():
        http.cookies.set(cookie["name"], cookie["value"])
    return http


def test_sign_in_shows_who_and_their_role_and_sign_out_ends_the_session(shared_site, dash_duo):
    s = shared_site
    driver = dash_duo.driver
    driver.get(s.url + "/")
    assert driver.current_url.startswith(s.provider.issuer)  # sent to the provider to sign in
    sign_in(driver, "alice")
    wait_for(lambda: bar_text(driver) == "Signed in as alice · analyst", "the sign-in bar")
    assert driver.current_url.rstrip("/") == s.url
    dash_duo.wait_for_element("#tool-table", timeout=20)  # the page itself loaded, its callbacks answered
    http = session_of(driver)
    assert http.get(s.url + "/auth/me", timeout=5).json()["role"] == "analyst"
    assert http.get(s.url + "/borrows", timeout=5).status_code == 200
    # The sign-out form carries the session's CSRF token; without it, nothing happens.
    assert http.post(s.url + "/auth/logout", data={"csrf": "forged"}, timeout=5).status_code == 403
    assert http.get(s.url + "/borrows", timeout=5).status_code == 200

    driver.find_element(By.ID, "auth-sign-out").click()
    wait_for(lambda: driver.find_elements(By.CSS_SELECTOR, LOGOUT_SELECTOR), "the provider's sign-out page")[0].click()
    wait_for(lambda: driver.current_url.startswith(s.url + "/auth/signed-out"), "the signed-out page")
    assert driver.find_element(By.ID, "auth-message").text == "You are signed out."
    assert session_of(driver).get(s.url + "/borrows", timeout=5).status_code == 401
    driver.get(s.url + "/")
    wait_for(lambda: driver.find_elements(By.NAME, LOGIN_FIELD), "the login form again (signed out at the provider too)")


@pytest.mark.parametrize(("login", "role"), [("ada", "admin"), ("vic", "viewer")])
def test_roles_come_from_the_id_token_and_the_role_map(shared_site, dash_duo, login, role):
    s = shared_site
    # Straight to /auth/me, what the page's sign-in bar shows (auth.js; the bar itself is the first test's): no page
    # to draw.
    dash_duo.driver.get(s.url + "/auth/login?next=/auth/me")
    sign_in(dash_duo.driver, login)
    wait_for(lambda: dash_duo.driver.current_url == s.url + "/auth/me", "the signed-in landing")
    me = session_of(dash_duo.driver).get(s.url + "/auth/me", timeout=5).json()
    assert (me["user"], me["role"], me["names"]) == (login, role, "real" if role != "viewer" else "hidden")


def session_end(http):
    """The end of the signed-in session, as the server wrote it into its cookie (signed, but readable without the key)."""
    cookies = SecureCookieSessionInterface()
    reader = URLSafeTimedSerializer("any key", salt=cookies.salt, serializer=cookies.serializer)
    _, data = reader.loads_unsafe(http.cookies["license_dashboard_session"])
    return float(data[SESSION_KEY]["exp"])


def test_an_expired_session_needs_a_new_sign_in(site, dash_duo):
    # 7.2 s: the sign-in lands on /auth/me, which answers at once (no page to draw), and the session is read from there.
    s = site(DASH_APP_SESSION_HOURS="0.002")
    dash_duo.driver.get(s.url + "/auth/login?next=/auth/me")
    sign_in(dash_duo.driver, "alice")
    wait_for(lambda: dash_duo.driver.current_url == s.url + "/auth/me", "the signed-in landing")
    http = session_of(dash_duo.driver)
    dash_duo.driver.get("about:blank")  # the rest is HTTP: nothing in the browser renews the session while it runs out
    # The cookie's Expires is in whole seconds (an HTTP date), so a client drops it up to a second before the end the
    # server wrote inside it: that second is the client's, not a session cut short.
    end = int(session_end(http))
    response = http.get(s.url + "/auth/me", timeout=5)
    # The server's clock is this machine's: a refusal before the session's end would be a session cut short.
    assert (response.status_code == 200 and response.json()["user"] == "alice") or time.time() >= end, response.text
    assert http.get(s.url + "/borrows", timeout=5).status_code == 200 or time.time() >= end
    wait_for(lambda: http.get(s.url + "/borrows", timeout=5).status_code == 401, "the session's end", timeout=30)
    assert time.time() >= end


# Return targets a browser would follow to another site (EVIL), had they been kept: a tab, a vertical tab, a form feed
# or a newline between the slashes (browsers drop some), a backslash, percent-encoded slashes the server decodes.
OFF_SITE = [
    "//EVIL/steal",
    "/%09/EVIL/x",
    "/%0B/EVIL/x",
    "/%0C/EVIL/x",
    "/%0A/EVIL/x",
    "%09//EVIL/x",
    "/%5CEVIL/x",
    "/%2F/EVIL/x",
    "/%252F%252FEVIL/x",
    "/%E3%80%80/EVIL/x",
    "http://EVIL/x",
    "http:/EVIL/x",
]


def at_sign_in(url, s):
    return url.startswith(s.provider.issuer) or url.startswith((s.url + "/auth/login", s.url + "/auth/callback"))


def test_after_sign_in_only_a_path_on_this_site_is_followed(shared_site, dash_duo):
    s = shared_site
    driver = dash_duo.driver
    driver.get(s.url + "/auth/login?next=/%3Ftool%3DMATLAB")
    sign_in(driver, "alice")
    # MATLAB is no tool of this server: the page puts its own view in the address bar once drawn, so the address is
    # read as the sign-in left it.
    landed = wait_for(lambda: "tool=MATLAB" in (url := driver.current_url) and url, "the page asked for")
    assert landed.startswith(s.url + "/?tool=MATLAB")
    # Where each sign-in lands is all the rest asks: the page's scripts need not run twelve more times.
    driver.execute_cdp_cmd("Network.enable", {})
    driver.execute_cdp_cmd("Network.setBlockedURLs", {"urls": [s.url + "/_dash-*", s.url + "/assets/*"]})
    with WebhookReceiver() as other:  # another site, really there: a browser sent to it would stay on it
        evil = urlsplit(other.url()).netloc
        for target in OFF_SITE:
            # Signed in at the provider already: the sign-in comes straight back, to wherever the return target says.
            driver.get(s.url + "/auth/login?next=" + target.replace("EVIL", evil))
            wait_for(lambda: not at_sign_in(driver.current_url, s), f"the end of the sign-in from next={target}")
            assert driver.current_url.rstrip("/") == s.url, target


def browser_resolves(target, page="https://dash.example:8443/history?x=1"):
    """Where a browser goes from `page` for a Location of `target` (WHATWG URL parsing, special scheme)."""
    # It strips leading and trailing C0 controls and spaces, removes tabs and newlines anywhere, reads \\ as /.
    cleaned = target.strip("".join(map(chr, range(0x21)))).replace("\t", "").replace("\n", "").replace("\r", "")
    return urlsplit(urljoin(page, cleaned.replace("\\", "/")))


PIECES = ["/", "\\", "\t", "\n", "\r", "\x0b", "\x0c", "\x00", " ", "\u3000", "\u00a0", "\u2028", "\ufeff"]
PIECES += ["%2F", "%2f", "%5C", "%09", "%0A", "%25", "evil.example", ":", "https:", "//", "@", "?", "#", ".", "x", "é"]


@settings(max_examples=2000, deadline=None)
@given(st.one_of(st.text(), st.lists(st.sampled_from(PIECES), max_size=12).map("".join)))
def test_a_return_target_kept_stays_on_this_site_in_a_browser_and_after_the_server_decodes_it(target):
    kept = safe_next(target)
    assert kept.startswith("/")
    for form in (kept, unquote(kept)):  # the server decodes the path it is sent: that must stay here too
        where = browser_resolves(form)
        assert (where.scheme, where.netloc) == ("https", "dash.example:8443"), (target, kept)


@given(st.from_regex(r"/[A-Za-z0-9._~!$&'()*+,;=:@-][A-Za-z0-9._~!$&'()*+,;=:@/-]*(\?[A-Za-z0-9=&%._-]*)?", fullmatch=True))
def test_a_plain_path_on_this_site_is_kept_as_it_is(target):
    assert safe_next(target) == target


PSEUDONYM_KEY = "pseudonym-key-for-tests-0123456789"


@pytest.fixture(scope="module")
def privacy_site(tmp_path_factory):
    """One site in privacy mode with one borrow by REAL_USER on REAL_HOST, for the readers that only read it."""
    s = Site(tmp_path_factory.mktemp("privacy"), DASH_APP_PSEUDONYMIZE_USERS="1", DASH_APP_PSEUDONYM_KEY=PSEUDONYM_KEY)
    try:
        borrowed = requests.post(
            s.url + "/licenses/borrow",
            json={"tool": GH, "user": REAL_USER, "host": REAL_HOST},
            headers=s.server.headers(),
            timeout=5,
        )
        assert borrowed.status_code == 200, borrowed.text
        yield s
    finally:
        s.stop()


@pytest.mark.parametrize(("login", "sees_real_names"), [("vic", False), ("alice", True)])
def test_privacy_mode_names_people_only_to_analysts_signed_in_through_the_provider(
    privacy_site, dash_duo, login, sees_real_names
):
    s = privacy_site
    # What the server shows readers below analyst: the same keyed digest, from the same key (auth.Readers).
    pseudonym = Names(PSEUDONYM, hashlib.sha256(PSEUDONYM_KEY.encode()).digest()).user(REAL_USER)
    expected = REAL_USER if sees_real_names else pseudonym

    dash_duo.driver.get(s.url + "/")
    sign_in(dash_duo.driver, login)
    wait_for(lambda: table_users(dash_duo) == [expected], f"{expected} in the events table")
    http = session_of(dash_duo.driver)
    reads = {
        "page": dash_duo.driver.page_source,
        "borrows": http.get(s.url + "/borrows", timeout=5).text,
        "export": http.get(s.url + "/realtime/export?kind=events&format=csv&window=600", timeout=5).text,
        "status": http.get(s.url + "/licenses/status", timeout=5).text,
    }
    with SseClient(s.url + "/realtime/stream", headers={"Cookie": cookie_header(dash_duo.driver)}) as stream:
        reads["stream"] = json.dumps(stream.next_message()["data"])
    for name in ("page", "borrows", "export", "stream"):  # the reads that name people ("status" counts only)
        assert expected in reads[name], name
    for name, text in reads.items():
        assert sees_real_names or (REAL_USER not in text and REAL_HOST not in text), name
    assert (REAL_HOST in reads["borrows"]) == sees_real_names


def test_an_unreachable_issuer_ends_the_start_with_one_line(monkeypatch, tmp_path):
    from dash_app.testing.commands import run_refused

    for name in [k for k in os.environ if k.startswith("DASH_APP_")]:
        monkeypatch.delenv(name)
    monkeypatch.setenv("DASH_APP_OIDC_CLIENT_ID", "dash")
    monkeypatch.setenv("DASH_APP_OIDC_CLIENT_SECRET", "s")
    # A database of its own: one left in the working folder by an older version would log its upgrade first.
    db = str(tmp_path / "test.db")
    result = run_refused(["--auth", "oidc", "--oidc-issuer", f"http://127.0.0.1:{free_port()}", "--db", db])
    assert result.returncode == 2
    [line] = result.stderr.strip().splitlines()
    assert line.startswith("python -m dash_app: error: --oidc-issuer:") and "does not answer" in line
