"""Shared fixtures: apps built per test, and real server processes on free loopback ports."""

import pytest

from dash_app.testing import TEST_TOKEN, PostgresServer, ServerProcess


@pytest.fixture
def start_server(tmp_path):
    """Start real servers with the Procfile's line; all are stopped after the test."""
    servers = []

    def start(**env):
        server = ServerProcess({k: str(v) for k, v in env.items()}, tmp_path)
        servers.append(server)
        return server

    yield start
    for server in servers:
        server.stop()


@pytest.fixture
def make_app():
    """Build apps with create_app(config); their background threads are stopped after the test."""
    from dash_app import create_app
    from dash_app.state import get_state

    apps = []

    def make(**overrides):
        config = {"demo": False, "db": ":memory:", "api_token": TEST_TOKEN}
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
