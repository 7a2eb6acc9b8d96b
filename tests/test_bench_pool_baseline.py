"""The pool benchmark's baseline writes what it is given: a baseline that writes nothing would measure nothing."""

import importlib.util
import sqlite3

from dash_app.buffer import RealtimeMetricsBuffer
from dash_app.licenses import LicensePool, load_inventory
from dash_app.recording import EventRecorder
from dash_app.testing import ROOT


def load_bench_pool():
    spec = importlib.util.spec_from_file_location("bench_pool", ROOT / "benchmarks" / "bench_pool.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_commit_per_event_baseline_stores_every_event_it_is_given(tmp_path):
    bench = load_bench_pool()
    baseline = bench.CommitPerEventStore(str(tmp_path / "baseline.db"))
    pool = LicensePool(load_inventory(), EventRecorder(RealtimeMetricsBuffer(), listeners=[baseline]))
    for n in range(3):
        pool.return_license(pool.borrow(bench.TOOL, f"u{n}").id)
    rows = sqlite3.connect(tmp_path / "baseline.db").execute("SELECT kind, user FROM events ORDER BY rowid").fetchall()
    assert rows == [(kind, f"u{n}") for n in range(3) for kind in ("borrow", "return")]
