"""The schema's revisions on a real PostgreSQL server, and `db copy` of a SQLite history into one."""

import sqlite3
import uuid

import psycopg
from sqlalchemy import create_engine, inspect
from sqlalchemy.dialects.postgresql import DOUBLE_PRECISION

from dash_app.licenses.pool_storage import PoolStorage
from dash_app.store import Store
from dash_app.store.history import HistoryKeeper, history_series
from dash_app.store.migrate import head
from dash_app.store.tables import IMPLICIT_IN_SQLITE, metadata, row_tables
from dash_app.testing import free_port
from tests.test_migrations import NOW, legacy_file, run_db, upgrade_at_once
from tests.test_sessions_store import dump, make_pool

PROG = "python -m dash_app db"


def new_database(postgres):
    """Return the URL of a new, empty database on the session's server (as psycopg's plain URL, as users write it)."""
    url = postgres.create_database(f"t_{uuid.uuid4().hex[:10]}")
    return url.replace("postgresql+psycopg://", "postgresql://", 1)


def rows_of(url):
    """Every table's rows, sorted, as Python values (without the row ids SQLite keeps implicitly)."""
    with psycopg.connect(url) as conn:
        found = {}
        for table in metadata.sorted_tables:
            columns = ", ".join(f'"{c.name}"' for c in table.columns if not c.info.get(IMPLICIT_IN_SQLITE))
            found[table.name] = sorted(conn.execute(f"SELECT {columns} FROM {table.name}").fetchall(), key=repr)
        return found


def test_upgrade_creates_every_table_on_postgresql_and_says_where_it_is(postgres):
    url = new_database(postgres)
    assert run_db("current", "--db", url).stdout == f"database {url}: empty; upgrade creates revision {head()}\n"
    first = run_db("upgrade", "--db", url)
    assert first.returncode == 0, first.stderr
    assert first.stdout == f"database {url}: revision {head()} (head) (was: empty; upgrade creates revision {head()})\n"
    assert run_db("upgrade", "--db", url).stdout == f"database {url}: revision {head()} (head)\n"

    engine = create_engine(url.replace("postgresql://", "postgresql+psycopg://", 1))
    try:
        found = inspect(engine)
        assert set(found.get_table_names()) == {t.name for t in metadata.sorted_tables} | {"alembic_version"}
        for table in metadata.sorted_tables:
            assert [c["name"] for c in found.get_columns(table.name)] == [c.name for c in table.columns], table.name
        # Times keep their fraction of a second: double precision, not PostgreSQL's 4-byte real.
        types = {c["name"]: c["type"] for c in found.get_columns("borrows")}
        assert isinstance(types["borrowed_at"], DOUBLE_PRECISION)
        assert {i["name"] for i in found.get_indexes("borrows")} == {
            "borrows_open",
            "borrows_returned",
            "borrows_tool",
            "borrows_changed",
        }
    finally:
        engine.dispose()


def test_several_processes_upgrade_one_database_once(postgres):
    url = new_database(postgres)
    results = upgrade_at_once(url)
    assert [code for code, _, _ in results] == [0] * 4, results
    with psycopg.connect(url) as conn:
        assert conn.execute("SELECT version_num FROM alembic_version").fetchall() == [(head(),)]


def test_a_database_from_a_newer_release_or_an_unusable_server_ends_with_one_line(postgres):
    url = new_database(postgres)
    assert run_db("upgrade", "--db", url).returncode == 0
    with psycopg.connect(url) as conn:
        conn.execute("UPDATE alembic_version SET version_num = '0099'")
    for action in ("current", "upgrade"):
        result = run_db(action, "--db", url)
        assert result.returncode == 2 and result.stdout == ""
        assert result.stderr == (
            f"{PROG}: error: database {url}: its schema revision 0099 is newer than this app's ({head()}); "
            "run the newer app, or point --db at another database\n"
        )
    with psycopg.connect(url) as conn:
        assert conn.execute("SELECT version_num FROM alembic_version").fetchall() == [("0099",)]

    # Nobody listening, a database that does not exist, an unknown role: one line each, the password never shown.
    for bad in (
        f"postgresql://dash:s3cret-pw@127.0.0.1:{free_port()}/dash",
        f"postgresql://dash:s3cret-pw@127.0.0.1:{postgres.port}/no_such_db",
        f"postgresql://nobody:s3cret-pw@127.0.0.1:{postgres.port}/dash",
    ):
        result = run_db("upgrade", "--db", bad)
        assert result.returncode == 2, result
        [line] = result.stderr.splitlines()
        assert line.startswith(f"{PROG}: error: database postgresql://") and "***" in line, line
        assert "s3cret-pw" not in result.stderr + result.stdout
    assert "only postgresql:// URLs" in run_db("current", "--db", "mysql://u:p@h/db").stderr


def test_a_database_at_revision_5_gets_row_ids_numbered_in_the_order_written(postgres):
    url = new_database(postgres)
    assert run_db("upgrade", "--db", url).returncode == 0
    with psycopg.connect(url) as conn:  # as revision 5 made it: no rowid columns
        for table in row_tables():
            conn.execute(f"ALTER TABLE {table.name} DROP COLUMN rowid")
        conn.execute("UPDATE alembic_version SET version_num = '0005'")
        for n in range(3):
            conn.execute(
                "INSERT INTO denials (ts, tool, \"user\", reason, changed) VALUES (%s, 'Tight', %s, 'queued', 1)",
                (NOW + n, f"u{n}"),
            )
    result = run_db("upgrade", "--db", url)
    assert result.returncode == 0 and result.stdout.endswith(f"(was: revision 0005; upgrade due to {head()})\n"), result
    with psycopg.connect(url) as conn:
        assert conn.execute('SELECT "user", rowid FROM denials ORDER BY ts').fetchall() == [("u0", 1), ("u1", 2), ("u2", 3)]
        conn.execute("INSERT INTO denials (ts, tool, \"user\", reason, changed) VALUES (0, 'Tight', 'later', 'queued', 2)")
        assert conn.execute("SELECT rowid FROM denials WHERE \"user\" = 'later'").fetchall() == [(4,)]


def write_history(path):
    """A site's SQLite file as the server leaves it: sessions, denials, events, charges, aggregates."""
    store = Store(path)
    HistoryKeeper(store, raw_keep_seconds=7 * 3600, history_seconds=30 * 86400, clock=lambda: NOW)
    store.start()
    try:
        pool = make_pool(store)
        kept = pool.borrow("Tight", "ann", at=NOW - 600, host="ws-1", version="2024.1")
        pool.borrow("Tight", "bob", at=NOW - 500)
        pool.borrow("Roomy", "cy", at=NOW - 400)
        pool.return_license(kept.id, at=NOW - 300)
        pool.observe_failure("Roomy", "dee", "queued", NOW - 200)
        store.run_tasks_now()  # the history keeper folds the events into minute and hour rows
    finally:
        store.stop()


def test_copy_moves_every_row_of_a_sqlite_history_and_leaves_the_file_alone(postgres, tmp_path):
    source = tmp_path / "site.db"
    write_history(source)
    before = dump(source)
    url = new_database(postgres)

    result = run_db("copy", "--from", str(source), "--to", url)
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("copied ") and f" rows of {len(metadata.sorted_tables)} tables in " in result.stdout
    assert dump(source) == before  # read, never written
    copied = rows_of(url)
    expected = {name: rows for name, rows in before.items() if name != "alembic_version"}
    # Every row but the database's number: the server's database keeps its own (a saved analysis copy is not its).
    numbers = {
        where: [r for r in rows["history_meta"] if r[0] == "database_id"]
        for where, rows in (("file", before), ("server", copied))
    }
    assert len(numbers["file"]) == len(numbers["server"]) == 1 and numbers["file"] != numbers["server"]
    for name, rows in expected.items():
        got = copied[name]
        if name == "history_meta":
            rows, got = [r for r in rows if r[0] != "database_id"], [r for r in got if r[0] != "database_id"]
        assert got == sorted((tuple(r) for r in rows), key=repr), name
    assert copied["borrows"] and copied["denials"] and copied["events"] and copied["minute_stats"]

    # Again, into the same database: refused, nothing added.
    again = run_db("copy", "--from", str(source), "--to", url)
    assert again.returncode == 2
    [line] = again.stderr.splitlines()
    assert line.startswith(f"{PROG}: error: database {url}: table ") and "has rows already" in line
    assert rows_of(url) == copied

    # The server takes the copy over where the file left it: open sessions, the history, and rows numbered on.
    store = Store(url)
    try:
        assert [row[:3] for row in PoolStorage(store).load_open_borrows()] == [
            (b[0], b[1], b[2]) for b in sorted(before["borrows"], key=lambda b: b[3]) if b[5] is None
        ]
        assert set(history_series(store, 86400, now=NOW)[1]) == {"Tight", "Roomy"}
        store.start()
        make_pool(store).observe_failure("Roomy", "late", "queued", NOW)
        assert store.flush()
        [(copied_last, new)] = store.read(
            "SELECT (SELECT MAX(rowid) FROM denials WHERE \"user\" <> 'late'), "
            "(SELECT rowid FROM denials WHERE \"user\" = 'late')"
        )
        assert new > copied_last
    finally:
        store.stop()


def test_copy_takes_a_file_of_an_earlier_release_without_upgrading_it(postgres, tmp_path):
    source = tmp_path / "v0.db"
    legacy_file(source, 0)
    before = dump(source)
    url = new_database(postgres)
    result = run_db("copy", "--from", str(source), "--to", url)
    assert result.returncode == 0, result.stderr
    assert dump(source) == before  # still version 0, for the release that wrote it
    copied = rows_of(url)
    assert [r[:4] for r in copied["borrows"]] == [("b-1", "MATLAB", "ann", NOW - 60)]
    assert [(r[1], r[2], r[3]) for r in copied["denials"]] == [("MATLAB", "bob", "exhausted")]  # made by version 1

    missing = run_db("copy", "--from", str(tmp_path / "none.db"), "--to", url)
    assert (missing.returncode, missing.stderr) == (2, f"{PROG}: error: database {tmp_path / 'none.db'}: no such file\n")
    wrong_way = run_db("copy", "--from", url, "--to", str(source))
    assert wrong_way.returncode == 2 and "--from a SQLite file --to a postgresql:// URL" in wrong_way.stderr


def test_a_database_with_tables_of_its_own_is_never_upgraded_or_copied_into(postgres, tmp_path):
    url = new_database(postgres)
    with psycopg.connect(url) as conn:
        conn.execute("CREATE TABLE events (id integer PRIMARY KEY, what text)")
        conn.execute("INSERT INTO events VALUES (1, 'theirs')")
    source = tmp_path / "site.db"
    write_history(source)
    for args in (("upgrade", "--db", url), ("copy", "--from", str(source), "--to", url)):
        result = run_db(*args)
        assert result.returncode == 2
        assert (
            result.stderr == f"{PROG}: error: database {url}: holds tables but no revision of this app; give an empty database\n"
        )
    with psycopg.connect(url) as conn:
        names = {n for (n,) in conn.execute("SELECT tablename FROM pg_tables WHERE schemaname = 'public'")}
        assert names == {"events"} and conn.execute("SELECT * FROM events").fetchall() == [(1, "theirs")]


def test_copy_of_a_file_upgraded_by_hand_before_the_server_filled_its_in_use_columns(postgres, tmp_path):
    source = tmp_path / "v3.db"
    legacy_file(source, 3)
    minute = int((NOW - 3600) // 60)
    conn = sqlite3.connect(source, isolation_level=None)
    conn.execute("INSERT INTO minute_stats VALUES ('MATLAB', ?, 2, 0, '[\"ann\"]', 1, '{}')", (minute,))
    conn.close()
    assert run_db("upgrade", "--db", str(source)).returncode == 0  # at the head revision, without those columns yet
    url = new_database(postgres)
    result = run_db("copy", "--from", str(source), "--to", url)
    assert result.returncode == 0, result.stderr
    [row] = rows_of(url)["minute_stats"]
    assert row[:7] == ("MATLAB", minute, 2, 0, '["ann"]', 1, "{}")
    assert isinstance(row[7], int) and isinstance(row[9], int)  # peak and level_end: estimated, never a column name


def test_copy_into_a_database_of_a_newer_release_ends_with_one_line(postgres, tmp_path):
    url = new_database(postgres)
    assert run_db("upgrade", "--db", url).returncode == 0
    with psycopg.connect(url) as conn:
        conn.execute("UPDATE alembic_version SET version_num = '0099'")
    source = tmp_path / "site.db"
    write_history(source)
    result = run_db("copy", "--from", str(source), "--to", url)
    assert result.returncode == 2
    [line] = result.stderr.splitlines()
    assert line.startswith(f"{PROG}: error: database {url}: its schema revision 0099 is newer")
