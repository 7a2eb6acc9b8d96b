"""The estate API: /analytics/capacity's pressure columns and totals, /analytics/recommendations and /analytics/users,
and the service's estate heatmap and one user, over an in-memory store fed through the pool."""

import csv
import io
import time
from datetime import UTC, datetime

import pytest

from dash_app import privacy
from dash_app.auth.viewer import FULL
from dash_app.licenses.pool import BorrowDenied
from dash_app.state import get_state
from tests.test_privacy_routes import NONE, PSEUDO, READER_HEADER, read_as

GH, CAN = "GreenHills Multi IDE", "CAN Bus Analyzer Pro"  # 15 (commit 10, 8,000) and 10 (commit 10, 2,000)
HOUR = 3600
INVENTORY_COMMIT_PRICES = 5000 + 5000 + 8000 + 4000 + 2000 + 6000  # the bundled tools file's six tools
INVENTORY_TOTALS = 20 + 20 + 15 + 12 + 10 + 18


def iso(epoch):
    return datetime.fromtimestamp(epoch, UTC).isoformat().replace("+00:00", "Z")


@pytest.fixture(scope="module")
def estate():
    """Two hours: CAN full (10 of 10) throughout, ann denied at 60, 90 and 3600 s and bob at 100 s; 3 of GH for an hour."""
    from dash_app import create_app
    from dash_app.testing import TEST_TOKEN

    app = create_app({"demo": False, "db": ":memory:", "api_token": TEST_TOKEN})
    read_as(app)
    state = get_state(app)
    start = (time.time() // HOUR - 5) * HOUR
    held = [state.pool.borrow(CAN, f"u{n}", at=start) for n in range(10)]
    gh = [state.pool.borrow(GH, f"gh{n}", at=start) for n in range(3)]
    for user, offset in (("ann", 60), ("ann", 90), ("bob", 100)):
        with pytest.raises(BorrowDenied):
            state.pool.borrow(CAN, user, at=start + offset)
    for borrow in gh:
        state.pool.return_license(borrow.id, at=start + HOUR)
    with pytest.raises(BorrowDenied):
        state.pool.borrow(CAN, "ann", at=start + HOUR)
    for borrow in held:
        state.pool.return_license(borrow.id, at=start + 2 * HOUR)
    state.pool.observe_queue(GH, 0, 2)
    state.store.flush()
    yield app.server.test_client(), state, start
    state.stop()


def query(start, extra=""):
    return f"from={iso(start)}&to={iso(start + 2 * HOUR)}{extra}"


def test_capacity_has_true_denials_pressure_and_totals(estate):
    client, _state, start = estate
    body = client.get(f"/analytics/capacity?{query(start)}").get_json()
    tools = body["tools"]
    assert [row["pressure_rank"] for row in tools] == list(range(1, len(tools) + 1))
    can, gh = tools[0], tools[1]  # CAN: at its total all the time; GH: 2 requests queued now
    assert (can["tool"], can["denials"], can["true_denials"], can["share_at_total"], can["peak_share"]) == (CAN, 4, 3, 1.0, 1.0)
    assert (gh["tool"], gh["queued"], gh["true_denials"], gh["share_at_total"], gh["peak_share"]) == (GH, 2, 0, 0.0, 0.2)
    assert body["totals"] == {
        "borrows": 13,
        "overage_borrows": 0,
        "overage_cost": 0.0,
        "commit_cost": round(INVENTORY_COMMIT_PRICES * 2 * HOUR / (30 * 86400), 2),
        "denials": 4,
        "true_denials": 3,
        "license_hours": pytest.approx(10 * 2 + 3 * 1),
    }
    rows = list(csv.DictReader(io.StringIO(client.get(f"/analytics/capacity?{query(start)}&format=csv").get_data(as_text=True))))
    assert rows[0]["tool"] == CAN and (rows[0]["true_denials"], rows[0]["pressure_rank"], rows[0]["queued"]) == ("3", "1", "0")
    assert rows[0].keys() >= {"share_at_total", "peak_share"}


def test_recommendations_buy_for_the_full_pool_and_drop_the_idle_ones(estate):
    client, _state, start = estate
    body = client.get(f"/analytics/recommendations?{query(start)}").get_json()
    assert (body["from"], body["to"]) == (iso(start), iso(start + 2 * HOUR))
    first = body["tools"][0]
    # Each of the 3 true denials wants a 2-hour session (the median): from 3600 s on, 13 are wanted of 10.
    assert (first["tool"], first["action"], first["licenses"], first["denials_served"]) == (CAN, "buy", 3, 3)
    gh = next(entry for entry in body["tools"] if entry["tool"] == GH)
    advice = client.get(f"/analytics/commit-advice?{query(start)}&tool={GH}").get_json()["tools"][0]
    assert advice["best_commit"] < 10
    assert (gh["action"], gh["licenses"], gh["saving"]) == ("drop", 15 - 3 - 1, advice["saving"])
    assert body["totals"]["licenses_to_buy"] == 3
    assert body["totals"]["licenses_to_drop"] == sum(e["licenses"] for e in body["tools"] if e["action"] == "drop")
    assert body["totals"]["saving"] == round(sum(e["saving"] for e in body["tools"]), 2)
    text = client.get(f"/analytics/recommendations?{query(start)}&format=csv").get_data(as_text=True)
    rows = list(csv.DictReader(io.StringIO(text)))
    assert list(rows[0]) == ["tool", "action", "licenses", "reason", "saving", "denials_served"]
    assert (rows[0]["tool"], rows[0]["action"], rows[0]["licenses"]) == (CAN, "buy", "3")
    only = client.get(f"/analytics/recommendations?{query(start)}&tool={CAN}").get_json()
    assert [entry["tool"] for entry in only["tools"]] == [CAN]


def test_users_by_license_hours_with_their_tools(estate):
    client, _state, start = estate
    body = client.get(f"/analytics/users?{query(start)}&limit=3").get_json()
    assert [entry["user"] for entry in body["users"]] == ["u0", "u1", "u2"]
    assert body["users"][0] == {
        "user": "u0",
        "license_hours": pytest.approx(2.0),
        "tools": [{"tool": CAN, "license_hours": pytest.approx(2.0)}],
        "denials": 0,
        "true_denials": 0,
        "overage_borrows": 0,
    }
    everyone = client.get(f"/analytics/users?{query(start)}").get_json()["users"]
    ann = next(entry for entry in everyone if entry["user"] == "ann")
    assert (ann["license_hours"], ann["tools"], ann["denials"], ann["true_denials"]) == (0.0, [], 3, 2)
    assert [entry["user"] for entry in everyone][-2:] == ["ann", "bob"]  # no hours: last, by name
    text = client.get(f"/analytics/users?{query(start)}&format=csv&limit=1").get_data(as_text=True)
    (row,) = csv.DictReader(io.StringIO(text))
    assert (row["user"], row["denials"]) == ("u0", "0") and CAN in row["tools"]


@pytest.mark.parametrize(
    "reader, shown",
    [("admin", "u0"), ("analyst", "u0"), ("pseudonym", PSEUDO.user("u0")), ("hidden", None)],
)
def test_users_follow_the_readers_privacy(estate, reader, shown):
    client, _state, start = estate
    response = client.get(f"/analytics/users?{query(start)}&limit=1", headers={READER_HEADER: reader})
    assert response.status_code == 200
    (entry,) = response.get_json()["users"]
    assert entry["user"] == shown and entry["license_hours"] == pytest.approx(2.0)
    text = client.get(f"/analytics/users?{query(start)}&limit=50&format=csv", headers={READER_HEADER: reader}).get_data()
    assert (b"u0," in text) == (reader in ("admin", "analyst")) and (b"ann" in text) == (reader in ("admin", "analyst"))


@pytest.mark.parametrize(
    "route, params, field",
    [
        ("users", "limit=0", "limit"),
        ("users", "limit=1001", "limit"),
        ("users", "limit=ten", "limit"),
        ("users", "limit=%EF%BC%95", "limit"),  # a fullwidth 5
        ("users", "window=10", "window"),
        ("recommendations", "window=abc", "window"),
        ("recommendations", "from=2026-11-01T00:00:00", "from"),
        ("recommendations", "format=xml", "format"),
        ("users", "from=2026-11-02T00:00:00Z&to=2026-11-01T00:00:00Z", "from"),
        ("users", "tool=", "tool"),
    ],
)
def test_bad_queries_are_refused_naming_the_field(estate, route, params, field):
    client, _state, _start = estate
    response = client.get(f"/analytics/{route}?{params}")
    assert response.status_code == 400
    assert response.get_json()["detail"].startswith(f"{field}: ")


def test_the_estate_heatmap_and_one_user_through_the_service(estate):
    _client, state, start = estate
    service = state.analytics
    heat = service.estate(start, start + 2 * HOUR, "UTC")
    moment = datetime.fromtimestamp(start, UTC)
    first = heat["utilization"][moment.weekday()][moment.hour]
    assert first == pytest.approx((10 + 3) / INVENTORY_TOTALS)
    assert heat["at_total"][moment.weekday()][moment.hour] == pytest.approx(1 / 6)  # CAN of the six tools
    assert service.estate(start, start + 2 * HOUR, "UTC") is heat  # cached
    ann = service.user("ann", start, start + 2 * HOUR)
    assert ann == {
        "user": "ann",
        "license_hours": 0,
        "denials": 3,
        "true_denials": 2,
        "overage_borrows": 0,
        "tools": [{"tool": CAN, "license_hours": 0.0, "denials": 3, "true_denials": 2, "overage_borrows": 0}],
    }
    assert privacy.estate_user(ann, PSEUDO)["user"] == PSEUDO.user("ann") and privacy.estate_user(ann, NONE)["user"] is None
    assert privacy.estate_user(ann, FULL) is ann and ann["user"] == "ann"  # the cached answer is never changed
    gh0 = service.user("gh0", start, start + 2 * HOUR)
    assert gh0["license_hours"] == pytest.approx(1.0) and gh0["tools"][0]["tool"] == GH
    assert service.users(start, start + 2 * HOUR, limit=2)["users"][1]["user"] == "u1"


def test_the_jobs_run_in_the_analysis_process_of_a_database_file(make_app, tmp_path):
    from dash_app.analytics.runners import AnalysisProcess

    app = make_app(db=str(tmp_path / "estate.db"), true_denial_minutes=1)
    state = get_state(app)
    start = (time.time() // HOUR - 3) * HOUR
    held = [state.pool.borrow(CAN, f"u{n}", at=start) for n in range(10)]
    for offset in (10, 70):  # a minute apart: two true denials with --true-denial-minutes 1
        with pytest.raises(BorrowDenied):
            state.pool.borrow(CAN, "ann", at=start + offset)
    for borrow in held:
        state.pool.return_license(borrow.id, at=start + HOUR)
    state.store.flush()
    assert isinstance(state.analytics.runner, AnalysisProcess)
    client = app.server.test_client()
    period = f"from={iso(start)}&to={iso(start + HOUR)}"
    capacity = client.get(f"/analytics/capacity?{period}").get_json()
    assert capacity["tools"][0]["tool"] == CAN and capacity["totals"]["true_denials"] == 2
    first = client.get(f"/analytics/recommendations?{period}").get_json()["tools"][0]
    assert (first["tool"], first["action"], first["licenses"], first["denials_served"]) == (CAN, "buy", 2, 2)
    assert client.get(f"/analytics/users?{period}&limit=1").get_json()["users"][0]["user"] == "u0"
    assert state.analytics.user("ann", start, start + HOUR)["true_denials"] == 2
    assert state.analytics.estate(start, start + HOUR, "UTC")["at_total"][datetime.fromtimestamp(start, UTC).weekday()][
        datetime.fromtimestamp(start, UTC).hour
    ] == pytest.approx(1 / 6)
