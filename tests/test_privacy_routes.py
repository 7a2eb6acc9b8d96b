"""Who may look: every read route shows people's names, hosts and borrow ids as its reader may see them.

The auth guard sets `flask.g.viewer` per request; here a before_request of the test's own does, from a header, so each
route is read by an admin and an analyst (real names), a viewer with pseudonyms, and a viewer without names.
"""

import json
import time
import zlib
from datetime import UTC, datetime
from urllib.parse import quote

import orjson
import pytest
from flask import g, request

from dash_app.alerts.engine import Alert
from dash_app.alerts.rules import HELD_LONGER_THAN
from dash_app.auth.viewer import ADMIN, ANALYST, FULL, HIDDEN, PSEUDONYM, VIEWER, Names, Viewer
from dash_app.state import get_state
from dash_app.stream import sse
from dash_app.stream.snapshot import Variant
from dash_app.testing import TEST_TOKEN
from tests.test_stream_ticker import parse_events

AUTH = {"Authorization": f"Bearer {TEST_TOKEN}"}
GH, CAN = "GreenHills Multi IDE", "CAN Bus Analyzer Pro"
ALICE, HOST, OTHER = "alice.realname", "ws-secret-host", "bob.othername"
LOG_NAME = "secret-license-server.log"
KEY = b"k" * 16
PSEUDO, NONE = Names(PSEUDONYM, key=KEY), Names(HIDDEN, key=KEY)
READERS = {
    "admin": Viewer("root", ADMIN, FULL),
    "analyst": Viewer("ann", ANALYST, FULL),
    "pseudonym": Viewer("vic", VIEWER, PSEUDO),
    "hidden": Viewer("hid", VIEWER, NONE),
}
REAL_READERS, NAMELESS_READERS = ("admin", "analyst"), ("pseudonym", "hidden")
READER_HEADER = "X-Test-Reader"
RULES = {
    "notify": [],
    "rules": [
        {"name": "held", "kind": "held_longer_than", "tool": "*", "seconds": 3600},
        {"name": "down", "kind": "source_down"},
        {"name": "busy", "kind": "in_use_percent", "tool": CAN, "above": 5},
    ],
}


def read_as(app):
    """Make each request's reader the one its X-Test-Reader header names (none: the app's own default)."""

    @app.server.before_request
    def set_viewer():
        name = request.headers.get(READER_HEADER)
        if name:
            g.viewer = READERS[name]


def make_estate(make_app, tmp_path):
    """Return (app, state, facts) with alice's borrows, a return, a denial, alerts firing and history stored."""
    rules = tmp_path / "alerts.json"
    rules.write_text(json.dumps(RULES))
    app = make_app(
        db=str(tmp_path / "licenses.db"),
        alerts_file=str(rules),
        flexlm_logs=(str(tmp_path / LOG_NAME),),  # never written: the source is down
        stream_interval=3600,  # the ticker ticks at start; the test ticks it after that
    )
    read_as(app)
    state = get_state(app)
    client = app.server.test_client()
    kept = borrow(client, GH, ALICE, HOST, version="2024.1")
    gone = borrow(client, CAN, ALICE, HOST)
    assert client.post("/licenses/return", json={"id": gone}, headers=AUTH).status_code == 200
    denied = client.post("/licenses/borrow", json={"tool": "No Such Tool", "user": ALICE, "host": HOST}, headers=AUTH)
    assert denied.status_code == 404
    other = borrow(client, CAN, OTHER, "ws-other-host")
    # Two hours on: alice's and bob's checkouts are held past the rule's hour.
    state.alerts.on_tick(time.time() + 7200, state.pool.status(), True)
    state.store.flush()
    with state.store._conn_lock:  # fold the events into the stored minutes now, not on the writer's next round
        state.history.aggregate()
    return app, state, {"kept": kept, "gone": gone, "other": other}


def borrow(client, tool, user, host, version=None):
    body = {"tool": tool, "user": user, "host": host, **({"version": version} if version else {})}
    response = client.post("/licenses/borrow", json=body, headers=AUTH)
    assert response.status_code == 200, response.get_data(as_text=True)
    return response.get_json()["id"]


def found(value, key):
    """Return every value held under `key` anywhere in a JSON value."""
    out = []
    if isinstance(value, dict):
        for k, v in value.items():
            if k == key:
                out.append(v)
            out.extend(found(v, key))
    elif isinstance(value, list):
        for v in value:
            out.extend(found(v, key))
    return out


def iso(epoch):
    return datetime.fromtimestamp(epoch, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def routes(state):
    """The read routes, by a short name; all return 200 to admins."""
    now = time.time()
    beyond = int(state.buffer.retention_seconds) + 3600  # past the buffer: read from the stored minutes
    return {
        "stats": "/realtime/stats?window=600",
        "events.csv": "/realtime/export?kind=events&format=csv&window=600",
        "events.json": "/realtime/export?kind=events&format=json&window=600",
        "buckets.csv": "/realtime/export?kind=buckets&format=csv&window=600",
        "buckets.json": "/realtime/export?kind=buckets&format=json&window=600",
        "history.csv": f"/realtime/export?kind=buckets&format=csv&window={beyond}",
        "history.json": f"/realtime/export?kind=buckets&format=json&window={beyond}",
        "borrows": "/borrows",
        "borrows.real": "/borrows?user=" + quote(ALICE),
        "capacity": f"/analytics/capacity?from={iso(now - 3600)}&to={iso(now + 60)}",
        "alerts": "/alerts",
        "sources": "/sources",
        "flexlm": "/sources/flexlm",
    }


def read_all(client, state, reader):
    """Return {route name: response} of every read route, read by `reader`."""
    return {name: client.get(path, headers={READER_HEADER: reader}) for name, path in routes(state).items()}


@pytest.fixture
def estate(make_app, tmp_path):
    return make_estate(make_app, tmp_path)


def test_real_names_readers_see_names_and_only_admins_see_sources(estate):
    app, state, ids = estate
    client = app.server.test_client()
    for reader in REAL_READERS:
        got = read_all(client, state, reader)
        admin = reader == "admin"
        for name, response in got.items():
            if name == "flexlm" and not admin:
                assert response.status_code == 403
                assert response.get_json()["error"] == "forbidden" and response.get_json()["detail"]
                continue
            assert response.status_code == 200, (reader, name, response.get_data(as_text=True))
            raw = response.get_data()
            if name not in ("sources", "flexlm"):
                assert ALICE.encode() in raw, (reader, name)
            if name in ("stats", "events.csv", "events.json", "borrows", "borrows.real"):
                assert HOST.encode() in raw and ids["kept"].encode() in raw, (reader, name)
            assert (LOG_NAME.encode() in raw) == (admin and name in ("sources", "flexlm", "alerts")), (reader, name)

        borrows = got["borrows.real"].get_json()
        assert [(b["id"], b["user"], b["host"]) for b in borrows] == [(ids["kept"], ALICE, HOST)]
        capacity = got["capacity"].get_json()
        assert ALICE in [top["user"] for entry in capacity["tools"] for top in entry["top_users"]]

        alerts = got["alerts"].get_json()
        assert ("deliveries" in alerts) is admin
        held = next(a for a in alerts["firing"] if a["key"] == f"held|{ids['kept']}")
        assert held["message"].startswith(f"{GH}: {ALICE} has held a license for 2.0 h (limit 1 h; {ids['kept']})")
        down = next(a for a in alerts["firing"] if a["rule"] == "down")
        if admin:
            assert LOG_NAME in down["message"] and LOG_NAME in down["key"] and LOG_NAME in down["tool"]
        else:
            assert (down["message"], down["tool"]) == ("a flexlm source is down", None)
            assert LOG_NAME not in down["key"] and down["key"].startswith("down|")
        busy = next(a for a in alerts["firing"] if a["rule"] == "busy")
        assert (busy["key"], busy["tool"]) == (f"busy|{CAN}", CAN)  # alerts about tools name no one: as they are

        sources = got["sources"].get_json()["sources"]
        assert {"kind": "flexlm", "state": "down"} in [{k: s[k] for k in ("kind", "state")} for s in sources]
        if admin:
            assert any(s["name"].endswith(LOG_NAME) for s in sources)
        else:
            # The kind, the state and since when, and an error in brief (none here: the log is not there yet).
            assert all(set(s) == {"kind", "state", "down_since", "error"} for s in sources)
            assert all(s["error"] is None for s in sources)


@pytest.mark.parametrize("reader", NAMELESS_READERS)
def test_viewers_never_see_real_names_hosts_or_borrow_ids(estate, reader):
    app, state, ids = estate
    client = app.server.test_client()
    names = READERS[reader].names
    pseudonym = PSEUDO.user(ALICE)
    got = read_all(client, state, reader)
    secrets = [ALICE, HOST, "ws-other-host", OTHER, LOG_NAME, *ids.values()]
    for name, response in got.items():
        raw = response.get_data()
        for secret in secrets:
            assert secret.encode() not in raw, (reader, name, secret)
        if reader == "hidden":
            assert b"user-" not in raw, (name, raw[:300])
        if name == "flexlm":
            assert response.status_code == 403 and response.get_json()["error"] == "forbidden"
            continue
        assert response.status_code == 200, (name, response.get_data(as_text=True))
        if name.endswith(".csv"):
            continue
        body = response.get_json()
        users = [u for u in found(body, "user") if u is not None] + [u for us in found(body, "users") for u in us]
        if reader == "hidden":
            assert users == [], name
        elif name in ("stats", "events.json", "buckets.json", "history.json", "borrows", "capacity"):
            assert pseudonym in users and set(users) <= {pseudonym, PSEUDO.user(OTHER)}, name

    # CSV: the pseudonym where the name was (hidden: an empty cell, an empty list).
    events_csv = got["events.csv"].get_data(as_text=True)
    buckets_csv = got["buckets.csv"].get_data(as_text=True)
    if reader == "pseudonym":
        assert pseudonym in events_csv and json.dumps([pseudonym]) in buckets_csv.replace('""', '"')
    else:
        assert ',"[]"\n' in buckets_csv or ",[]\n" in buckets_csv
    history = got["history.json"].get_json()
    assert {row["tool"] for row in history} >= {GH, CAN}

    # Events: user, host and id as shown; the version and the source (not anyone's name) stay.
    events = got["events.json"].get_json()
    borrowed = next(e for e in events if e["type"] == "borrow" and e["tool"] == GH)
    assert (borrowed["user"], borrowed["host"], borrowed["id"]) == (names.user(ALICE), None, names.borrow_id(ids["kept"]))
    assert (borrowed["version"], borrowed["source"]) == ("2024.1", "pool")
    returned = next(e for e in events if e["type"] == "return")
    assert (returned["user"], returned["id"]) == (names.user(ALICE), names.borrow_id(ids["gone"]))
    failed = next(e for e in events if e["type"] == "failure")
    assert (failed["user"], failed["reason"]) == (names.user(ALICE), "unknown_tool")

    # /borrows: the user filter matches what the reader sees, so a real name finds nothing.
    assert got["borrows.real"].get_json() == []
    by_pseudonym = client.get("/borrows?user=" + pseudonym, headers={READER_HEADER: reader}).get_json()
    if reader == "pseudonym":
        assert [(b["id"], b["user"], b["host"], b["version"]) for b in by_pseudonym] == [
            (names.borrow_id(ids["kept"]), pseudonym, None, "2024.1")
        ]
    else:
        assert by_pseudonym == []
    assert len(got["borrows"].get_json()) == 2

    # Capacity: a hidden top user stays, with user null, so its hours still show.
    tops = [top for entry in got["capacity"].get_json()["tools"] if entry["tool"] == GH for top in entry["top_users"]]
    assert [top["user"] for top in tops] == [names.user(ALICE)] and tops[0]["license_hours"] > 0

    # Alerts: said again with the names as this reader sees them; source details and deliveries left out.
    alerts = got["alerts"].get_json()
    assert set(alerts) == {"firing", "recent"}
    held = next(a for a in alerts["firing"] if a["key"] == f"held|{names.borrow_id(ids['kept'])}")
    who = pseudonym if reader == "pseudonym" else "a user"
    assert held["message"] == f"{GH}: {who} has held a license for 2.0 h (limit 1 h; {names.borrow_id(ids['kept'])})"
    assert held["tool"] == GH
    down = next(a for a in alerts["firing"] if a["rule"] == "down")
    assert (down["message"], down["tool"]) == ("a flexlm source is down", None)
    sources = got["sources"].get_json()["sources"]
    assert all(set(s) == {"kind", "state", "down_since", "error"} for s in sources)


def test_alerts_read_back_from_the_store_are_said_again_or_hidden(make_app, tmp_path):
    app, state, ids = make_estate(make_app, tmp_path)
    state.stop()
    # A restart: the held alerts come back from SQLite with their messages as plain text, no user kept apart.
    again = make_app(db=str(tmp_path / "licenses.db"), alerts_file=str(tmp_path / "alerts.json"), stream_interval=3600)
    read_as(again)
    client = again.server.test_client()
    key = f"held|{ids['kept']}"
    stored = next(a for a in client.get("/alerts", headers={READER_HEADER: "admin"}).get_json()["recent"] if a["key"] == key)
    assert stored["message"] == f"{GH}: {ALICE} has held a license for 2.0 h (limit 1 h; {ids['kept']})"
    for reader in NAMELESS_READERS:
        names = READERS[reader].names
        raw = client.get("/alerts", headers={READER_HEADER: reader}).get_data()
        assert ALICE.encode() not in raw and ids["kept"].encode() not in raw
        body = json.loads(raw)
        held = next(a for a in body["recent"] if a["key"] == f"held|{names.borrow_id(ids['kept'])}")
        who = PSEUDO.user(ALICE) if reader == "pseudonym" else "a user"
        assert held["message"] == f"{GH}: {who} has held a license for 2.0 h (limit 1 h; {names.borrow_id(ids['kept'])})"

    # A text that is not what the template makes of its alert cannot be said again: it is hidden.
    poll_id = f"lmstat|27000@srv|{ALICE}@{HOST}"
    odd = Alert(f"held|{poll_id}", "held", GH, GH, "firing", 0.0, 7200.0, 3600.0, f"{GH}: {ALICE} held {poll_id} a while")
    assert odd.as_dict(READERS["pseudonym"], HELD_LONGER_THAN)["message"] is None
    assert odd.as_dict(READERS["analyst"], HELD_LONGER_THAN)["message"] == odd.message
    # A rule gone from the rules file: its subject and message may name anything, so only readers of everything see them.
    gone = odd.as_dict(READERS["analyst"], None)
    assert (gone["message"], gone["tool"]) == (None, None) and HOST not in gone["key"]
    assert odd.as_dict(READERS["admin"], None) == odd.as_dict()


# ------------------------------------------------------------------ stream


class Stream:
    """One client of /realtime/stream through Flask's client, read one chunk at a time."""

    def __init__(self, client, reader, query="", gzip=False):
        headers = {READER_HEADER: reader} if reader else {}
        headers["Accept-Encoding"] = "gzip" if gzip else "identity"
        self.response = client.get("/realtime/stream" + query, headers=headers, buffered=False)
        assert self.response.status_code == 200
        assert self.response.headers.get("Content-Encoding") == ("gzip" if gzip else None)
        self.chunks = iter(self.response.response)
        self.inflate = zlib.decompressobj(16 + zlib.MAX_WBITS) if gzip else None
        self.frames = []  # the raw (inflated) bytes of each message

    def next_message(self, tick_id=None):
        """Return (id, data) of the next message (of tick `tick_id`, skipping others, when given)."""
        while True:
            chunk = next(self.chunks)
            raw = self.inflate.decompress(chunk) if self.inflate else chunk
            raw = raw.removeprefix(sse.RETRY)
            messages = parse_events(raw)
            if not messages:
                continue  # a keep-alive
            self.frames.append(raw)
            if tick_id is None or messages[-1][0] == tick_id:
                return messages[-1]

    def close(self):
        self.response.close()


def test_the_stream_shows_each_reader_its_names_and_serializes_each_mode_once(estate):
    app, state, ids = estate
    client = app.server.test_client()
    ticker = state.stream
    ticker.tick()
    latest = ticker._history[-1]
    pseudonym = PSEUDO.user(ALICE)
    streams = {
        "admin": Stream(client, "admin"),
        "analyst": Stream(client, "analyst"),
        "default": Stream(client, None),  # no reader set: the app's default (everything)
        "pseudonym": Stream(client, "pseudonym"),
        "pseudonym.gzip": Stream(client, "pseudonym", gzip=True),
        "hidden": Stream(client, "hidden"),
        "admin.delta": Stream(client, "admin", "?delta=1"),
        "pseudonym.delta": Stream(client, "pseudonym", "?delta=1"),
        "hidden.delta": Stream(client, "hidden", "?delta=1"),
    }
    try:
        # One channel per (variant, names mode): the real-name readers share theirs.
        assert ticker.stats()["variants"] == 6
        first = {name: stream.next_message() for name, stream in streams.items()}
        assert {message_id for message_id, _ in first.values()} == {latest.id}

        # Real names: the very frame a stream without names would send.
        plain = sse.event(latest.id, Variant().full_message(latest))
        for name in ("admin", "analyst", "default"):
            assert streams[name].frames[0] == plain, name
        assert ALICE.encode() in plain and HOST.encode() in plain and ids["kept"].encode() in plain
        assert streams["admin.delta"].frames[0] == plain  # a delta client's first message is the full one

        # Other modes: other frames, each without the real names, hosts and ids.
        frames = {name: streams[name].frames[0] for name in ("pseudonym", "hidden")}
        assert len({plain, *frames.values()}) == 3
        assert streams["pseudonym.gzip"].frames[0] == frames["pseudonym"]
        assert streams["pseudonym.delta"].frames[0] == frames["pseudonym"]
        assert streams["hidden.delta"].frames[0] == frames["hidden"]
        for name, raw in frames.items():
            for secret in (ALICE, HOST, OTHER, *ids.values()):
                assert secret.encode() not in raw, (name, secret)
        for name, names in (("pseudonym", PSEUDO), ("hidden", NONE)):
            data = first[name][1]
            whole = orjson.loads(orjson.dumps(Variant(names=names).full_message(latest)))
            assert data == whole
            assert [b["users"] for b in data["tool_metrics"][GH]] == [names.users([ALICE])]
            [borrowed] = [e for e in data["recent_events"]["borrows"] if e["tool"] == GH]
            assert (borrowed["user"], borrowed["host"], borrowed["id"]) == (names.user(ALICE), None, names.borrow_id(ids["kept"]))
        assert b"user-" not in frames["hidden"] and pseudonym.encode() in frames["pseudonym"]

        # Another borrow of alice's, and the next tick: a full message, or a delta, per mode.
        fresh = borrow(client, GH, ALICE, HOST)
        tick = ticker.tick()
        after = {name: stream.next_message(tick.id)[1] for name, stream in streams.items()}
        for name in ("admin", "analyst", "default"):
            assert streams[name].frames[-1] == sse.event(tick.id, Variant().full_message(tick))
        assert streams["admin.delta"].frames[-1] == sse.event(tick.id, Variant(delta=True).delta_message(latest, tick))
        assert after["pseudonym.gzip"] == after["pseudonym"]
        for mode, names in (("pseudonym", PSEUDO), ("hidden", NONE)):
            raw = streams[f"{mode}.delta"].frames[-1]
            for secret in (ALICE, HOST, *ids.values(), fresh):
                assert secret.encode() not in raw and secret.encode() not in streams[mode].frames[-1], (mode, secret)
            delta = after[f"{mode}.delta"]
            assert delta["mode"] == "delta"
            [new] = delta["recent_events"]["borrows"]
            assert (new["user"], new["host"], new["id"]) == (names.user(ALICE), None, names.borrow_id(fresh))
            assert [b["users"] for b in delta["tool_metrics"][GH]] == [names.users([ALICE])]
            assert after[mode]["mode"] == "full"
            # The ticker's kept copies of unchanged buckets give what showing them afresh gives.
            assert after[mode] == orjson.loads(orjson.dumps(Variant(names=names).full_message(tick)))
            assert delta == orjson.loads(orjson.dumps(Variant(delta=True, names=names).delta_message(latest, tick)))
        real_delta = after["admin.delta"]
        assert [(e["user"], e["host"], e["id"]) for e in real_delta["recent_events"]["borrows"]] == [(ALICE, HOST, fresh)]
    finally:
        for stream in streams.values():
            stream.close()
    assert ticker.stats()["clients"] == 0
