"""Shared fixtures: apps built per test, and real server processes on free loopback ports."""

import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import requests

ROOT = Path(__file__).resolve().parent.parent
TEST_TOKEN = "test-token-1234567890"


def free_port():
    """Return a TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def procfile_command():
    """Return the Procfile's web command line."""
    line = (ROOT / "Procfile").read_text().strip()
    assert line.startswith("web: ")
    return line[len("web: "):]


class ServerProcess:
    """A real gunicorn started with the Procfile's line, with its base URL and token."""

    def __init__(self, env_overrides, tmp_path):
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.token = TEST_TOKEN
        env = {k: v for k, v in os.environ.items() if not k.startswith("DASH_APP_")}
        env.update({
            "PORT": str(self.port),
            "DASH_APP_DB": str(tmp_path / "server.db"),
            "DASH_APP_API_TOKEN": TEST_TOKEN,
            "DASH_APP_DEMO": "0",
            "PYTHONPATH": str(ROOT),
        })
        env.update(env_overrides)
        self.log_path = tmp_path / f"server-{self.port}.log"
        self._log = open(self.log_path, "w")
        self.process = subprocess.Popen(
            ["bash", "-c", "exec " + procfile_command()], cwd=ROOT, env=env,
            stdout=self._log, stderr=subprocess.STDOUT, start_new_session=True,
        )
        self._wait_ready()

    def _wait_ready(self, timeout=30):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"server exited early:\n{self.log_path.read_text()}")
            try:
                if requests.get(self.url + "/healthz", timeout=1).status_code == 200:
                    return
            except requests.RequestException:
                time.sleep(0.1)
        raise RuntimeError(f"server did not become ready:\n{self.log_path.read_text()}")

    def headers(self):
        return {"Authorization": f"Bearer {self.token}"}

    def stop(self, sig=None):
        import signal

        if self.process.poll() is None:
            os.killpg(self.process.pid, sig or signal.SIGTERM)
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait()
        self._log.close()


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
