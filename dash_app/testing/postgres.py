"""A real PostgreSQL server for tests: Debian's binaries, a throwaway data directory, a free loopback port.

It needs Debian's `postgresql` package (scripts/test installs it). The tools run directly, or as the `postgres` system
user when this process is root, because PostgreSQL refuses to run as root.
"""

import os
import pwd
import shutil
import signal
import subprocess
import tempfile
import time
from pathlib import Path
from types import TracebackType

from dash_app.testing.servers import free_port, group_processes

POSTGRES_ROOT = Path("/usr/lib/postgresql")
USER = "dash"
# A role that must give its password (every other connects without one): for tests of wrong credentials.
PASSWORD_USER, PASSWORD = "dash_pw", "right-password"
START_TIMEOUT = 60  # seconds; generous because initdb and the first start are slow on a small, busy machine


def postgres_bin_dir() -> Path:
    """Return the bin directory of the newest PostgreSQL major version installed under /usr/lib/postgresql."""
    majors = [p.parent for p in POSTGRES_ROOT.glob("*/bin/initdb") if p.parent.parent.name.isdigit()]
    if not majors:
        raise RuntimeError(f"no PostgreSQL under {POSTGRES_ROOT} (install Debian's postgresql package)")
    # Sorted as numbers, so that 10 comes after 9.
    return max(majors, key=lambda bin_dir: int(bin_dir.parent.name))


class PostgresServer:
    """A real PostgreSQL server on 127.0.0.1 and a free port, with database `dash`; stop() ends it and removes its files.

    Every connection is trusted as superuser `dash` (no password): it listens on loopback only, and on a unix socket
    inside its own directory. Commits are fsynced as in production, so kill() then start() loses nothing committed.
    """

    def __init__(self, port: int | None = None, database: str = USER) -> None:
        self.bin_dir = postgres_bin_dir()
        self.port = port or free_port()
        self.database = database
        self.url = self.url_for(database)
        self.dsn_plain = self.dsn_for(database)
        # Not pytest's tmp_path: its parents are private to root, and the server may run as the postgres user.
        self.dir = Path(tempfile.mkdtemp(prefix="dash-postgres-"))
        self.data_dir = self.dir / "data"
        self.log_path = self.dir / "postgres.log"
        self._as_user: list[str] = []
        try:
            if os.geteuid() == 0:
                self._run_as_postgres_user()
            self._initdb()
            self.start()
            self._client("createdb", database)
            self._client("psql", "-d", database, "-c", f"CREATE ROLE {PASSWORD_USER} LOGIN PASSWORD '{PASSWORD}'")
        except BaseException:
            self.stop()
            raise

    def _run_as_postgres_user(self) -> None:
        try:
            user = pwd.getpwnam("postgres")
        except KeyError:
            raise RuntimeError("running as root needs the postgres system user (Debian's postgresql package)") from None
        os.chown(self.dir, user.pw_uid, user.pw_gid)
        self._as_user = ["runuser", "-u", "postgres", "--"]

    def _env(self) -> dict[str, str]:
        # A developer's PG* variables (PGHOST, PGDATA, PGPASSWORD...) must not point the tools at another server.
        return {k: v for k, v in os.environ.items() if not k.startswith("PG")}

    def _tool(self, name: str, *args: str, timeout: float = 2 * START_TIMEOUT) -> subprocess.CompletedProcess[str]:
        """Run a server-side tool (initdb, pg_ctl) as the user that owns the data directory."""
        return subprocess.run(
            [*self._as_user, str(self.bin_dir / name), *args],
            # The server's own directory: the postgres user may not be allowed into the caller's working directory.
            cwd=self.dir,
            env=self._env(),
            capture_output=True,
            text=True,
            timeout=timeout,
            # pg_ctl's postmaster then leads no group of ours: kill() can SIGKILL its whole group and nothing else.
            start_new_session=True,
        )

    def _client(self, name: str, *args: str) -> None:
        """Run a client tool (createdb) against the server over TCP; raise RuntimeError if it fails."""
        done = subprocess.run(
            [str(self.bin_dir / name), "-h", "127.0.0.1", "-p", str(self.port), "-U", USER, *args],
            cwd=self.dir,
            env=self._env(),
            capture_output=True,
            text=True,
            timeout=START_TIMEOUT,
        )
        if done.returncode != 0:
            raise RuntimeError(f"{name} {' '.join(args)} failed:\n{done.stdout}{done.stderr}")

    def _initdb(self) -> None:
        done = self._tool(
            "initdb",
            "-D", str(self.data_dir),
            "--auth=trust",
            "-U", USER,
            "--encoding=UTF8",
            # The C locale exists everywhere: initdb must not depend on which locales this machine generated.
            "--no-locale",
            # Skips only initdb's final flush of the new files; the server itself still fsyncs every commit.
            "--no-sync",
        )  # fmt: skip
        if done.returncode != 0:
            raise RuntimeError(f"initdb failed:\n{done.stdout}{done.stderr}")
        # The first line that matches decides: PASSWORD_USER's password is checked, everyone else is trusted.
        hba = self.data_dir / "pg_hba.conf"
        hba.write_text(f"host all {PASSWORD_USER} 127.0.0.1/32 scram-sha-256\n" + hba.read_text())
        # In the config file rather than on pg_ctl's command line, so that every start, and a restart, uses them.
        with open(self.data_dir / "postgresql.conf", "a") as conf:
            conf.write(
                "\n# dash_app.testing.PostgresServer\n"
                "listen_addresses = '127.0.0.1'\n"
                f"port = {self.port}\n"
                # Every test's app holds a pool of its own until it stops; the default 100 is too few for a busy run.
                "max_connections = 300\n"
                # Its own socket directory: Debian's /var/run/postgresql may be missing or belong to another cluster.
                f"unix_socket_directories = '{self.dir}'\n"
            )

    def log_tail(self, lines: int = 40) -> str:
        """Return the last `lines` lines of the server's log."""
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no server log)"

    def start(self) -> None:
        """Start the server (again) on the same port and data directory; return once it accepts connections."""
        done = self._tool("pg_ctl", "start", "-D", str(self.data_dir), "-l", str(self.log_path), "-w", "-t", str(START_TIMEOUT))
        if done.returncode != 0:
            raise RuntimeError(f"pg_ctl start failed:\n{done.stdout}{done.stderr}\nserver log:\n{self.log_tail()}")
        # pg_ctl -w may have checked the unix socket: wait until the TCP address the tests use answers too.
        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline:
            ready = subprocess.run(
                [str(self.bin_dir / "pg_isready"), "-q", "-h", "127.0.0.1", "-p", str(self.port), "-U", USER, "-t", "2"],
                env=self._env(),
                timeout=10,
            )
            if ready.returncode == 0:
                return
            time.sleep(0.1)
        raise RuntimeError(f"PostgreSQL did not accept connections on 127.0.0.1:{self.port}:\n{self.log_tail()}")

    def url_for(self, database: str) -> str:
        """Return the SQLAlchemy URL (psycopg 3 driver) of `database` on this server."""
        return f"postgresql+psycopg://{USER}@127.0.0.1:{self.port}/{database}"

    def password_url_for(self, database: str, password: str) -> str:
        """Return the URL of `database` as PASSWORD_USER with `password` (the right one is PASSWORD)."""
        return f"postgresql://{PASSWORD_USER}:{password}@127.0.0.1:{self.port}/{database}"

    def dsn_for(self, database: str) -> str:
        """Return the plain libpq URL of `database` on this server, as psycopg.connect() and psql take it."""
        return f"postgresql://{USER}@127.0.0.1:{self.port}/{database}"

    def create_database(self, name: str, template: str | None = None) -> str:
        """Create database `name` (owned by `dash`), a copy of database `template` if given; return its SQLAlchemy URL."""
        self._client("createdb", *(["--template", template] if template else []), name)
        return self.url_for(name)

    def _postmaster_pid(self) -> int | None:
        try:
            return int((self.data_dir / "postmaster.pid").read_text().split("\n", 1)[0])
        except (OSError, ValueError):
            return None

    def kill(self) -> None:
        """SIGKILL the postmaster and all its processes at once, as a crash would; start() then recovers from the WAL."""
        pid = self._postmaster_pid()
        if pid is None:
            return
        try:
            pgid = os.getpgid(pid)
        except ProcessLookupError:
            pgid = None
        # Its own group (pg_ctl ran in a new session): the backends die with it, and never this test process.
        if pgid is not None and pgid != os.getpgrp():
            os.killpg(pgid, signal.SIGKILL)
            deadline = time.monotonic() + 15
            while group_processes(pgid):
                if time.monotonic() > deadline:
                    raise RuntimeError(f"PostgreSQL's processes (group {pgid}) outlived SIGKILL")
                time.sleep(0.05)
        # Stale now, but a dead postmaster not yet reaped (it is no child of ours) keeps its pid, and the next one would
        # take that for a server still running and refuse to start.
        for lock in (self.data_dir / "postmaster.pid", self.dir / f".s.PGSQL.{self.port}.lock"):
            lock.unlink(missing_ok=True)

    def _shutdown(self, mode: str = "fast") -> None:
        """Stop the server (fast mode: sessions are ended, a checkpoint is written); SIGKILL it if that fails.

        Immediate mode skips the checkpoint, for a server whose files are thrown away next.
        """
        if self._postmaster_pid() is None:
            return
        done = self._tool("pg_ctl", "stop", "-D", str(self.data_dir), "-m", mode, "-w", "-t", "30")
        if done.returncode != 0:
            self.kill()

    def restart(self) -> None:
        """Stop the server cleanly and start it again on the same port and files."""
        self._shutdown()
        self.start()

    def stop(self) -> None:
        """Stop the server and remove its directory, data included; calling it again does nothing."""
        if not self.dir.exists():
            return
        if self.data_dir.exists():
            # No checkpoint: the files are removed next, and a session's worth of databases takes long to write out.
            self._shutdown("immediate")
        shutil.rmtree(self.dir, ignore_errors=True)

    def __enter__(self) -> "PostgresServer":
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        self.stop()
