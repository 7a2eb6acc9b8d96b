"""Versioned schema migrations with Alembic: applied when a database opens, and the `db upgrade` / `db current` commands.

The revisions live in store/migrations/versions, named by schema version. Opening a database runs those it lacks in
one transaction that holds the write lock, so two processes starting on one file upgrade it once; a database whose
revision this code does not know (written by a newer release) is refused before anything is written.
"""

from __future__ import annotations

import logging
import sqlite3
import urllib.parse
from functools import cache

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Connection, create_engine, event, inspect, make_url, text
from sqlalchemy.engine import Engine
from sqlalchemy.exc import ArgumentError, DBAPIError, NoSuchModuleError
from sqlalchemy.pool import NullPool, StaticPool

from dash_app.store.schema import SCHEMA_VERSION, SchemaTooNew, check_version

# Query parameters libpq takes secrets in, hidden like the password.
SECRET_QUERY_KEYS = frozenset({"password", "sslpassword", "passfile"})
# Every process that upgrades a PostgreSQL database takes this transaction-level advisory lock first (an arbitrary
# number of ours), so several starting at once upgrade it once, as BEGIN IMMEDIATE does for a SQLite file.
UPGRADE_LOCK = 80_502_017
CONNECT_TIMEOUT_SECONDS = 5
# libpq settings: a connect timeout, and TCP keepalives that find a dead peer within about half a minute.
CONNECTION_DEFAULTS = {
    "connect_timeout": CONNECT_TIMEOUT_SECONDS,
    "keepalives": 1,
    "keepalives_idle": 10,
    "keepalives_interval": 5,
    "keepalives_count": 3,
}
POOL_TIMEOUT_SECONDS = 10  # how long a reader waits for a free connection before its request fails


class DatabaseError(Exception):
    """A database server cannot be reached or refuses us; the message is one line, its password redacted."""


log = logging.getLogger(__name__)
# Alembic's own lines ("Context impl SQLiteImpl.", one per revision) at every start; ours say what changed.
logging.getLogger("alembic").setLevel(logging.WARNING)

SCRIPT_LOCATION = "dash_app.store:migrations"
VERSION_TABLE = "alembic_version"


def alembic_config(connection: Connection | None = None) -> Config:
    """Return Alembic's configuration for our scripts, with `connection` for env.py to run them on."""
    config = Config()
    config.set_main_option("script_location", SCRIPT_LOCATION)
    config.attributes["connection"] = connection
    return config


@cache
def _script() -> ScriptDirectory:
    return ScriptDirectory.from_config(alembic_config())


def head() -> str:
    """Return the newest revision this code has."""
    found = _script().get_current_head()
    assert found is not None and int(found) == SCHEMA_VERSION, "schema.SCHEMA_VERSION must name the head revision"
    return found


def known_revisions() -> set[str]:
    """Return every revision this code can upgrade from."""
    return {script.revision for script in _script().walk_revisions()}


def sqlite_revision(conn: sqlite3.Connection) -> str | None:
    """Return the Alembic revision recorded in the SQLite file on `conn`, or None for a new or pre-Alembic file."""
    if conn.execute("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?", (VERSION_TABLE,)).fetchone() is None:
        return None
    row = conn.execute(f"SELECT version_num FROM {VERSION_TABLE}").fetchone()
    return row[0] if row else None


def check_sqlite(conn: sqlite3.Connection) -> None:
    """Raise SchemaTooNew if the file on `conn` was written by a newer release (its revision or version unknown)."""
    check_revision(sqlite_revision(conn))
    check_version(conn)


def upgrade_sqlite(conn: sqlite3.Connection, name: str = "database") -> None:
    """Bring the SQLite database on `conn` (autocommit mode) to the head revision, in one write transaction.

    Raises SchemaTooNew, before writing anything, for a database from a newer release.
    """
    check_sqlite(conn)
    before = sqlite_revision(conn)
    if before == head():
        return  # the common case, read without taking the write lock
    # Alembic works on a SQLAlchemy connection: one that wraps this very sqlite3 connection (an in-memory database
    # exists only there), never closed by the engine, whose transactions begin with the write lock held.
    engine = create_engine("sqlite://", creator=lambda: conn, poolclass=StaticPool)

    @event.listens_for(engine, "begin")
    def _write_lock(connection: Connection) -> None:
        connection.exec_driver_sql("BEGIN IMMEDIATE")

    # (SQLAlchemy also gives the connection its Python regexp() and floor(), which nothing here relies on.)
    try:
        with engine.connect() as connection:
            connection.info["database"] = name
            with connection.begin():
                check_sqlite(conn)  # again, under the lock: another process may have upgraded it meanwhile
                command.upgrade(alembic_config(connection), "head")
                # For releases from before Alembic, which read only this: a file they do not know is refused.
                conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
    except DBAPIError as exc:
        # SQLAlchemy's wrapper holds the statement on more lines: the store reports SQLite's own one-line error.
        if isinstance(exc.orig, sqlite3.Error):
            raise exc.orig from None
        raise
    if before is not None:  # (files from before Alembic say what changed step by step: schema.upgrade_legacy)
        log.info("%s: schema upgraded from revision %s to %s", name, before, head())


def is_url(db: str) -> bool:
    """Return whether --db names a database server (postgresql://...) rather than a SQLite file."""
    return "://" in db


def redacted(url: str) -> str:
    """Return `url` with its password (in the user part or the query) replaced by ***, for messages and logs."""
    scheme, sep, rest = url.partition("://")
    if not sep:
        return url
    # The user part ends at the last @: a password may hold an unencoded @, /, ? or #. (An @ in the query makes more
    # of the URL look like the user part: more is hidden then, never less.)
    userinfo, at, location = rest.rpartition("@")
    if at and ":" in userinfo:
        userinfo = userinfo.split(":", 1)[0] + ":***"
    parts = urllib.parse.urlsplit("//" + location)
    query = [(k, "***" if k.lower() in SECRET_QUERY_KEYS else v) for k, v in urllib.parse.parse_qsl(parts.query, True)]
    where = urllib.parse.urlunsplit(("", parts.netloc, parts.path, urllib.parse.urlencode(query, safe="*"), ""))
    return f"{scheme}://{userinfo}{at}{where.removeprefix('//')}"


def server_engine(url: str, pool_size: int = 0, max_overflow: int = 0) -> Engine:
    """Return an engine for a database server's URL (postgresql:// is served by psycopg 3), or raise DatabaseError.

    With `pool_size`, connections are pooled (and checked before each use, so one the server dropped is replaced);
    without, each is opened and closed with its use (the commands, which run once).
    """
    try:
        parsed = make_url(url)
        if parsed.drivername in ("postgresql", "postgres"):
            parsed = parsed.set(drivername="postgresql+psycopg")
        if not parsed.drivername.startswith("postgresql"):
            raise DatabaseError(f"--db {redacted(url)}: only postgresql:// URLs (or a SQLite path) are supported")
        # An unreachable host, or one that goes quiet without closing the connection, must end in an error, not a
        # wait of minutes (the URL's own settings win).
        connect_args = {key: value for key, value in CONNECTION_DEFAULTS.items() if key not in parsed.query}
        # Positional parameters (%s), as SQLite's are (?): the store's writer compiles its statements once and hands
        # rows to the driver as tuples (database.Prepared).
        if pool_size:
            return create_engine(
                parsed,
                paramstyle="format",
                connect_args=connect_args,
                pool_size=pool_size,
                max_overflow=max_overflow,
                pool_pre_ping=True,
                pool_timeout=POOL_TIMEOUT_SECONDS,
            )
        return create_engine(parsed, paramstyle="format", connect_args=connect_args, poolclass=NullPool)
    except ImportError:
        raise DatabaseError(f"--db {redacted(url)}: psycopg is not installed (pip install -r requirements.txt)") from None
    except (ArgumentError, NoSuchModuleError, ValueError) as exc:
        raise DatabaseError(f"--db {redacted(url)}: not a database URL ({type(exc).__name__})") from None


def connect_error(url: str, exc: DBAPIError) -> DatabaseError:
    """Return the one-line error for a failed connection or statement on the server at `url`."""
    reason = str(exc.orig).strip().splitlines()[0] if exc.orig is not None else type(exc).__name__
    return DatabaseError(f"database {redacted(url)}: {reason}")


def server_revision(connection: Connection) -> str | None:
    """Return the revision recorded in the database on `connection`, or None for an empty database."""
    return MigrationContext.configure(connection).get_current_revision()


def check_revision(revision: str | None, url: str | None = None) -> None:
    """Raise SchemaTooNew if `revision` was written by a newer release (DatabaseError naming the server at `url`)."""
    if revision is not None and revision not in known_revisions():
        problem = (
            f"its schema revision {revision} is newer than this app's ({head()}); "
            "run the newer app, or point --db at another database"
        )
        raise SchemaTooNew(problem) if url is None else DatabaseError(f"database {redacted(url)}: {problem}")


def upgrade_server(url: str) -> str | None:
    """Bring the database at `url` to the head revision in one transaction; return the revision it had.

    Raises DatabaseError (one line) for a database from a newer release, one that is not ours, or a server that
    cannot be used; nothing is written then.
    """
    engine = server_engine(url)
    try:
        with engine.connect() as connection:
            connection.info["database"] = f"database {redacted(url)}"
            with connection.begin():
                connection.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": UPGRADE_LOCK})
                before = server_revision(connection)
                check_revision(before, url)
                if before is None and inspect(connection).get_table_names():
                    # Not ours, or not yet: a mistyped URL must not get our tables among someone else's.
                    raise DatabaseError(
                        f"database {redacted(url)}: holds tables but no revision of this app; give an empty database"
                    )
                if before != head():
                    command.upgrade(alembic_config(connection), "head")
    except DBAPIError as exc:
        raise connect_error(url, exc) from None
    finally:
        engine.dispose()
    if before is not None and before != head():
        log.info("database %s: schema upgraded from revision %s to %s", redacted(url), before, head())
    return before


def describe_server(url: str) -> str:
    """Return one line saying which revision the database at `url` has, and whether an upgrade is due."""
    engine = server_engine(url)
    try:
        with engine.connect() as connection:
            revision = server_revision(connection)
    except DBAPIError as exc:
        raise connect_error(url, exc) from None
    finally:
        engine.dispose()
    check_revision(revision, url)
    name = f"database {redacted(url)}"
    if revision == head():
        return f"{name}: revision {revision} (head)"
    if revision is None:
        return f"{name}: empty; upgrade creates revision {head()}"
    return f"{name}: revision {revision}; upgrade due to {head()}"
