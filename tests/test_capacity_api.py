"""The capacity and commit-advice API: figures of a period from the stored sessions and denials, and bad queries."""

import csv
import io
import time
from datetime import UTC, datetime

import pytest

from dash_app.state import get_state

GH = "GreenHills Multi IDE"  # total 15, commit 10, commit price 8,000, overage 800 per borrow (the bundled tools file)
HOUR = 3600


def iso(epoch):
    return datetime.fromtimestamp(epoch, UTC).isoformat().replace("+00:00", "Z")


@pytest.fixture
def fed(make_app, database):
    """An app whose store holds two hours of GreenHills sessions: 12 licenses for an hour, 3 of them an hour more."""
    app = make_app(db=database)
    state = get_state(app)
    start = (time.time() // HOUR - 5) * HOUR
    held = [state.pool.borrow(GH, f"user{n}", at=start + n) for n in range(12)]
    for borrow in held[3:]:
        state.pool.return_license(borrow.id, at=start + HOUR)
    for borrow in held[:3]:
        state.pool.return_license(borrow.id, at=start + 2 * HOUR)
    for _ in range(2):
        try:
            state.pool.borrow("No Such Tool", "eve", at=start + 10)
        except Exception:
            pass
    state.store.flush()
    return app.server.test_client(), start


def test_capacity_of_a_period_follows_the_definitions(fed):
    client, start = fed
    body = client.get(f"/analytics/capacity?from={iso(start)}&to={iso(start + 2 * HOUR)}&tool={GH}").get_json()
    assert (body["from"], body["to"]) == (iso(start), iso(start + 2 * HOUR))
    (entry,) = body["tools"]
    assert entry["tool"] == GH and (entry["total"], entry["commit"]) == (15, 10)
    assert entry["peak_in_use"] == 12 and entry["borrows"] == 12 and entry["overage_borrows"] == 2
    assert entry["overage_cost"] == 1600
    # 12 held for (nearly) the first hour, 3 for the second: an average of 7.5, less the staggered first seconds.
    assert 7.49 < entry["avg_in_use"] <= 7.5
    # At most 3 were held for the second hour and the first 3 seconds: just over half the time.
    assert entry["coverage"] == {"p50": 3, "p90": 12, "p95": 12, "p99": 12, "p100": 12}
    assert entry["distinct_users"] == 12 and entry["top_users"][0]["license_hours"] == pytest.approx(2, abs=0.01)
    assert HOUR - 20 < entry["seconds_at_or_above_commit"] <= HOUR and entry["seconds_at_total"] == 0


def test_commit_advice_finds_the_cheapest_commit(fed):
    client, start = fed
    body = client.get(f"/analytics/commit-advice?from={iso(start)}&to={iso(start + 2 * HOUR)}&tool={GH}").get_json()
    assert body["billing_days"] == 30
    (advice,) = body["tools"]
    curve = {point["commit"]: point["cost"] for point in advice["curve"]}
    assert sorted(curve) == list(range(16))
    # Two hours of a 30-day commit price is small against 800 per overage borrow: committing all 12 is cheapest.
    per_license = 8000 / 10 * 2 * HOUR / (30 * 86400)
    assert curve[12] == pytest.approx(12 * per_license, abs=0.01)
    assert curve[10] == pytest.approx(10 * per_license + 2 * 800, abs=0.01)
    assert advice["best_commit"] == 12 and advice["saving"] == pytest.approx(curve[10] - curve[12], abs=0.01)


def test_csv_and_the_default_window(fed):
    client, _ = fed
    response = client.get("/analytics/capacity?format=csv")
    assert response.status_code == 200 and response.content_type.startswith("text/csv")
    rows = list(csv.DictReader(io.StringIO(response.get_data(as_text=True))))
    assert GH in {row["tool"] for row in rows} and rows[0].keys() >= {"tool", "peak_in_use", "p95", "best_commit"}
    body = client.get("/analytics/capacity").get_json()
    start = datetime.fromisoformat(body["from"].replace("Z", "+00:00")).timestamp()
    end = datetime.fromisoformat(body["to"].replace("Z", "+00:00")).timestamp()
    assert end - start == 7 * 86400


@pytest.mark.parametrize(
    "query, field",
    [
        ("window=abc", "window"),
        ("window=10", "window"),
        ("window=99999999", "window"),
        ("from=2026-11-01T00:00:00", "from"),
        ("from=yesterday", "from"),
        ("to=2026-13-01T00:00:00Z", "to"),
        ("from=2026-11-02T00:00:00Z&to=2026-11-01T00:00:00Z", "from"),
        ("format=xml", "format"),
    ],
)
def test_bad_queries_are_refused_naming_the_field(fed, query, field):
    client, _ = fed
    for route in ("/analytics/capacity", "/analytics/commit-advice"):
        response = client.get(f"{route}?{query}")
        assert response.status_code == 400, (route, query)
        assert response.get_json()["detail"].startswith(f"{field}: ")


def test_a_to_in_the_future_is_clipped_to_now(fed):
    client, _ = fed
    body = client.get(f"/analytics/capacity?from={iso(time.time() - HOUR)}&to={iso(time.time() + 86400)}").get_json()
    assert datetime.fromisoformat(body["to"].replace("Z", "+00:00")).timestamp() <= time.time()


def test_a_report_is_built_once_per_version_of_the_data_and_reused_briefly_under_live_traffic(make_app, tmp_path):
    from dash_app.analytics.service import REUSE_SECONDS
    from dash_app.testing import FakeClock

    app = make_app(db=str(tmp_path / "cache.db"))
    state = get_state(app)
    service = state.analytics
    service.clock = clock = FakeClock(time.time())
    period = (clock.now - 86400, clock.now)
    first = service.report(*period)
    assert service.report(*period) is first  # nothing changed: the same report
    state.pool.borrow(GH, "ann")
    state.store.flush()
    assert service.report(*period) is first  # the data moved, but the report is younger than REUSE_SECONDS
    clock.advance(REUSE_SECONDS + 1)
    again = service.report(*period)
    assert again is not first
    assert service.report(*period) is again


def test_analyses_run_in_a_process_of_their_own_which_comes_back_when_it_dies(fed, tmp_path):
    """The process keeps its copy where the config says (beside a file; a server's in --analysis-dir)."""
    import os
    import signal

    from dash_app.analytics.runners import AnalysisProcess
    from dash_app.analytics.saved_copies import saved_copy_path

    client, start = fed
    app_state = client.application.extensions["dash_app"]
    runner = app_state.analytics.runner
    assert isinstance(runner, AnalysisProcess)
    query = f"/analytics/capacity?from={iso(start)}&to={iso(start + 3 * HOUR)}&tool={GH}"
    first = client.get(query).get_json()
    assert runner.pid is not None and runner.pid != os.getpid()
    saved = saved_copy_path(runner.path, str(tmp_path / "analysis"))  # make_app's --analysis-dir
    assert saved is not None and runner.saved_copy == saved
    deadline = time.monotonic() + 30  # saved once idle after its whole read
    while not os.path.exists(saved) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert os.path.exists(saved)
    os.kill(runner.pid, signal.SIGKILL)
    runner._process.join()  # dead for sure before the next query
    app_state.analytics.clock = lambda: time.time() + 3600  # past the reuse time: the next query must compute
    app_state.store.sessions_changed()  # and the data's version moves
    again = client.get(query)
    assert again.status_code == 200
    assert again.get_json()["tools"] == first["tools"]
    assert runner.restarts == 1


def test_billing_days_come_from_the_flag_or_the_environment_and_change_the_advice(make_app, tmp_path):
    import argparse

    from dash_app.config import ConfigError, add_arguments, from_args

    parser = add_arguments(argparse.ArgumentParser())
    assert from_args(parser.parse_args([]), environ={}).billing_days == 30
    assert from_args(parser.parse_args(["--billing-days", "7"]), environ={}).billing_days == 7
    assert from_args(parser.parse_args([]), environ={"DASH_APP_BILLING_DAYS": "365"}).billing_days == 365
    with pytest.raises(ConfigError, match="--billing-days: must be at least 1"):
        from_args(parser.parse_args(["--billing-days", "0"]), environ={})
    app = make_app(db=":memory:", billing_days=7)
    body = app.server.test_client().get(f"/analytics/commit-advice?tool={GH}").get_json()
    assert body["billing_days"] == 7
    [entry] = body["tools"]
    # One committed license for a week: 8,000 / 10 per 7-day billing period.
    assert entry["curve"][1]["cost"] - entry["curve"][0]["cost"] == pytest.approx(800.0)
