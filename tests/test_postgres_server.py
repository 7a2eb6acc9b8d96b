"""The real-PostgreSQL harness: the server answers, keeps what it committed, and listens on loopback only."""

import socket
import uuid
from pathlib import Path

import psycopg
import pytest

from dash_app.testing import PostgresServer


def unique(prefix):
    """Return a database name no other test of the session uses (they share the server)."""
    return f"{prefix}_{uuid.uuid4().hex[:10]}"


def plain(url):
    """Return a SQLAlchemy URL as psycopg.connect() takes it."""
    return url.replace("postgresql+psycopg://", "postgresql://", 1)


def test_answers_queries_and_databases_are_independent(postgres):
    assert postgres.url == f"postgresql+psycopg://dash@127.0.0.1:{postgres.port}/dash"
    assert postgres.dsn_plain == f"postgresql://dash@127.0.0.1:{postgres.port}/dash"
    with psycopg.connect(postgres.dsn_plain) as conn:
        assert conn.execute("SELECT 6 * 7, current_database(), current_user").fetchone() == (42, "dash", "dash")
        assert conn.execute("SHOW server_encoding").fetchone() == ("UTF8",)

    first, second = (postgres.create_database(unique(prefix)) for prefix in ("first", "second"))
    assert first.startswith(f"postgresql+psycopg://dash@127.0.0.1:{postgres.port}/first_")
    with psycopg.connect(plain(first), autocommit=True) as conn:
        conn.execute("CREATE TABLE licenses (tool text PRIMARY KEY, seats int NOT NULL)")
        conn.execute("INSERT INTO licenses VALUES (%s, %s)", ("GreenHills Multi IDE", 3))
        assert conn.execute("SELECT seats FROM licenses").fetchall() == [(3,)]
    with psycopg.connect(plain(second)) as conn:
        assert conn.execute("SELECT to_regclass('licenses')").fetchone() == (None,)
    with pytest.raises(psycopg.errors.DuplicateDatabase):
        with psycopg.connect(postgres.dsn_plain, autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{plain(first).rsplit("/", 1)[1]}"')


def test_committed_rows_survive_a_restart_and_a_crash():
    with PostgresServer() as server:
        with psycopg.connect(server.dsn_plain, autocommit=True) as conn:
            conn.execute("CREATE TABLE events (id int PRIMARY KEY, what text NOT NULL)")
            conn.execute("INSERT INTO events VALUES (1, 'before the restart')")
        server.restart()
        with psycopg.connect(server.dsn_plain, autocommit=True) as conn:
            conn.execute("INSERT INTO events VALUES (2, 'before the crash')")
            held = psycopg.connect(server.dsn_plain)  # a session the crash cuts off
        server.kill()
        with pytest.raises(psycopg.OperationalError):
            held.execute("SELECT 1")
        with pytest.raises(psycopg.OperationalError):
            psycopg.connect(server.dsn_plain, connect_timeout=2)
        server.start()
        with psycopg.connect(server.dsn_plain) as conn:
            assert conn.execute("SELECT id, what FROM events ORDER BY id").fetchall() == [
                (1, "before the restart"),
                (2, "before the crash"),
            ]
        assert "database system was not properly shut down" in server.log_path.read_text()
        held.close()
        directory = server.dir
    assert not directory.exists()
    server.stop()  # a second stop does nothing


def listening_addresses(port):
    """Return the addresses of the TCP sockets listening on `port` in this network namespace, from /proc/net."""
    found = set()
    for table, width in (("/proc/net/tcp", 8), ("/proc/net/tcp6", 32)):
        for line in Path(table).read_text().splitlines()[1:]:
            local, state = line.split()[1], line.split()[3]
            address, local_port = local.split(":")
            if state == "0A" and int(local_port, 16) == port:  # 0A: LISTEN
                assert len(address) == width
                # /proc/net prints each 32-bit word of the address in host (little-endian) byte order.
                raw = b"".join(bytes.fromhex(address[i : i + 8])[::-1] for i in range(0, width, 8))
                found.add(socket.inet_ntop(socket.AF_INET if width == 8 else socket.AF_INET6, raw))
    return found


def test_listens_on_loopback_only(postgres):
    with psycopg.connect(postgres.dsn_plain) as conn:
        assert conn.execute("SHOW listen_addresses").fetchone() == ("127.0.0.1",)
        assert conn.execute("SHOW unix_socket_directories").fetchone() == (str(postgres.dir),)
    assert listening_addresses(postgres.port) == {"127.0.0.1"}
    # The rest of 127.0.0.0/8 is this host too, yet nothing listens there.
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection(("127.0.0.2", postgres.port), timeout=2).close()
    assert (postgres.dir / f".s.PGSQL.{postgres.port}").is_socket()
