"""`python -m dash_app ingest-flexlm PATH...`: read FlexNet debug logs into the database once, then exit."""

import argparse
import logging
import os
import sys
import time
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, TextIO

from tqdm import tqdm
from tqdm.contrib.logging import logging_redirect_tqdm

from dash_app import build_state
from dash_app import config as config_module
from dash_app.eventlog.setup import SharedLogError
from dash_app.licenses import InventoryError
from dash_app.sources.flexlm.ingest import COUNTERS, LogIngest, source_id
from dash_app.sources.flexlm.tailing import LogTail
from dash_app.store import StoreError
from dash_app.store.checkpoints import Checkpoints

if TYPE_CHECKING:
    from dash_app.licenses.pool import LicensePool
    from dash_app.store.database import Store

PROG = "python -m dash_app ingest-flexlm"
FLUSH_TIMEOUT = 600


def build_parser() -> argparse.ArgumentParser:
    """Return the parser of the ingest-flexlm command; the dashboard's flags (--db, --tools, ...) apply too."""
    parser = config_module.OneLineParser(
        prog=PROG,
        description="Read FlexNet (FlexLM) debug logs into the dashboard's database once, then exit. "
        "Lines already read (by an earlier run or the live follower) are skipped.",
    )
    parser.add_argument(
        "paths", nargs="+", metavar="PATH", help="debug log; give rotated copies oldest first (lmgrd.log.2 lmgrd.log.1 lmgrd.log)"
    )
    config_module.add_arguments(parser)
    return parser


def path_problem(path: str) -> str | None:
    """Return why `path` cannot be read as a log, or None."""
    if not os.path.exists(path):
        return "no such file"
    if os.path.isdir(path):
        return "is a directory"
    if not os.path.isfile(path):
        return "not a regular file"
    if not os.access(path, os.R_OK):
        return "permission denied"
    return None


def summary_line(counts: Mapping[str, int], seconds: float) -> str:
    """Return one line with the counters of an ingest."""
    return (
        f"{counts['lines']:,} lines: {counts['borrows']:,} borrows, {counts['returns']:,} returns, "
        f"{counts['denials']:,} denials, {counts['queued']:,} queued, {counts['dequeued']:,} dequeued, "
        f"{counts['ended_by_restart']:,} ended by a daemon restart, {counts['malformed']:,} malformed "
        f"({seconds:.1f} s)"
    )


def backfill(
    paths: Sequence[str], pool: "LicensePool", store: "Store", out: TextIO = sys.stdout, err: TextIO = sys.stderr
) -> dict[str, int]:
    """Ingest `paths` in order into `pool`; rotated copies of one log share their open borrows. Return the totals."""
    checkpoints = Checkpoints(store)
    streams: dict[str, LogIngest] = {}  # by source: rotated copies of one log share it
    totals = dict.fromkeys(COUNTERS, 0)
    for path in paths:
        source = source_id(path)
        ingest = streams.get(source)
        if ingest is None:
            ingest = streams[source] = LogIngest(pool, source, name=path)
        before = dict(ingest.counts)
        tail = LogTail(path, ingest, checkpoints, store)
        if not tail.open():
            raise OSError(f"{path}: {tail.state}")
        began = time.perf_counter()
        if tail.offset:
            print(f"{path}: resuming after line {ingest.line:,} (byte {tail.offset:,})", file=out)
        bar = tqdm(
            total=max(tail.size - tail.offset, 0),
            unit="B",
            unit_scale=True,
            unit_divisor=1024,
            desc=os.path.basename(path),
            file=err,
        )
        with bar, logging_redirect_tqdm():  # warnings about bad lines print above the bar, not through it
            tail.read_available(progress=bar.update)
        tail.settle()
        store.flush(timeout=FLUSH_TIMEOUT)
        tail.close()
        delta = {name: ingest.counts[name] - before[name] for name in ingest.counts}
        print(f"{path}: {summary_line(delta, time.perf_counter() - began)}", file=out)
        if tail.waiting_line:
            print(f"{path}: the last line has no newline yet; it is left for the live follower", file=out)
        totals = {name: totals[name] + delta[name] for name in totals}
    totals["open_borrows"] = sum(ingest.open_borrows for ingest in streams.values())
    return totals


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command; a bad path or setting ends with one line on stderr and exit status 2."""
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    for path in args.paths:
        problem = path_problem(path)
        if problem is not None:
            print(f"{PROG}: error: {path}: {problem}", file=sys.stderr)
            return 2
    try:
        config = config_module.from_args(args)
        # The server's data path (pool, recorder, buffer, store, history), without the page, demo or followers.
        # A one-off read of old logs: no live sources, and no alerts about what those logs held long ago.
        config = config.replace(
            demo=False, flexlm_logs=(), lmstat_servers=(), rlmstat_servers=(), lmx_servers=(), dsls_servers=(), alerts_file=None
        )
        # With --redis the lines go through the shared log, so running servers see them at once, unfenced: the fence
        # keeps a live follower that lost the lease from writing, and this is a one-off read (its lines count once).
        state = build_state(config, lead=False)
        state.start()
    except (config_module.ConfigError, InventoryError, StoreError, SharedLogError) as exc:
        print(f"{PROG}: error: {exc}", file=sys.stderr)
        return 2
    began = time.perf_counter()
    try:
        totals = backfill(args.paths, state.pool, state.store)
    except KeyboardInterrupt:
        print(f"{PROG}: interrupted; the lines read so far are kept, a new run goes on from there", file=sys.stderr)
        return 130
    except OSError as exc:
        print(f"{PROG}: error: {exc}", file=sys.stderr)
        return 1
    finally:
        flushed = state.store.flush(timeout=FLUSH_TIMEOUT)
        if state.shared is not None:
            # This process writes the log to the store (a running lease holder may have written it first).
            flushed = state.shared.wait_persisted(state.store, FLUSH_TIMEOUT) and flushed
        state.stop()
    seconds = time.perf_counter() - began
    if not flushed or not state.store.persisted:
        print(f"{PROG}: error: not everything was written to {state.store.name}: {state.store.last_error}", file=sys.stderr)
        return 1
    rate = totals["lines"] / seconds if seconds > 0 else 0.0
    print(
        f"total: {summary_line(totals, seconds)}; {rate:,.0f} lines/s; "
        f"{totals['open_borrows']:,} licenses still checked out; written to {state.store.name}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
