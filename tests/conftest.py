"""Shared fixtures: apps built per test, and real server processes on free loopback ports."""

import itertools

import pytest
from dash.testing.application_runners import ThreadedRunner
from dash.testing.composite import DashComposite
from selenium.common.exceptions import WebDriverException

from dash_app.testing import TEST_TOKEN, PostgresServer, ServerProcess
from dash_app.testing.servers import free_port, stop_all

# The modules that take longest, longest first (estimated from full runs' durations; refresh from a --durations=0 run).
# xdist hands whole modules to its workers in collection order (scripts/test: --dist loadfile --no-loadscope-reorder):
# the long ones start first and the short ones fill in at the end, instead of a long module left to run alone last.
LONGEST_FIRST = (
    "test_scale_out.py",
    "test_auth_oidc.py",
    "test_persistence.py",
    "test_estate_browser.py",
    "test_alerts.py",
    "test_capacity_browser.py",
    "test_slow_clients.py",
    "test_dashboard_browser.py",
    "test_privacy_page.py",
    "test_history_browser.py",
    "test_history_mirror.py",
    "test_history_in_use.py",
    "test_database_server.py",
    "test_migrations.py",
    "test_api.py",
    "test_status_parsers.py",
)


def pytest_collection_modifyitems(items):
    """Put the longest modules first, in LONGEST_FIRST's order; the others follow as collected (a stable sort)."""
    rank = {name: n for n, name in enumerate(LONGEST_FIRST)}
    items.sort(key=lambda item: rank.get(item.path.name, len(rank)))


@pytest.fixture(autouse=True)
def _dash_duo_on_a_free_port(monkeypatch):
    """Start dash_duo's app on a free port.

    Dash numbers its ports from 58050 in every process, so two pytest processes (xdist workers, or two checkouts
    tested at once) would start apps on the same port, and a browser could read the other process's app.
    """
    start = ThreadedRunner.start

    def start_on_free_port(self, app, start_timeout=3, **kwargs):
        kwargs.setdefault("port", free_port())
        return start(self, app, start_timeout, **kwargs)

    monkeypatch.setattr(ThreadedRunner, "start", start_on_free_port)


@pytest.fixture
def start_server(tmp_path):
    """Start real servers with the Procfile's line; all are stopped after the test."""
    servers = []

    def start(**env):
        server = ServerProcess({k: str(v) for k, v in env.items()}, tmp_path)
        servers.append(server)
        return server

    yield start
    stop_all(servers)


@pytest.fixture
def make_app(tmp_path):
    """Build apps with create_app(config); their background threads are stopped after the test."""
    from dash_app import create_app
    from dash_app.state import get_state

    apps = []

    def make(**overrides):
        # A server database's analysis copy goes to the test's folder, never the user's ~/.cache.
        config = {"demo": False, "db": ":memory:", "api_token": TEST_TOKEN, "analysis_dir": str(tmp_path / "analysis")}
        config.update(overrides)
        app = create_app(config)
        apps.append(app)
        return app

    yield make
    for app in apps:
        get_state(app).stop()


@pytest.fixture(scope="session")
def postgres():
    """A real PostgreSQL server for the whole session; a test that writes makes its own database with create_database."""
    with PostgresServer() as server:
        yield server


_database_numbers = itertools.count(1)


@pytest.fixture(params=["sqlite", "postgresql"])
def databases(request, tmp_path_factory):
    """Make new, empty databases of one kind, as --db takes them: SQLite files, or databases on the session's server."""
    if request.param == "sqlite":
        return lambda: str(tmp_path_factory.mktemp("db") / "test.db")
    server = request.getfixturevalue("postgres")
    return lambda: server.create_database(f"test_{next(_database_numbers)}")


@pytest.fixture(scope="session")
def postgres_template_at_head(postgres):
    """The name of a database on the session's server that Store() has brought to the newest revision, and left."""
    from dash_app.store import Store

    Store(postgres.create_database("at_head")).close()
    return "at_head"


@pytest.fixture(params=["sqlite", "postgresql"])
def databases_at_head(request, tmp_path_factory):
    """Make new databases of one kind with the newest schema and no rows: what Store() makes of an empty one, at once.

    For tests that make many (a property's examples) and whose subject is not the upgrade: a SQLite file is upgraded
    by Store() as it opens (quickly), a PostgreSQL database is a copy of one upgraded before (CREATE DATABASE ...
    TEMPLATE), which spares each example the revisions' round trips to the server.
    """
    if request.param == "sqlite":
        return lambda: str(tmp_path_factory.mktemp("db") / "test.db")
    server = request.getfixturevalue("postgres")
    template = request.getfixturevalue("postgres_template_at_head")
    return lambda: server.create_database(f"test_{next(_database_numbers)}", template=template)


@pytest.fixture
def database(databases):
    """A new, empty database for --db, of each kind in turn (the test runs once per kind)."""
    return databases()


class _Chromium:
    """The one Chromium of this test process, shared by its browser tests: starting one costs a core-second or more."""

    driver = None
    size: dict[str, int] = {}


class OneChromiumComposite(DashComposite):
    """dash_duo on the test process's one Chromium: each test gets a new tab, with no cookies, cache or overrides.

    A tab is a clean page for everything a test sets: emulation (time zone, device metrics) belongs to the tab, the
    window size is set back, and cookies (which ignore the port, so two servers' would meet) and the cache are cleared.
    """

    def get_webdriver(self):
        driver = _Chromium.driver
        if driver is None:
            driver = _Chromium.driver = super().get_webdriver()
            _Chromium.size = driver.get_window_size()
        driver.execute_cdp_cmd("Network.clearBrowserCookies", {})
        driver.execute_cdp_cmd("Network.clearBrowserCache", {})
        driver.execute_cdp_cmd("Browser.setDownloadBehavior", {"behavior": "allow", "downloadPath": self.download_path})
        driver.set_window_size(_Chromium.size["width"], _Chromium.size["height"])
        driver.get_log("browser")  # what earlier tests' pages logged is not this test's
        return driver

    def __exit__(self, exc_type, exc_val, traceback):
        driver = self.driver
        try:
            # A new tab, and the test's one closed: its page stops calling a server that is about to stop.
            used = driver.current_window_handle
            driver.switch_to.new_window("tab")
            fresh = driver.current_window_handle
            driver.switch_to.window(used)
            driver.close()
            driver.switch_to.window(fresh)
        except WebDriverException:
            _Chromium.driver = None  # a browser that cannot open a tab is not kept for the next test
            driver.quit()


@pytest.fixture(scope="session")
def _one_chromium():
    """Quit the test process's Chromium at the end of the session."""
    yield
    if _Chromium.driver is not None:
        _Chromium.driver.quit()
        _Chromium.driver = None


@pytest.fixture
def dash_duo(request, dash_thread_server, tmpdir, _one_chromium):
    """dash.testing's dash_duo, on the test process's one Chromium (see OneChromiumComposite)."""
    with OneChromiumComposite(
        server=dash_thread_server,
        browser=request.config.getoption("webdriver"),
        remote=request.config.getoption("remote"),
        remote_url=request.config.getoption("remote_url"),
        headless=request.config.getoption("headless"),
        options=request.config.hook.pytest_setup_options(),
        download_path=tmpdir.mkdir("download").strpath,
        percy_assets_root=request.config.getoption("percy_assets"),
        percy_finalize=request.config.getoption("nopercyfinalize"),
        pause=request.config.getoption("pause"),
    ) as dc:
        yield dc


def pytest_setup_options():
    """Chromium for dash_duo without the services a test never uses: each would spend CPU the suite needs."""
    from selenium.webdriver.chrome.options import Options

    options = Options()
    for flag in (
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-default-apps",
        "--disable-extensions",
        "--disable-sync",
        "--no-first-run",
        "--mute-audio",
        "--disable-features=Translate,OptimizationHints,MediaRouter,InterestFeedContentSuggestions,AutofillServerCommunication",
    ):
        options.add_argument(flag)
    return options
