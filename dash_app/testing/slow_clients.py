"""Slow clients on real sockets, and the servers they are aimed at: `python -m dash_app` and deploy/run (nginx).

Shared by tests/test_slow_clients.py and benchmarks/bench_slow_clients.py. Every socket goes to 127.0.0.1.
"""

import os
import resource
import selectors
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import cast

import requests

from dash_app.testing.servers import ROOT, TEST_TOKEN, free_port

# What a slow client sends and then holds: a request line and part of its headers, never the blank line.
PARTIAL_HEAD = b"GET /licenses/status HTTP/1.1\r\nHost: 127.0.0.1\r\nUser-Agent: slow"
# What a slow body sends and then holds: a whole head of a callback request (no token needed; the app reads its
# body before anything else) and the first bytes of its body.
SLOW_BODY = (
    b"POST /_dash-update-component HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
    b'Content-Length: 1000\r\n\r\n{"output": "slow'
)
STREAM_REQUEST = b"GET /realtime/stream?delta=1 HTTP/1.1\r\nHost: 127.0.0.1\r\nAccept-Encoding: identity\r\n\r\n"


def raise_open_file_limit(needed: int) -> None:
    """Raise this process's soft limit on open files to `needed` (within the hard limit)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != resource.RLIM_INFINITY and soft < needed:
        resource.setrlimit(resource.RLIMIT_NOFILE, (needed if hard == resource.RLIM_INFINITY else min(needed, hard), hard))


def nginx_binary() -> str | None:
    """Return the nginx binary deploy/run will find, or None."""
    from shutil import which

    found = which("nginx") or "/usr/sbin/nginx"
    return found if os.access(found, os.X_OK) else None


def clean_env(overrides: Mapping[str, object], tmp_path: Path) -> dict[str, str]:
    """Return the environment of a test server: no DASH_APP_* from outside, no demo, a database in tmp_path."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("DASH_APP_")}
    env.update(
        {
            "DASH_APP_DB": str(tmp_path / f"server-{time.monotonic_ns()}.db"),
            "DASH_APP_API_TOKEN": TEST_TOKEN,
            "DASH_APP_DEMO": "0",
            "PYTHONPATH": str(ROOT),
            # deploy/run's `#!/usr/bin/env python3` then finds this interpreter.
            "PATH": os.pathsep.join([str(Path(sys.executable).parent), env.get("PATH", "")]),
        }
    )
    env.update({k: str(v) for k, v in overrides.items()})
    return env


class Process:
    """A server command in its own process group, ready once GET /healthz answers on `url`; stop() ends the group."""

    upstream_port: int | None = None  # gunicorn's port behind nginx, for start_production's servers

    def __init__(self, command: list[str], env: Mapping[str, str], url: str, log_path: Path, ready_seconds: float = 60) -> None:
        self.url = url
        self.log_path = log_path
        self._log = open(log_path, "w")
        self.process = subprocess.Popen(
            command, cwd=ROOT, env=env, stdout=self._log, stderr=subprocess.STDOUT, start_new_session=True
        )
        deadline = time.monotonic() + ready_seconds
        while True:
            if self.process.poll() is not None:
                self._log.close()
                raise RuntimeError(f"{command[:3]} exited with {self.process.returncode}:\n{log_path.read_text()}")
            try:
                if requests.get(url + "/healthz", timeout=1).status_code == 200:
                    return
            except requests.RequestException:
                pass
            if time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"{command[:3]} did not become ready:\n{log_path.read_text()}")
            time.sleep(0.1)

    @property
    def port(self) -> int:
        """The port in `url`."""
        return int(self.url.rsplit(":", 1)[1])

    def headers(self) -> dict[str, str]:
        """Return the Authorization header of the test token."""
        return {"Authorization": f"Bearer {TEST_TOKEN}"}

    def stop(self) -> int:
        """Stop with SIGTERM (the whole group if it lingers) and return the exit status."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                pass
        try:
            # Whatever is left of the group (nothing, after a clean stop).
            os.killpg(self.process.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
        self.process.wait()
        self._log.close()
        return self.process.returncode


def start_module_server(tmp_path: Path, **env: object) -> Process:
    """Start `python -m dash_app` on a free loopback port, as a user runs it."""
    port = free_port()
    command = [sys.executable, "-m", "dash_app", "--port", str(port)]
    return Process(command, clean_env(env, tmp_path), f"http://127.0.0.1:{port}", tmp_path / f"module-{port}.log")


def start_production(tmp_path: Path, *dash_args: str, **env: object) -> Process:
    """Start the production setup with deploy/run, as the README says, nginx on a free loopback port."""
    listen, upstream = free_port(), free_port()
    command = [str(ROOT / "deploy" / "run"), "--listen", f"127.0.0.1:{listen}", "--upstream-port", str(upstream), *dash_args]
    server = Process(command, clean_env(env, tmp_path), f"http://127.0.0.1:{listen}", tmp_path / f"production-{listen}.log")
    server.upstream_port = upstream
    return server


def connect(port: int, timeout: float = 5.0) -> socket.socket:
    """Return a TCP connection to 127.0.0.1:port."""
    return socket.create_connection(("127.0.0.1", port), timeout=timeout)


def is_closed(sock: socket.socket) -> bool:
    """Return True when the server has closed (or reset) the connection; never waits."""
    try:
        return sock.recv(1, socket.MSG_PEEK | socket.MSG_DONTWAIT) == b""
    except (BlockingIOError, InterruptedError):
        return False
    except OSError:
        return True


def wait_closed(sock: socket.socket, timeout: float) -> float | None:
    """Wait until the server closes `sock`, reading and dropping what it sends; return the seconds waited, or None."""
    start = time.monotonic()
    deadline = start + timeout
    while (remaining := deadline - time.monotonic()) > 0:
        sock.settimeout(remaining)
        try:
            if sock.recv(65536) == b"":
                return time.monotonic() - start
        except TimeoutError:
            return None
        except OSError:
            return time.monotonic() - start  # reset: closed as well
    return None


def ready_chunks(selector: selectors.BaseSelector, stop: threading.Event) -> Iterator[tuple[socket.socket, bytes]]:
    """Yield (socket, bytes read) for each readable socket until `stop` is set; b"" means the peer closed it."""
    while not stop.is_set():
        for key, _ in selector.select(timeout=0.2):
            sock = cast(socket.socket, key.fileobj)
            try:
                data = sock.recv(65536)
            except (BlockingIOError, InterruptedError):
                continue
            except OSError:
                data = b""
            yield sock, data


class PartialClients:
    """`count` connections that each send part of a request (`request`) and hold it; reopened when the server cuts them.

    Run keeps them held (and counts the cuts, and the cuts the server answered) until close(); held() tells how many
    are open now.
    """

    def __init__(self, port: int, count: int, reopen: bool = False, request: bytes = PARTIAL_HEAD) -> None:
        self.port = port
        self.reopen = reopen
        self.request = request
        self.cuts = 0
        self.answers: dict[socket.socket, bytes] = {}  # what the server sent before a close, by connection
        self.answered: list[bytes] = []  # those of the connections it has closed
        self._selector = selectors.DefaultSelector()
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._socks: set[socket.socket] = set()
        for _ in range(count):
            self._open()
        self._thread = threading.Thread(target=self._watch, name="partial-clients", daemon=True)
        self._thread.start()

    def _open(self) -> None:
        sock = connect(self.port)
        sock.sendall(self.request)
        sock.setblocking(False)
        with self._lock:
            self._socks.add(sock)
            self._selector.register(sock, selectors.EVENT_READ)

    def _watch(self) -> None:
        # A held connection only becomes readable when the server answers or closes it: count that as a cut.
        for sock, data in ready_chunks(self._selector, self._stop):
            if data:
                self.answers[sock] = (self.answers.get(sock, b"") + data)[:65536]
                continue  # a 408 or 400 before the close; the close follows
            with self._lock:
                self._selector.unregister(sock)
                self._socks.discard(sock)
            self.answered.append(self.answers.pop(sock, b""))
            sock.close()
            self.cuts += 1
            if self.reopen and not self._stop.is_set():
                try:
                    self._open()
                except OSError:
                    pass  # the server is not accepting right now; the count shows it

    def held(self) -> int:
        """Return how many connections are open now."""
        with self._lock:
            return sum(not is_closed(sock) for sock in self._socks)

    def close(self) -> None:
        """Stop the reading thread and close every connection."""
        self._stop.set()
        self._thread.join(timeout=5)
        with self._lock:
            for sock in self._socks:
                sock.close()
            self._socks.clear()
        self._selector.close()


class StreamClients:
    """`count` open delta streams on raw sockets, read (and dropped) by one thread; started() waits for every first message."""

    def __init__(self, port: int, count: int, request: bytes = STREAM_REQUEST) -> None:
        self.count = count
        self.heads = {}  # socket -> the first bytes received, up to the first message
        self.received = 0
        self.ended = 0
        self._all_started = threading.Event()
        self._stop = threading.Event()
        self._selector = selectors.DefaultSelector()
        self._socks = []
        for _ in range(count):
            sock = connect(port)
            sock.sendall(request)
            sock.setblocking(False)
            self._socks.append(sock)
            self.heads[sock] = b""
            self._selector.register(sock, selectors.EVENT_READ)
        self._started = 0
        self._thread = threading.Thread(target=self._read, name="stream-clients", daemon=True)
        self._thread.start()

    def _read(self) -> None:
        for sock, data in ready_chunks(self._selector, self._stop):
            if not data:
                self._selector.unregister(sock)
                self.ended += 1
                continue
            self.received += len(data)
            head = self.heads[sock]
            if b"\ndata: " not in head:
                head = self.heads[sock] = (head + data)[:65536]
                if b"\ndata: " in head:
                    self._started += 1
                    if self._started == self.count:
                        self._all_started.set()

    def started(self, timeout: float) -> bool:
        """Wait until every stream got its first message; return whether they all did."""
        return self._all_started.wait(timeout)

    def statuses(self) -> list[bytes]:
        """Return each stream's status line."""
        return [head.split(b"\r\n", 1)[0] for head in self.heads.values()]

    def close(self) -> None:
        """Stop the reading thread and close every connection."""
        self._stop.set()
        self._thread.join(timeout=5)
        for sock in self._socks:
            sock.close()
        self._selector.close()
