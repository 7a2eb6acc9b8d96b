"""Real servers for tests and benchmarks: free loopback ports and gunicorn started with the Procfile's line.

These need a source checkout (an editable install): ROOT is the checkout, which holds the Procfile and deploy/.
"""

import os
import signal
import socket
import subprocess
import time
from collections.abc import Mapping
from pathlib import Path

import requests

ROOT = Path(__file__).resolve().parents[2]
TEST_TOKEN = "test-token-1234567890"


def free_port() -> int:
    """Return a TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def group_processes(pgid: int) -> list[int]:
    """Return the ids of the running processes of process group `pgid` (zombies count as ended)."""
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            # The command name (field 2) may hold spaces and parentheses: split after its closing one.
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue
        if fields[0] != "Z" and int(fields[2]) == pgid:
            found.append(int(stat.parent.name))
    return found


def procfile_command() -> str:
    """Return the Procfile's web command line."""
    line = (ROOT / "Procfile").read_text().strip()
    if not line.startswith("web: "):
        raise ValueError(f"{ROOT / 'Procfile'}: expected 'web: <command>', got {line!r}")
    return line[len("web: ") :]


class ServerProcess:
    """A real gunicorn started with the Procfile's line on a free loopback port, with its base URL and token."""

    def __init__(self, env_overrides: Mapping[str, str], tmp_path: Path, port: int | None = None) -> None:
        self.port = port or free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.token = TEST_TOKEN
        env = {k: v for k, v in os.environ.items() if not k.startswith("DASH_APP_")}
        env.update(
            {
                "PORT": str(self.port),
                "DASH_APP_DB": str(tmp_path / "server.db"),
                "DASH_APP_API_TOKEN": TEST_TOKEN,
                "DASH_APP_DEMO": "0",
                "DASH_APP_ANALYSIS_DIR": str(tmp_path / "analysis"),  # a server's copy of its history: not in ~/.cache
                # The checkout first, so the server runs this code even where the package is not installed.
                "PYTHONPATH": str(ROOT),
            }
        )
        env.update(env_overrides)
        self.log_path = tmp_path / f"server-{self.port}.log"
        self._log = open(self.log_path, "w")
        self.process = subprocess.Popen(
            ["bash", "-c", "exec " + procfile_command()],
            cwd=ROOT,
            env=env,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        self._wait_ready()

    def _wait_ready(self, timeout: float = 30) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"server exited early:\n{self.log_path.read_text()}")
            try:
                if requests.get(self.url + "/healthz", timeout=1).status_code == 200:
                    return
            except requests.RequestException:
                pass
            time.sleep(0.1)
        # Not ready: stop it here, for the caller never gets the object whose stop() would.
        self.stop(signal.SIGKILL)
        raise RuntimeError(f"server did not become ready:\n{self.log_path.read_text()}")

    def headers(self) -> dict[str, str]:
        """Return the Authorization header of the server's API token."""
        return {"Authorization": f"Bearer {self.token}"}

    def signal(self, sig: int = signal.SIGTERM) -> None:
        """Send `sig` to the server's process group, if it still runs, without waiting: stop() then waits for it."""
        if self.process.poll() is None:
            os.killpg(self.process.pid, sig)

    def stop(self, sig: int | None = None) -> None:
        """Send `sig` (SIGTERM by default) to the server's process group and wait; SIGKILL it after 10 s."""
        if self.process.poll() is None:
            self.signal(sig or signal.SIGTERM)
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait()
        self._log.close()


def stop_all(servers: list[ServerProcess]) -> None:
    """Stop servers (SIGTERM) all at once: each shuts down as it would alone, and the caller waits for the slowest only."""
    for server in servers:
        server.signal()
    for server in servers:
        server.stop()


class RedisServer:
    """A real redis-server (Debian's) on a free loopback port, with its files in `tmp_path`; stop() ends it.

    By default it keeps an append-only file synced on every write, so a restart (stop, then start) loses nothing
    acknowledged. With `persistent=False` it keeps nothing (`--appendonly no --save ""`): a cache-only Redis that comes
    back empty after a kill, or from whatever dump.rdb the test left in its directory (save_snapshot).
    """

    def __init__(self, tmp_path: Path, port: int | None = None, persistent: bool = True) -> None:
        self.dir = tmp_path / "redis"
        self.dir.mkdir(exist_ok=True)
        self.port = port or free_port()
        self.persistent = persistent
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.process: subprocess.Popen[bytes] | None = None
        self.start()

    def start(self) -> None:
        """Start the server (again) on the same port and files; return once it answers PING."""
        self._log = open(self.dir / "redis.log", "a")
        self.process = subprocess.Popen(
            [
                "redis-server",
                "--bind", "127.0.0.1",
                "--port", str(self.port),
                "--dir", str(self.dir),
                "--appendonly", "yes" if self.persistent else "no",
                "--appendfsync", "always",
                "--save", "",
                "--protected-mode", "yes",
            ],
            stdout=self._log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )  # fmt: skip
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"redis-server exited early:\n{(self.dir / 'redis.log').read_text()}")
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=1) as sock:
                    sock.sendall(b"PING\r\n")
                    if sock.recv(64).startswith(b"+PONG"):
                        return
            except OSError:
                pass
            time.sleep(0.05)
        raise RuntimeError("redis-server did not answer PING")

    def save_snapshot(self) -> None:
        """Write the data as it is now to dump.rdb (SAVE): the older copy a later start loads when it keeps no AOF."""
        with socket.create_connection(("127.0.0.1", self.port), timeout=15) as sock:
            sock.sendall(b"SAVE\r\n")
            if not sock.recv(64).startswith(b"+OK"):
                raise RuntimeError("redis-server did not SAVE")

    def stop(self, sig: int = signal.SIGTERM) -> None:
        """Stop the server (SIGTERM: it finishes writing its files first) and wait for it."""
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(sig)
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self._log.close()
