"""Benchmark the Capacity view as a person sees it: a real server over 30 days × 200 tools × 1,000,000 sessions, in
headless Chromium, from navigation to the grid's rows and from a row click to that tool's charts.

The history is `dash_app.testing.synthetic.synthetic_history` ending now, put into a SQLite file by `store_history`;
the server is gunicorn started with the Procfile's line (no demo traffic, the estate's 200-tool inventory). Each code
version is measured on three fresh starts of the server:
- right at the first start: the first page asked for is /capacity?window=2592000, so the analysis process starts then
  and reads the history while the browser waits;
- right at a restart: the same on a second start at the same address, whose analysis process loads the copy of the
  history the first one saved beside the file (analytics/mirror_file.py) and reads only what changed since; the
  browser opened the view twice more before the restart (untimed), so its cache is warm as an administrator's is;
- after the start-up read: the overview is opened first and an API query of another period waits for the analysis
  process's read; then /capacity?window=2592000 (the first 30-day query), a row click, /capacity (the default 7 days)
  and a row click there, and /capacity?window=2592000 again.
A row click in the minute after the page's report was built finds that report cached; one after the minute turned
asks for a new period (windows end at the start of the current minute), which is timed too. Times are the page's own:
from the navigation's start (or the mouse press on a row) to the first animation frame that shows the grid's rows (or
that tool's title, advice and duration curve), as the person sees them.

The baseline is today's code path: the same measurements against a server running the code of `--baseline` (a git
revision, `git archive`d into a temporary directory), in the same run, over a copy of the same file.

`--restarts N` times only the restart row: N restarts per version, the versions alternating (one run of the whole
moves by a few tenths either way). `--postgres` puts the same history into a real PostgreSQL server (Debian's, on a
free loopback port; each version's own `db copy` from the file, into a database of its own) and serves it from
there, the analysis copy kept in a temporary `--analysis-dir`.

Run: python benchmarks/bench_capacity_view.py [--sessions N] [--denials N] [--baseline main] [--no-baseline]
     [--restarts N] [--postgres]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import signal
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import requests
from selenium import webdriver
from selenium.webdriver.chrome.options import Options
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import WebDriverWait

from dash_app.store import Store
from dash_app.testing import ROOT, TEST_TOKEN, PostgresServer, estate_inventory, free_port, procfile_command
from dash_app.testing.synthetic import store_history, synthetic_history

CHROMIUM = os.environ.get("DASH_TEST_CHROMEPATH", "/usr/bin/chromium")
MONTH = "/capacity?window=2592000"
WEEK = "/capacity"
TARGET_GRID, TARGET_CLICK = 1.5, 1.0
SAVED_COPY = "-analysis.npz"  # dash_app.analytics.runners.SAVED_COPY_SUFFIX, named here so a baseline needs none

# When the biggest callback response (the grid's rows and the figures) had arrived, in the page's clock.
DATA_JS = """
const updates = performance.getEntriesByType('resource').filter(e => e.name.includes('_dash-update-component'));
return updates.reduce((a, b) => (b.transferSize > a.transferSize ? b : a)).responseEnd;
"""
ROW_IDS_JS = """
return [...document.querySelectorAll('#capacity-table .ag-center-cols-container .ag-row')]
  .sort((a, b) => Number(a.getAttribute('row-index')) - Number(b.getAttribute('row-index')))
  .map(row => row.getAttribute('row-id'));
"""
# Marks, in the page's own clock, the first animation frame that shows what is waited for: the browser draws it then,
# while a WebDriver script may wait behind the page's other work (charts being drawn) for a second more.
MARKS_JS = """
window.__marks = {};
const rows = () => document.querySelectorAll('#capacity-table .ag-center-cols-container .ag-row').length > 0;
const charts = tool => {
  const title = document.getElementById('capacity-tool-title');
  const advice = document.getElementById('capacity-advice');
  const gd = document.querySelector('#capacity-duration .js-plotly-plot');
  return !!title && title.textContent === tool && !!advice && advice.textContent.length > 0
    && !!gd && !!gd.data && gd.data.length > 0;
};
const tick = () => {
  const m = window.__marks;
  if (m.rows === undefined && rows()) m.rows = performance.now();
  if (m.tool !== undefined && m.drawn === undefined && charts(m.tool)) m.drawn = performance.now();
  requestAnimationFrame(tick);
};
requestAnimationFrame(tick);
document.addEventListener('mousedown', event => {
  const row = event.target.closest('#capacity-table .ag-row');
  if (row) Object.assign(window.__marks, {tool: row.getAttribute('row-id'), clicked: performance.now(), drawn: undefined});
}, true);
"""
# When the biggest callback response (the grid's rows and the figures) had arrived, in the page's clock.
DATA_JS = """
const updates = performance.getEntriesByType('resource').filter(e => e.name.includes('_dash-update-component'));
return updates.reduce((a, b) => (b.transferSize > a.transferSize ? b : a)).responseEnd;
"""
ROW_IDS_JS = """
return [...document.querySelectorAll('#capacity-table .ag-center-cols-container .ag-row')]
  .sort((a, b) => Number(a.getAttribute('row-index')) - Number(b.getAttribute('row-index')))
  .map(row => row.getAttribute('row-id'));
"""


class Server:
    """gunicorn with the Procfile's line, run from the code at `root`, over the database `db` (a file or a URL)."""

    def __init__(self, root: Path, db: str, tools_file: Path, log: Path, port: int | None = None) -> None:
        self.port = port or free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        env = {k: v for k, v in os.environ.items() if not k.startswith("DASH_APP_")}
        env.update(
            {
                "PORT": str(self.port),
                "DASH_APP_DB": db,
                "DASH_APP_ANALYSIS_DIR": str(log.parent / "analysis"),  # where a server's history is copied to
                "DASH_APP_TOOLS": str(tools_file),
                "DASH_APP_HISTORY_DAYS": "31",
                "DASH_APP_API_TOKEN": TEST_TOKEN,
                "DASH_APP_DEMO": "0",
                "PYTHONPATH": str(root),
            }
        )
        self._log = open(log, "a")
        self.process = subprocess.Popen(
            ["bash", "-c", "exec " + procfile_command()],
            cwd=root,
            env=env,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise SystemExit(f"bench_capacity_view: the server exited; see {log}")
            try:
                if requests.get(self.url + "/healthz", timeout=1).status_code == 200:
                    return
            except requests.RequestException:
                pass
            time.sleep(0.1)
        self.stop()
        raise SystemExit(f"bench_capacity_view: the server did not start; see {log}")

    def stop(self) -> None:
        """End the server's process group (gunicorn, its worker and the analysis process)."""
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait()
        self._log.close()


def browser() -> webdriver.Chrome:
    """Return headless Chromium at 1920 × 1080 that marks, in every page, when the grid and a tool's charts show."""
    options = Options()
    options.binary_location = CHROMIUM
    for argument in ("--headless=new", "--no-sandbox", "--disable-gpu", "--window-size=1920,1080"):
        options.add_argument(argument)
    driver = webdriver.Chrome(options=options)
    driver.execute_cdp_cmd("Page.addScriptToEvaluateOnNewDocument", {"source": MARKS_JS})
    return driver


def mark(driver: webdriver.Chrome, name: str, timeout: float = 180) -> float:
    """Wait until the page has set the mark `name`; return it (milliseconds of the page's clock)."""
    script = f"return window.__marks && window.__marks.{name}"
    value: float = WebDriverWait(driver, timeout, poll_frequency=0.05).until(lambda d: d.execute_script(script))
    return value


def navigate(driver: webdriver.Chrome, url: str) -> tuple[float, float]:
    """Open `url`; return the seconds from the navigation's start until the grid shows rows, and until its data came."""
    driver.get("about:blank")
    driver.get(url)
    rows = mark(driver, "rows") / 1000
    return rows, driver.execute_script(DATA_JS) / 1000


def visit(driver: webdriver.Chrome, out: dict[str, float], name: str, url: str) -> None:
    """Time the navigation to `url` into out[name], and when its data came into the row after it."""
    out[name], out[f"  its data came ({name})"] = navigate(driver, url)


def click_row(driver: webdriver.Chrome, nth: int) -> float:
    """Click the grid's `nth` shown row and return the seconds until that tool's charts are drawn."""
    shown = driver.execute_script(ROW_IDS_JS)
    tool = shown[nth % len(shown)]
    driver.find_element(By.CSS_SELECTOR, f'#capacity-table .ag-center-cols-container .ag-row[row-id="{tool}"] .ag-cell').click()
    return (mark(driver, "drawn") - driver.execute_script("return window.__marks.clicked")) / 1000


def next_minute() -> None:
    """Wait until a new minute has just begun (so the next query asks for a period not built yet)."""
    time.sleep(60.5 - time.time() % 60)


def saved_copies(db: str, log: Path) -> list[Path]:
    """Return the analysis copies saved of `db`: beside a file, or in the servers' --analysis-dir for a URL."""
    if "://" in db:
        return sorted((log.parent / "analysis").glob("*" + SAVED_COPY))
    return [Path(db + SAVED_COPY)]


def measure(root: Path, db: str, tools_file: Path, log: Path) -> dict[str, float]:
    """Return every timing of one code version (see the module's docstring)."""
    out: dict[str, float] = {}
    driver = browser()
    try:
        for saved in saved_copies(db, log):
            saved.unlink(missing_ok=True)
        server = Server(root, db, tools_file, log)
        port = server.port
        try:
            visit(driver, out, "30 days, right at the first start", server.url + MONTH)
            out["  row click, right at the first start"] = click_row(driver, 0)
            for _ in range(2):  # untimed: the browser's cache of this origin warm, as an administrator's is
                navigate(driver, server.url + MONTH)
        finally:
            server.stop()
        if any(saved.exists() for saved in saved_copies(db, log)):  # by the first start's process (a baseline may keep none)
            server = Server(root, db, tools_file, log, port)  # the same origin: its cache, as after a real restart
            try:
                visit(driver, out, "30 days, right at a restart", server.url + MONTH)
                out["  row click, right at a restart"] = click_row(driver, 4)
            finally:
                server.stop()
        server = Server(root, db, tools_file, log)
        try:
            driver.get(server.url + "/")
            started = time.perf_counter()
            query = requests.get(
                server.url + "/analytics/capacity",
                params={"window": "3600"},
                headers={"Authorization": f"Bearer {TEST_TOKEN}"},
                timeout=300,
            )
            query.raise_for_status()
            out["(start-up read: first 1 h query after the page)"] = time.perf_counter() - started
            next_minute()
            visit(driver, out, "30 days, first query after the read", server.url + MONTH)
            out["  row click, same minute"] = click_row(driver, 1)
            visit(driver, out, "7 days (default), first query", server.url + WEEK)
            out["  row click in the 7 days, same minute"] = click_row(driver, 2)
            next_minute()
            out["  row click in the 7 days, after the minute turned"] = click_row(driver, 3)
            visit(driver, out, "30 days, the next minute", server.url + MONTH)
            visit(driver, out, "30 days again (cached)", server.url + MONTH)
        finally:
            server.stop()
    finally:
        driver.quit()
    return out


def restarts(versions: dict[str, tuple[Path, str]], tools_file: Path, log: Path, count: int) -> None:
    """Print the 30-day view's time right at a restart, `count` restarts per code version, the versions alternating."""
    driver = browser()
    ports = {name: free_port() for name in versions}
    shown: dict[str, list[float]] = {name: [] for name in versions}
    came: dict[str, list[float]] = {name: [] for name in versions}
    try:
        for name, (root, db) in versions.items():  # a first start each: its saved copy written, the browser's cache warm
            server = Server(root, db, tools_file, log, ports[name])
            try:
                for _ in range(3):
                    navigate(driver, server.url + MONTH)
            finally:
                server.stop()
        for turn in range(count):
            order = list(versions) if turn % 2 == 0 else list(reversed(versions))
            for name in order:
                server = Server(*versions[name], tools_file, log, ports[name])
                try:
                    rows, data = navigate(driver, server.url + MONTH)
                finally:
                    server.stop()
                shown[name].append(rows)
                came[name].append(data)
    finally:
        driver.quit()
    print(f"\n30 days, right at a restart ({count} restarts each, alternating; target <= {TARGET_GRID} s)")
    for name in versions:
        times = " ".join(f"{value:.2f}" for value in sorted(shown[name]))
        print(
            f"{name:<22} median {statistics.median(shown[name]):.2f} s   {times}   "
            f"its data came: median {statistics.median(came[name]):.2f} s"
        )


def export(revision: str, into: Path) -> Path:
    """Return a directory holding the code of git `revision` (git archive), for the baseline's server."""
    into.mkdir(parents=True)
    archive = subprocess.run(["git", "archive", revision], cwd=ROOT, check=True, capture_output=True).stdout
    subprocess.run(["tar", "-x", "-C", str(into)], input=archive, check=True)
    return into


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--sessions", type=int, default=1_000_000, help="sessions (default 1,000,000)")
    parser.add_argument("--denials", type=int, default=50_000, help="denials (default 50,000)")
    parser.add_argument("--baseline", default="main", help="git revision of today's code (default main)")
    parser.add_argument("--no-baseline", action="store_true", help="measure this checkout only")
    parser.add_argument("--restarts", type=int, default=0, help="time only the restart row, N restarts per version")
    parser.add_argument("--postgres", action="store_true", help="serve the history from a real PostgreSQL server")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="bench-capacity-view-") as tmp:
        work = Path(tmp)
        inventory = estate_inventory(200)
        tools_file = work / "tools.json"
        tools_file.write_text(json.dumps(inventory))
        end = float(int(time.time() // 60) * 60)
        started = time.perf_counter()
        history = synthetic_history(days=30, tools=200, sessions=args.sessions, denials=args.denials, seed=1, end=end)
        file = work / "capacity.db"
        store = Store(str(file))
        store_history(store, history)
        store.close()
        print(
            f"history: {len(history.sessions):,} sessions, {len(history.denials):,} denials, 200 tools, 30 days "
            f"ending now (generated and stored in {time.perf_counter() - started:.0f} s)"
        )
        versions = {"ours": (ROOT, str(file))}
        if not args.no_baseline:
            root = export(args.baseline, work / "baseline")
            versions[f"baseline ({args.baseline})"] = (root, baseline_file(file, root))
        with PostgresServer() if args.postgres else contextlib.nullcontext() as postgres:
            if postgres is not None:
                for n, (name, (root, db)) in enumerate(versions.items()):
                    url = postgres.create_database(f"capacity_{n}")
                    print(f"PostgreSQL for {name}: {copy_into(root, db, url)}")
                    versions[name] = (root, url)
            run(args, work, versions, tools_file)
    sys.stdout.flush()


def baseline_file(file: Path, root: Path) -> str:
    """Return a copy of the history `file` at the newest schema revision the code at `root` knows.

    This code's revisions after the baseline's must leave a SQLite file as it was (revision 10 does), so the copy is the
    same file, marked with the baseline's head revision (Alembic's, and SQLite's user_version that mirrors it); a
    baseline refuses a file of a newer revision.
    """
    head = max(p.name.split("_")[0] for p in (root / "dash_app/store/migrations/versions").glob("0*_*.py"))
    copy = file.with_name(f"baseline-{file.name}")
    with sqlite3.connect(file) as source, sqlite3.connect(copy) as target:
        source.backup(target)
        target.execute("UPDATE alembic_version SET version_num = ?", (head,))
        target.execute(f"PRAGMA user_version = {int(head)}")
    return str(copy)


def copy_into(root: Path, file: str, url: str) -> str:
    """Copy the SQLite history `file` into the empty database `url` with `db copy` of the code at `root`."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("DASH_APP_")} | {"PYTHONPATH": str(root)}
    command = [sys.executable, "-m", "dash_app", "db", "copy", "--from", file, "--to", url]
    done = subprocess.run(command, cwd=root, env=env, capture_output=True, text=True, check=False)
    if done.returncode:
        raise SystemExit(f"bench_capacity_view: db copy failed: {done.stderr.strip()}")
    return done.stdout.strip()


def run(args: argparse.Namespace, work: Path, versions: dict[str, tuple[Path, str]], tools_file: Path) -> None:
    """Measure each version over its database, and print the table (or the restart series)."""
    if args.restarts:
        restarts(versions, tools_file, work / "server.log", args.restarts)
        return
    results = {}
    for name, (root, db) in versions.items():
        results[name] = measure(root, db, tools_file, work / "server.log")
    print(f"\n{'':<50}" + "".join(f"{name:>20}" for name in results))
    rows = list(dict.fromkeys(row for r in results.values() for row in r))
    for row in rows:
        target = TARGET_CLICK if "click" in row else None if row.startswith(("(", " ")) else TARGET_GRID
        cells = "".join(f"{r.get(row, float('nan')):>19.2f}s" for r in results.values())
        print(f"{row:<50}{cells}" + (f"   (target <= {target} s)" if target else ""))


if __name__ == "__main__":
    main()
