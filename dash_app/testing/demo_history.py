"""`python -m dash_app demo-history`: write weeks of made-up sessions and denials, to see the Capacity view at once.

The history is `synthetic.inventory_history` over the tools file's tools, ending now; sessions still running then
are returned then, so a server started on the database begins with an empty pool. It goes into the database in one
transaction, through the store (its schema, revisions and writer statements), and only into one without sessions or
denials unless `--replace` says to delete them. Problems end with one line and exit status 2, having written nothing.
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
import time

from sqlalchemy import Connection, func, select

from dash_app import config as config_module
from dash_app.licenses import InventoryError, load_inventory
from dash_app.store import Store, StoreError
from dash_app.store import tables as t

PROG = "python -m dash_app demo-history"
MAX_DAYS = 366
# Sized so the average session lasts 80 minutes and a tool holds about half its total over a working day;
# 200 tools of an estate (3,648 licenses) make a million sessions a month, as a real estate does.
SESSIONS_PER_LICENSE_DAY = 9
DENIALS_PER_SESSION = 0.05
MAX_SESSIONS = 10_000_000  # about 3 GB while generated; more is no demo


def _whole(low: int, high: int | None = None) -> type:
    """Return an argparse type accepting whole numbers from `low` (to `high`), with a message naming the range."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
        if value < low or (high is not None and value > high):
            bound = f"from {low} to {high}" if high is not None else f"at least {low}"
            raise argparse.ArgumentTypeError(f"must be {bound}, got {value}")
        return value

    return parse  # type: ignore[return-value]


def build_parser() -> config_module.OneLineParser:
    """Return the parser of the demo-history command; --db and --tools mean what they mean to the server."""
    parser = config_module.OneLineParser(
        prog=PROG,
        description="Write a made-up history of license sessions and denials, ending now, into the dashboard's database, "
        "so the Capacity view has weeks to show at once. For demonstrations and trials: never into a real site's database.",
    )
    parser.add_argument("--days", type=_whole(1, MAX_DAYS), default=30, help="days of history, ending now (default 30)")
    parser.add_argument(
        "--tools",
        dest="tools_file",
        default=None,
        metavar="FILE",
        help="JSON inventory of tools (default: the bundled one) [DASH_APP_TOOLS]",
    )
    parser.add_argument(
        "--db", dest="db", default=None, help="SQLite path or postgresql:// URL (default: dash_app.db) [DASH_APP_DB]"
    )
    parser.add_argument(
        "--seed", type=_whole(0), default=1, help="random seed: the same seed, tools and days give the same history (default 1)"
    )
    parser.add_argument("--replace", action="store_true", help="delete the sessions and denials the database holds first")
    return parser


def held(conn: Connection) -> tuple[int, int]:
    """Return how many sessions and denials the database on `conn` holds."""
    return (
        int(conn.execute(select(func.count()).select_from(t.borrows)).scalar_one()),
        int(conn.execute(select(func.count()).select_from(t.denials)).scalar_one()),
    )


def main(argv: list[str] | None = None) -> int:
    """Run the command; return its exit status."""
    args = build_parser().parse_args(argv)
    began = time.perf_counter()
    try:
        config = config_module.from_args(args)
        if config.db == ":memory:":
            raise StoreError("database :memory: keeps nothing: give --db a file or a URL")
        inventory = [dataclasses.asdict(spec) for spec in load_inventory(config.tools_file).values()]
        licenses = sum(tool["total"] for tool in inventory)
        sessions = SESSIONS_PER_LICENSE_DAY * licenses * args.days
        if sessions == 0:
            raise InventoryError(f"tools file {config.tools_file or 'bundled'}: no tool has a license to check out")
        if sessions > MAX_SESSIONS:
            raise InventoryError(
                f"{args.days} days of {licenses:,} licenses make {sessions:,} sessions, over {MAX_SESSIONS:,}: give fewer --days"
            )
        store = Store(config.db)
    except (config_module.ConfigError, InventoryError, StoreError) as exc:
        print(f"{PROG}: error: {exc}", file=sys.stderr)
        return 2
    try:
        with store.snapshot() as conn:
            found = held(conn)
        if any(found) and not args.replace:
            raise StoreError(_refusal(store.name, found))
        from dash_app.testing.synthetic import inventory_history, write_history

        history = inventory_history(
            inventory, args.days, sessions, int(sessions * DENIALS_PER_SESSION), args.seed, float(int(time.time()))
        )
        # Sessions still running now end now: nobody would ever return them in the live pool.
        history.sessions["returned_at"] = history.sessions["returned_at"].fillna(history.end)
        with store.writing() as conn:
            found = held(conn)  # again, under the write lock: another process may have written since
            if any(found) and not args.replace:
                raise StoreError(_refusal(store.name, found))
            if any(found):
                _delete_history(store, conn)
            write_history(store, conn, history)
        store.sessions_changed()
    except StoreError as exc:
        print(f"{PROG}: error: {exc}", file=sys.stderr)
        return 2
    finally:
        store.close()
    print(
        f"{args.days} days of {len(inventory)} tools: {len(history.sessions):,} sessions and {len(history.denials):,} denials "
        f"written to {store.name} in {time.perf_counter() - began:.1f} s"
        + (f", replacing {found[0]:,} sessions and {found[1]:,} denials" if any(found) else "")
    )
    if args.days > config.history_days:
        print(f"the server keeps {config.history_days:g} days: start it with --history-days {args.days} to keep them all")
    return 0


def _refusal(name: str, found: tuple[int, int]) -> str:
    return (
        f"database {name} already holds {found[0]:,} sessions and {found[1]:,} denials; "
        "give a new --db, or --replace to delete them first"
    )


def _delete_history(store: Store, conn: Connection) -> None:
    """Delete every session and denial on `conn`, telling copies of the tables (analytics.mirror) to read them afresh."""
    conn.execute(t.borrows.delete())
    conn.execute(t.denials.delete())
    conn.execute(t.pruned_rows.delete())
    # A copy older than this stamp can no longer be brought up to date by the prunes' log: it reads every row again.
    forgotten = store.new_stamp(conn)
    conn.execute(
        t.history_meta.update().where(t.history_meta.c.key == t.PRUNED_ROWS_COMPLETE_AFTER).values(value=float(forgotten))
    )
