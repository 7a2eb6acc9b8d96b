"""`python -m dash_app demo-history`: made-up weeks of sessions the server then shows, and bad arguments refused."""

import json
import re
import time
from datetime import UTC, datetime

import pytest

from dash_app.__main__ import main
from dash_app.licenses import load_inventory
from dash_app.licenses.pool_storage import PoolStorage
from dash_app.state import get_state

DAY = 86400
ERROR = re.compile(r"python -m dash_app demo-history: error: [^\n]+\n")


def iso(epoch):
    return datetime.fromtimestamp(epoch, UTC).isoformat().replace("+00:00", "Z")


def run(capsys, *args):
    """Run the command in this process; return (status, stdout, stderr)."""
    try:
        status = main(["demo-history", *args])
    except SystemExit as exc:  # argparse's errors
        status = exc.code
    out, err = capsys.readouterr()
    return status, out, err


def sessions_written(out):
    return int(re.search(r"([\d,]+) sessions", out).group(1).replace(",", ""))


def test_the_server_shows_the_days_written(make_app, database, capsys):
    before = time.time()
    status, out, err = run(capsys, "--days", "3", "--db", database, "--seed", "4")
    assert (status, err) == (0, "")
    written = sessions_written(out)
    assert written > 1000 and "written to " in out

    app = make_app(db=database)
    assert PoolStorage(get_state(app).store).load_open_borrows() == []  # every session ended by now: the pool starts empty
    client = app.server.test_client()
    now = time.time()
    body = client.get(f"/analytics/capacity?from={iso(now - 3 * DAY - 60)}&to={iso(now)}").get_json()
    tools = {entry["tool"]: entry for entry in body["tools"]}
    inventory = load_inventory()
    assert set(tools) == set(inventory)
    for name, entry in tools.items():
        assert entry["borrows"] > 0 and entry["distinct_users"] > 0
        assert 0 < entry["peak_in_use"] <= inventory[name].total  # the pool's limit held
    # Every session started in those three days, but the few held from before them.
    assert 0.97 * written <= sum(entry["borrows"] for entry in tools.values()) <= written
    assert sum(entry["denials"] for entry in tools.values()) > 0
    earlier = client.get(f"/analytics/capacity?from={iso(before - 6 * DAY)}&to={iso(before - 3 * DAY - 4 * 3600)}").get_json()
    assert sum(entry["borrows"] + entry["denials"] for entry in earlier["tools"]) == 0


def test_a_database_with_history_is_left_alone_unless_replaced(tmp_path, capsys):
    db = str(tmp_path / "site.db")
    assert run(capsys, "--days", "2", "--db", db)[0] == 0
    first = (tmp_path / "site.db").read_bytes()

    status, out, err = run(capsys, "--days", "2", "--db", db, "--seed", "9")
    assert status == 2 and out == "" and ERROR.fullmatch(err)
    assert "already holds" in err and "--replace" in err
    assert (tmp_path / "site.db").read_bytes() == first

    status, out, err = run(capsys, "--days", "1", "--db", db, "--replace")
    assert status == 0 and err == "" and "replacing" in out
    status, out, _ = run(capsys, "--days", "1", "--db", db, "--replace")
    assert f"replacing {sessions_written(out):,} sessions" in out  # only the last run's sessions were there


@pytest.mark.parametrize(
    "args",
    [
        ["--days", "0"],
        ["--days", "367"],
        ["--days", "two"],
        ["--seed", "-1"],
        ["--tools", "missing.json"],
        ["--tools", "empty.json"],
        ["--db", ":memory:"],
        ["--db", "no-such-folder/x.db"],
        ["--bogus"],
    ],
)
def test_bad_arguments_end_with_one_line(tmp_path, monkeypatch, capsys, args):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "empty.json").write_text(
        json.dumps(
            [{"tool": "T", "total": 0, "commit_qty": 0, "max_overage": 0, "commit_price": 0, "overage_price_per_license": 0}]
        )
    )
    with_db = args if "--db" in args else [*args, "--db", "out.db"]
    status, out, err = run(capsys, *with_db)
    assert status == 2 and out == "" and ERROR.fullmatch(err), err
    assert not (tmp_path / "out.db").exists()
