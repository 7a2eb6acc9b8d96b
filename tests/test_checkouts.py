"""Who holds a license: host and version of open checkouts, from the REST API and FlexLM logs, kept across a restart."""

from dash_app.state import get_state
from dash_app.testing import TEST_TOKEN
from tests.test_flexlm_follow import LIC01_LINES, follow, write

AUTH = {"Authorization": f"Bearer {TEST_TOKEN}"}
GH = "GreenHills Multi IDE"


def test_a_borrow_with_host_and_version_shows_them_and_a_restart_keeps_them(make_app, tmp_path):
    db = str(tmp_path / "dash.db")
    app = make_app(db=db)
    client = app.server.test_client()
    body = {"tool": GH, "user": "ann", "host": "ws-17.lab", "version": "2024.1"}
    granted = client.post("/licenses/borrow", json=body, headers=AUTH).get_json()
    assert (granted["host"], granted["version"]) == ("ws-17.lab", "2024.1")
    plain = client.post("/licenses/borrow", json={"tool": GH, "user": "bob"}, headers=AUTH).get_json()
    assert (plain["host"], plain["version"]) == (None, None)
    state = get_state(app)
    state.store.flush()
    state.stop()

    restarted = get_state(make_app(db=db))
    held = {b.user: (b.host, b.version) for b in restarted.pool.active_borrows(tool=GH)}
    assert held == {"ann": ("ws-17.lab", "2024.1"), "bob": (None, None)}
    # A returned borrow is no longer held, but its session keeps its host and version (until pruned).
    restarted.pool.return_license(granted["id"])
    restarted.store.flush()
    assert [b.user for b in restarted.pool.active_borrows(tool=GH)] == ["bob"]
    assert restarted.store.read("SELECT host, version, returned_at IS NOT NULL FROM borrows WHERE id = ?", (granted["id"],)) == [
        ("ws-17.lab", "2024.1", 1)
    ]


def test_a_bad_host_or_version_is_refused_naming_the_field_and_changes_nothing(make_app):
    app = make_app()
    client = app.server.test_client()
    for field in ("host", "version"):
        response = client.post("/licenses/borrow", json={"tool": GH, "user": "ann", field: "\ud800"}, headers=AUTH)
        assert response.status_code == 400
        assert response.get_json()["detail"].startswith(f"{field}: ")
        response = client.post("/licenses/borrow", json={"tool": GH, "user": "ann", field: 7}, headers=AUTH)
        assert response.status_code == 400 and response.get_json()["detail"].startswith(f"{field}: ")
    assert get_state(app).pool.active_borrows() == []


def test_a_flexlm_checkout_shows_the_host_from_its_log_line(make_app, tmp_path):
    path = tmp_path / "lmgrd.log"
    write(path, LIC01_LINES, mode="wb")
    _app, state, _follower = follow(make_app, [path])
    hosts = {(b.user, b.host) for b in state.pool.active_borrows()}
    assert hosts and all(host for _, host in hosts)
    # Each host is the one after the user's @ in an OUT line of the log.
    text = b"\n".join(LIC01_LINES).decode()
    assert all(f"{user}@{host}" in text for user, host in hosts)
