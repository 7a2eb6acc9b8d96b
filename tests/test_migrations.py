"""Versioned migrations (Alembic): new databases, files of every earlier release, newer files, the db command."""

import sqlite3
import subprocess
import sys

import pytest
from alembic import command as alembic_command
from sqlalchemy import create_engine, inspect, text

from dash_app.__main__ import main
from dash_app.licenses.pool_storage import PoolStorage
from dash_app.store import Store, StoreError
from dash_app.store.history import HistoryKeeper
from dash_app.store.migrate import alembic_config, head, redacted, server_engine
from dash_app.store.schema import BASE_SCHEMA, MIGRATIONS, SCHEMA_VERSION
from dash_app.testing import ROOT
from dash_app.testing.commands import run_main, run_refused
from tests.test_sessions_store import dump

# The flexlm_offsets table as store.checkpoints made it before the tables had one definition (frozen here).
OLD_CHECKPOINTS_TABLE = """
CREATE TABLE IF NOT EXISTS flexlm_offsets (
    file_id TEXT PRIMARY KEY, path TEXT NOT NULL, source TEXT NOT NULL,
    fp_len INTEGER NOT NULL, fingerprint TEXT NOT NULL, offset INTEGER NOT NULL, line INTEGER NOT NULL,
    day INTEGER, last_tod INTEGER, updated_at REAL NOT NULL
);
"""
# The in-use columns a server of the releases before revision 7 added to a file at start (frozen here).
OLD_LEVEL_COLUMNS = """
ALTER TABLE minute_stats ADD COLUMN peak INTEGER; ALTER TABLE minute_stats ADD COLUMN avg_in_use REAL;
ALTER TABLE minute_stats ADD COLUMN level_end INTEGER; ALTER TABLE hour_stats ADD COLUMN peak INTEGER;
ALTER TABLE hour_stats ADD COLUMN avg_in_use REAL; ALTER TABLE hour_stats ADD COLUMN level_end INTEGER;
"""
NOW = 1_800_000_000.0
# Tables a revision after 5 added: a file of a release before Alembic never had them.
LATER_TABLES = {"report_schedules", "report_runs"}


def legacy_file(path, version, run_by_server=False):
    """Write a file as the release of schema `version` (before Alembic) left it, with a few rows."""
    conn = sqlite3.connect(path, isolation_level=None)
    conn.executescript(BASE_SCHEMA)
    for migration in MIGRATIONS[:version]:
        migration(conn)
    conn.execute(f"PRAGMA user_version = {version}")
    if run_by_server:  # and the rest a server of that release made at run time
        conn.executescript(OLD_CHECKPOINTS_TABLE)
        conn.executescript(OLD_LEVEL_COLUMNS)
    borrow = "INSERT INTO borrows (id, tool, user, borrowed_at, is_overage, returned_at) VALUES (?, ?, ?, ?, ?, ?)"
    conn.execute(borrow, ("b-1", "MATLAB", "ann", NOW - 60, 0, None))
    conn.execute(
        "INSERT INTO events (ts, kind, tool, user, borrow_id, is_overage) VALUES (?, 'borrow', 'MATLAB', 'ann', 'b-1', 0)",
        (NOW - 60,),
    )
    conn.execute(
        "INSERT INTO events (ts, kind, tool, user, reason) VALUES (?, 'failure', 'MATLAB', 'bob', 'exhausted')", (NOW - 30,)
    )
    if version >= 1:  # that release kept denials in their own table (version 1 made it from the events)
        conn.execute("INSERT INTO denials (ts, tool, user, reason) VALUES (?, 'MATLAB', 'bob', 'exhausted')", (NOW - 30,))
    conn.execute("INSERT INTO charges VALUES ('MATLAB', 2)")
    conn.close()


def shape(path):
    """Every table's columns and indexes as SQLite reports them.

    A primary key's NOT NULL is left out: new files declare it (the app never writes a NULL key), while files of
    releases before Alembic said only TEXT PRIMARY KEY, which SQLite lets hold NULL.
    """
    conn = sqlite3.connect(path)
    try:
        tables = [n for (n,) in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table' AND name != 'alembic_version'")]
        found = {}
        for table in tables:
            columns = [
                (name, kind, bool(notnull) and not pk, default, pk)
                for _, name, kind, notnull, default, pk in conn.execute(f"PRAGMA table_info({table})")
            ]
            indexes = {}
            for _, name, unique, origin, partial in conn.execute(f"PRAGMA index_list({table})"):
                if origin == "c":  # made by CREATE INDEX (the others come with a primary key)
                    cols = [c for _, _, c in conn.execute(f"PRAGMA index_info({name})")]
                    indexes[name] = (cols, unique, partial)
            found[table] = (columns, indexes)
        return found
    finally:
        conn.close()


def run_db(*args):
    """`python -m dash_app db ARGS`, in this process: its exit status and output (upgrade_at_once runs the module)."""
    return run_main(main, ["db", *args])


def upgrade_at_once(db, processes=4):
    """Start `processes` runs of `db upgrade --db DB` at once; return each one's (exit status, stdout, stderr)."""
    command = [sys.executable, "-m", "dash_app", "db", "upgrade", "--db", db]
    runs = [
        subprocess.Popen(command, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for _ in range(processes)
    ]
    outputs = [run.communicate(timeout=120) for run in runs]
    return [(run.returncode, out, err) for run, (out, err) in zip(runs, outputs)]


def test_a_new_database_has_the_tables_every_earlier_release_upgrades_to(tmp_path):
    """The one definition (store.tables) makes what the frozen migrations made of a file, column for column."""
    new = tmp_path / "new.db"
    Store(new).close()
    legacy = tmp_path / "legacy.db"
    legacy_file(legacy, len(MIGRATIONS), run_by_server=True)
    assert {name: found for name, found in shape(new).items() if name not in LATER_TABLES} == shape(legacy)
    assert LATER_TABLES <= set(shape(new))
    # And the rows a migration seeded (every other table starts empty); each database has a number of its own.
    seeded = "SELECT * FROM history_meta WHERE key != 'database_id' ORDER BY key"
    assert sqlite3.connect(new).execute(seeded).fetchall() == sqlite3.connect(legacy).execute(seeded).fetchall() != []
    numbered = "SELECT value FROM history_meta WHERE key = 'database_id'"
    assert len({sqlite3.connect(path).execute(numbered).fetchone() for path in (new, legacy)}) == 2
    conn = sqlite3.connect(new)
    assert conn.execute("SELECT version_num FROM alembic_version").fetchall() == [(head(),)]
    assert conn.execute("PRAGMA user_version").fetchone() == (SCHEMA_VERSION,)


@pytest.mark.parametrize("version", range(len(MIGRATIONS) + 1))
def test_a_file_of_each_earlier_release_is_upgraded_in_place_keeping_its_rows(tmp_path, version):
    path = tmp_path / f"v{version}.db"
    legacy_file(path, version)
    store = Store(path)
    try:
        assert store.read("SELECT id, tool, user, borrowed_at FROM borrows") == [("b-1", "MATLAB", "ann", NOW - 60)]
        assert PoolStorage(store).load_charges() == {"MATLAB": 2}
        assert store.read("SELECT COUNT(*) FROM events") == [(2,)]
        assert store.read("SELECT tool, user, reason FROM denials") == [("MATLAB", "bob", "exhausted")]
    finally:
        store.close()
    new = tmp_path / "new.db"
    Store(new).close()
    assert shape(path) == shape(new)
    assert run_db("current", "--db", str(path)).stdout.strip() == f"database {path}: revision {head()} (head)"


def test_a_failed_upgrade_leaves_the_file_as_it_was(tmp_path):
    path = tmp_path / "v1.db"
    legacy_file(path, 1)
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("CREATE VIEW history_meta AS SELECT 'k' AS key, 1.0 AS value")  # version 2 writes into this table
    conn.close()
    before = dump(path)
    with pytest.raises(StoreError) as failed:
        Store(path)
    assert "history_meta" in str(failed.value) and "\n" not in str(failed.value)
    assert dump(path) == before  # not half upgraded: no column, table or version of version 2 or the revisions
    assert sqlite3.connect(path).execute("PRAGMA user_version").fetchone() == (1,)


def test_a_database_from_a_newer_release_is_refused_in_one_line_and_left_alone(tmp_path):
    path = tmp_path / "newer.db"
    Store(path).close()
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("UPDATE alembic_version SET version_num = '0099'")
    conn.close()
    before = dump(path)
    with pytest.raises(StoreError) as refused:
        Store(path)
    assert str(refused.value) == (
        f"database {path}: its schema revision 0099 is newer than this app's ({head()}); "
        "run the newer app, or point --db at another database"
    )
    assert dump(path) == before
    for command in (["current"], ["upgrade"]):
        result = run_db(*command, "--db", str(path))
        assert result.returncode == 2 and result.stdout == ""
        assert result.stderr == f"python -m dash_app db: error: {refused.value}\n"
    started = run_refused(["--db", str(path)])
    assert started.returncode == 2
    assert started.stderr == f"python -m dash_app: error: {refused.value}\n"
    assert dump(path) == before


def test_the_db_command_says_the_revision_and_upgrades_by_hand(tmp_path):
    path = tmp_path / "v2.db"
    legacy_file(path, 2)
    before = dump(path)
    current = run_db("current", "--db", str(path))
    assert (current.returncode, current.stdout) == (
        0,
        f"database {path}: schema version 2, from before revisions; upgrade due to {head()}\n",
    )
    assert dump(path) == before  # asking wrote nothing
    upgraded = run_db("upgrade", "--db", str(path))
    assert upgraded.returncode == 0, upgraded.stderr
    assert (
        upgraded.stdout
        == f"database {path}: revision {head()} (head) (was: schema version 2, from before revisions; upgrade due to {head()})\n"
    )
    again = run_db("upgrade", "--db", str(path))
    assert again.stdout == f"database {path}: revision {head()} (head)\n"

    missing = tmp_path / "none.db"
    result = run_db("current", "--db", str(missing))
    assert (result.returncode, result.stderr) == (2, f"python -m dash_app db: error: database {missing}: no such file\n")
    assert not missing.exists()  # asking about a file never makes one
    fresh = run_db("upgrade", "--db", str(missing))
    assert fresh.stdout == f"database {missing}: revision {head()} (head)\n"


def test_several_processes_starting_on_one_old_file_upgrade_it_once(tmp_path):
    path = tmp_path / "v0.db"
    legacy_file(path, 0)
    results = upgrade_at_once(str(path))
    assert [code for code, _, _ in results] == [0] * 4, results
    conn = sqlite3.connect(path)
    assert conn.execute("SELECT version_num FROM alembic_version").fetchall() == [(head(),)]
    assert conn.execute("SELECT tool, user, reason FROM denials").fetchall() == [("MATLAB", "bob", "exhausted")]
    assert all(out.startswith(f"database {path}: revision {head()} (head)") for _, out, _ in results), results


def test_an_upgrade_that_waits_too_long_for_the_write_lock_ends_with_one_line(tmp_path):
    path = tmp_path / "v2.db"
    legacy_file(path, 2)
    holder = sqlite3.connect(path, isolation_level=None)
    holder.execute("BEGIN IMMEDIATE")  # another process's long write
    try:
        before = dump(path)
        with pytest.raises(StoreError) as locked:
            Store(path)
        assert str(locked.value) == f"database {path}: database is locked"
    finally:
        holder.execute("ROLLBACK")
        holder.close()
    assert dump(path) == before
    Store(path).close()  # and once the other write is over, the upgrade goes through
    assert run_db("current", "--db", str(path)).stdout == f"database {path}: revision {head()} (head)\n"


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("postgresql://dash:s3cret@db:5432/licenses", "postgresql://dash:***@db:5432/licenses"),
        ("postgresql://dash:p@ss@db/licenses", "postgresql://dash:***@db/licenses"),  # an @ the user did not encode
        ("postgresql://dash@db/x?password=s3cret&sslmode=require", "postgresql://dash@db/x?password=***&sslmode=require"),
        ("postgresql://db/x?sslpassword=s3cret", "postgresql://db/x?sslpassword=***"),
        ("postgresql://dash:s3cret@db:54x2/x", "postgresql://dash:***@db:54x2/x"),
        # Unencoded /, ? and # in a password (SQLAlchemy reads the password whole; a URL parser would stop early).
        ("postgresql://dash:s3/cret@db/x", "postgresql://dash:***@db/x"),
        ("postgresql://dash:s3?cret@db/x", "postgresql://dash:***@db/x"),
        ("postgresql://dash:s3#cret@db/x", "postgresql://dash:***@db/x"),
    ],
)
def test_passwords_never_show_in_a_database_url(url, shown):
    assert redacted(url) == shown
    result = run_db("current", "--db", url)
    assert result.returncode == 2 and "s3cret" not in result.stderr + result.stdout
    assert len(result.stderr.splitlines()) == 1


def upgrade_to(db, revision):
    """Bring the database `db` (a SQLite path or a server's URL) to `revision`, as the release whose head it was did."""
    engine = server_engine(db) if "://" in db else create_engine(f"sqlite:///{db}")
    try:
        with engine.begin() as connection:
            connection.info["database"] = db
            alembic_command.upgrade(alembic_config(connection), revision)
            if "://" not in db:
                connection.exec_driver_sql(f"PRAGMA user_version = {int(revision)}")
    finally:
        engine.dispose()


def level_columns(store):
    return {table: [c["name"] for c in inspect(store.engine).get_columns(table)][-3:] for table in ("minute_stats", "hour_stats")}


def test_revision_7_gives_a_file_at_revision_6_the_in_use_columns_estimated_then_rebuilt_from_its_events(tmp_path):
    """A file upgraded to revision 6 before its server added the in-use columns (`db upgrade`) gets them on open."""
    path = tmp_path / "v6.db"
    legacy_file(path, len(MIGRATIONS))
    upgrade_to(str(path), "0006")
    minute = int((NOW - 7200) // 60)
    conn = sqlite3.connect(path, isolation_level=None)
    assert "peak" not in {row[1] for row in conn.execute("PRAGMA table_info(minute_stats)")}
    conn.execute("INSERT INTO minute_stats VALUES ('MATLAB', ?, 3, 0, '[\"ann\"]', 1, '{}')", (minute,))
    conn.execute("INSERT INTO hour_stats VALUES ('MATLAB', ?, 3, 0, '[\"ann\"]', 1, '{}')", (minute // 60,))
    conn.execute("INSERT INTO events (ts, kind, tool, user, borrow_id) VALUES (?, 'return', 'MATLAB', 'ann', 'b-1')", (NOW + 10,))
    conn.close()
    store = Store(path)
    try:
        assert store.read("SELECT version_num FROM alembic_version") == [(head(),)]
        assert level_columns(store) == {table: ["peak", "avg_in_use", "level_end"] for table in ("minute_stats", "hour_stats")}
        # Estimated from the counts, walked from 0: 3 borrows and 1 return leave 2 in use.
        assert store.read("SELECT peak, avg_in_use, level_end FROM minute_stats") == [(2, 1.0, 2)]
        assert store.read("SELECT count, peak, level_end FROM hour_stats") == [(3, 2, 2)]
        # The raw events from the minute after the oldest one's are left to the keeper, which knows the series names;
        # the oldest minute (legacy_file's borrow and failure) may have lost events to pruning: it is not rebuilt.
        assert store.read("SELECT value FROM history_meta WHERE key = 'unaggregated_since'") == [(NOW,)]
        HistoryKeeper(store, raw_keep_seconds=7 * 3600, history_seconds=30 * 86400, clock=lambda: NOW).aggregate()
        rows = store.read("SELECT minute, count, returns, peak, avg_in_use, level_end FROM minute_stats ORDER BY minute")
        # The return's minute, walked from the level before it (2): 2 for 10 s, then 1.
        assert rows == [(minute, 3, 1, 2, 1.0, 2), (int(NOW // 60), 0, 1, 2, pytest.approx(70 / 60), 1)]
        assert store.read("SELECT key FROM history_meta WHERE key = 'unaggregated_since'") == []
    finally:
        store.close()
    new = tmp_path / "new.db"
    Store(new).close()
    assert shape(path) == shape(new)


def test_revision_7_leaves_a_server_database_at_revision_6_as_it_was(postgres):
    """A PostgreSQL database always had the in-use columns: revision 7 only moves it on, its rows untouched."""
    url = postgres.create_database("at_revision_6")
    upgrade_to(url, "0006")
    engine = server_engine(url)
    with engine.begin() as conn:
        conn.execute(text("INSERT INTO minute_stats VALUES ('MATLAB', 5, 3, 0, '[]', 1, '{}', 2, 1.5, 2)"))
        conn.execute(text("INSERT INTO events (ts, kind, tool) VALUES (:ts, 'failure', 'MATLAB')"), {"ts": NOW})
    engine.dispose()
    store = Store(url)
    try:
        assert store.read("SELECT version_num FROM alembic_version") == [(head(),)]
        assert store.read("SELECT * FROM minute_stats") == [("MATLAB", 5, 3, 0, "[]", 1, "{}", 2, 1.5, 2)]
        assert store.read("SELECT key FROM history_meta WHERE key = 'unaggregated_since'") == []
    finally:
        store.close()


@pytest.mark.parametrize("kind", ["sqlite", "postgresql"])
def test_revision_8_gives_a_database_at_revision_7_the_reports_tables_keeping_its_rows(tmp_path, kind, request):
    """The scheduled reports' tables come to a database of either kind at revision 7, empty; its rows stay."""
    db = str(tmp_path / "v7.db") if kind == "sqlite" else request.getfixturevalue("postgres").create_database("at_revision_7")
    upgrade_to(db, "0007")
    engine = server_engine(db) if kind == "postgresql" else create_engine(f"sqlite:///{db}")
    with engine.begin() as conn:
        # Revision 5 makes the tables as they are now: the release of revision 7 had no reports' tables.
        for table in LATER_TABLES:
            conn.execute(text(f"DROP TABLE {table}"))
        conn.execute(text("INSERT INTO charges VALUES ('MATLAB', 2)"))
    engine.dispose()
    store = Store(db)
    try:
        assert store.read("SELECT version_num FROM alembic_version") == [("0010",)] == [(head(),)]
        assert store.read("SELECT * FROM charges") == [("MATLAB", 2)]
        assert store.read("SELECT COUNT(*) FROM report_runs") == [(0,)] == store.read("SELECT COUNT(*) FROM report_schedules")
    finally:
        store.close()
    if kind == "sqlite":
        new = tmp_path / "new.db"
        Store(new).close()
        assert shape(db) == shape(new)


def test_revision_10_gives_a_server_databases_changed_indexes_the_rowid_keeping_its_rows(postgres):
    """The check of a saved copy reads one write's newest rows by rowid: on PostgreSQL the index must hold it (SQLite's
    index on `changed` ends with the rowid by itself, so its files stay as they are)."""
    url = postgres.create_database("at_revision_9")
    upgrade_to(url, "0009")
    engine = server_engine(url)
    with engine.begin() as conn:
        for table in ("borrows", "denials"):  # as revisions 5 to 9 made them
            conn.execute(text(f"DROP INDEX {table}_changed"))
            conn.execute(text(f"CREATE INDEX {table}_changed ON {table} (changed)"))
        conn.execute(
            text(
                'INSERT INTO borrows (id, tool, "user", borrowed_at, is_overage, changed) '
                "VALUES ('b-1', 'MATLAB', 'ann', :ts, 0, 3)"
            ),
            {"ts": NOW},
        )
    engine.dispose()
    store = Store(url)
    try:
        assert store.read("SELECT version_num FROM alembic_version") == [(head(),)]
        assert store.read('SELECT id, "user", changed FROM borrows') == [("b-1", "ann", 3)]
    finally:
        store.close()
    engine = server_engine(url)
    try:
        found = inspect(engine)
        for table in ("borrows", "denials"):
            [columns] = [i["column_names"] for i in found.get_indexes(table) if i["name"] == f"{table}_changed"]
            assert columns == ["changed", "rowid"], table
    finally:
        engine.dispose()


def test_a_files_changed_indexes_are_on_the_stamp_alone_as_sqlite_adds_the_rowid(tmp_path):
    db = tmp_path / "new.db"
    Store(db).close()
    conn = sqlite3.connect(db)
    try:
        found = dict(conn.execute("SELECT name, sql FROM sqlite_master WHERE name LIKE '%_changed'").fetchall())
        plan = conn.execute(
            "EXPLAIN QUERY PLAN SELECT rowid FROM borrows WHERE changed = 3 ORDER BY rowid DESC LIMIT 64"
        ).fetchall()
    finally:
        conn.close()
    assert found == {
        "borrows_changed": "CREATE INDEX borrows_changed ON borrows (changed)",
        "denials_changed": "CREATE INDEX denials_changed ON denials (changed)",
    }
    assert [row[-1] for row in plan] == ["SEARCH borrows USING COVERING INDEX borrows_changed (changed=?)"]
