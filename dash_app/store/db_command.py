"""`python -m dash_app db current|upgrade|copy`: a database's schema revision, its upgrade by hand, and moving a history.

The server upgrades its SQLite file when it starts; operators who migrate as a step of their own (before starting
new releases on several hosts, or to see what a start would do) use these. `--db` is a SQLite path or a
postgresql:// URL. Problems end with one line (passwords redacted), exit status 2.
"""

from __future__ import annotations

import sqlite3
import sys
from pathlib import Path

from dash_app import config as config_module
from dash_app.store.database import Store, StoreError
from dash_app.store.migrate import (
    DatabaseError,
    check_sqlite,
    describe_server,
    head,
    is_url,
    sqlite_revision,
    upgrade_server,
)
from dash_app.store.schema import SchemaTooNew, schema_version
from dash_app.store.transfer import open_read_only, timed_copy

PROG = "python -m dash_app db"


def build_parser() -> config_module.OneLineParser:
    """Return the parser of the db command; the database is --db (or DASH_APP_DB), as for the server."""
    parser = config_module.OneLineParser(prog=PROG, description="The database's schema revision, its upgrade, a copy.")
    actions = parser.add_subparsers(dest="action", required=True, parser_class=config_module.OneLineParser)
    where = config_module.OneLineParser(add_help=False)
    where.add_argument("--db", dest="db", default=None, help="SQLite path or postgresql:// URL (default: DASH_APP_DB)")
    actions.add_parser("current", parents=[where], help="say the database's revision and whether an upgrade is due")
    actions.add_parser("upgrade", parents=[where], help="bring the database to the newest revision")
    copy = actions.add_parser("copy", help="copy a SQLite file's history into an empty database server")
    copy.add_argument("--from", dest="source", required=True, metavar="SQLITE_PATH", help="the site's SQLite file")
    copy.add_argument("--to", dest="target", required=True, metavar="URL", help="postgresql://user:password@host:port/db")
    return parser


def describe_file(path: str) -> str:
    """Return one line saying which revision the SQLite file at `path` has, and whether an upgrade is due."""
    conn = open_read_only(path)
    try:
        check_sqlite(conn)
        revision = sqlite_revision(conn)
        tables = conn.execute("SELECT COUNT(*) FROM sqlite_master WHERE type = 'table'").fetchone()[0]
        version = schema_version(conn)
    except (sqlite3.Error, SchemaTooNew) as exc:
        raise StoreError(f"database {path}: {exc}") from None
    finally:
        conn.close()
    if revision == head():
        return f"database {path}: revision {revision} (head)"
    if revision is not None:
        return f"database {path}: revision {revision}; upgrade due to {head()}"
    if tables == 0:
        return f"database {path}: empty; upgrade (or the server's start) creates revision {head()}"
    return f"database {path}: schema version {version}, from before revisions; upgrade due to {head()}"


def describe(db: str) -> str:
    """Return the `current` line of a SQLite path or a server URL."""
    return describe_server(db) if is_url(db) else describe_file(db)


def upgrade(db: str) -> str:
    """Upgrade the database and return the line saying where it is now (and where it was)."""
    if is_url(db):
        before = describe(db)
        upgrade_server(db)
    else:
        before = describe(db) if Path(db).expanduser().exists() else ""
        Store(db).close()  # opening a store applies the revisions it lacks, as a server's start does
    after = describe(db)
    return after if not before or before == after else f"{after} (was: {before.split(': ', 1)[1]})"


def main(argv: list[str] | None = None) -> int:
    """Run the command; return its exit status."""
    args = build_parser().parse_args(argv)
    try:
        if args.action == "copy":
            if is_url(args.source) or not is_url(args.target):
                raise DatabaseError("copy goes --from a SQLite file --to a postgresql:// URL")
            print(timed_copy(args.source, args.target))
            return 0
        config = config_module.from_args(args)
        if config.db == ":memory:":
            raise StoreError("database :memory: keeps nothing: give --db a file or a URL")
        print(describe(config.db) if args.action == "current" else upgrade(config.db))
    except (config_module.ConfigError, StoreError, DatabaseError) as exc:
        print(f"{PROG}: error: {exc}", file=sys.stderr)
        return 2
    return 0
