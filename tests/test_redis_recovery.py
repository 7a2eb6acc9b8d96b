"""Redis without persistence, killed under load and started again empty or from an older copy: nothing acknowledged is lost.

Two real app processes on one real redis-server that keeps no append-only file, sharing one database. The window in
which an acknowledged borrow is in Redis and in one process only is built, not waited for: the lease holder (its
follower and its persister) is stopped with SIGSTOP while the other process acknowledges borrows and a return, so
neither the store nor the lease holder has them when Redis is killed.
"""

import os
import signal

import pytest
import requests

from dash_app.licenses.pool_storage import PoolStorage
from dash_app.store import Store
from dash_app.testing import RedisServer
from tests.test_scale_out import TOOL, caught_up, cluster, leader_and_other, persisted, shared_db  # noqa: F401
from tests.test_server_polling import wait_for


@pytest.fixture
def redis_server(tmp_path):
    """A real redis-server that keeps nothing on disk (a cache-only Redis), stopped after the test."""
    server = RedisServer(tmp_path, persistent=False)
    yield server
    server.stop()


def borrow(server, user):
    r = requests.post(server.url + "/licenses/borrow", json={"tool": TOOL, "user": user}, headers=server.headers(), timeout=10)
    assert r.status_code == 200, r.text
    return r.json()["id"]


def give_back(server, borrow_id):
    return requests.post(server.url + "/licenses/return", json={"id": borrow_id}, headers=server.headers(), timeout=10)


def open_ids(server):
    return {b["id"] for b in requests.get(server.url + "/borrows", timeout=5).json()}


def open_in_store(db):
    store = Store(db)
    try:
        return {row[0] for row in PoolStorage(store).load_open_borrows()}
    finally:
        store.close()


def signal_group(server, sig):
    os.killpg(server.process.pid, sig)


@pytest.mark.parametrize("comes_back", ["empty", "behind"])
def test_every_acknowledged_borrow_survives_redis_coming_back_without_it(cluster, redis_server, shared_db, comes_back):  # noqa: F811
    a, b = cluster(), cluster()
    leader, other = leader_and_other(a, b)
    early = [borrow(server, f"early{n}") for n, server in enumerate((a, b, a, b))]
    caught_up(a, b)
    if comes_back == "behind":
        redis_server.save_snapshot()  # the older copy Redis comes back from: it holds the early borrows only
    signal_group(leader, signal.SIGSTOP)
    try:
        # Acknowledged by the other process only: in Redis and in its copy, not in the store nor in the leader's copy.
        late = [borrow(other, f"late{n}") for n in range(3)]
        assert give_back(other, early[0]).status_code == 200
        redis_server.stop(signal.SIGKILL)
        redis_server.start()
    finally:
        signal_group(leader, signal.SIGCONT)

    # Writes answer 503 (JSON, Retry-After) until the pool is rebuilt, then the next one is granted.
    def write_accepted():
        r = requests.post(
            other.url + "/licenses/borrow", json={"tool": TOOL, "user": "probe"}, headers=other.headers(), timeout=10
        )
        if r.status_code == 503:
            assert r.json()["error"] == "unavailable" and r.headers["Retry-After"]
            return None
        assert r.status_code == 200, r.text
        return r.json()["id"]

    probe = wait_for(write_accepted, "a write accepted again", timeout=30)
    entry = caught_up(a, b)
    persisted(shared_db, entry)
    expected = set(early[1:]) | set(late) | {probe}
    assert open_in_store(shared_db) == expected
    for server in (a, b):
        assert open_ids(server) == expected
    # Every acknowledged open borrow is returned, through either process: none is unknown (404).
    for n, borrow_id in enumerate(sorted(expected)):
        assert give_back((a, b)[n % 2], borrow_id).status_code == 200, borrow_id
    assert give_back(a, early[0]).status_code == 404  # returned before the kill, and it stays returned
    entry = caught_up(a, b)
    persisted(shared_db, entry)
    assert open_in_store(shared_db) == open_ids(a) == open_ids(b) == set()
