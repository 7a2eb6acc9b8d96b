"""The stream ticker and route in process: delta replay against the buffer, queries, keep-alive, limits, gzip."""

import copy
import json
import random
import time
import zlib

import pytest

from dash_app.buffer import RealtimeMetricsBuffer
from dash_app.licenses import BorrowDenied, LicensePool, load_inventory
from dash_app.recording import EventRecorder
from dash_app.state import get_state
from dash_app.stream import StreamTicker, Variant
from dash_app.stream.routes import event_stream
from dash_app.stream.snapshot import changed_tools
from dash_app.testing import FakeClock
from tests.stream_client import DELTA_KEYS, MESSAGE_KEYS, apply_delta, new_client, replayed, replayed_keys

START = 1_800_000_000.0


def parse_events(raw):
    """Return the (id, data) messages in raw SSE bytes."""
    out = []
    for block in raw.split(b"\n\n"):
        fields = dict(line.split(b": ", 1) for line in block.split(b"\n") if line and not line.startswith(b":"))
        if b"data" in fields:
            out.append((int(fields[b"id"]), json.loads(fields[b"data"])))
    return out


def drain(sub):
    """Return the messages queued for a subscription."""
    chunks = []
    while not sub.queue.empty():
        chunks.append(sub.queue.get_nowait())
    return parse_events(b"".join(chunks))


def in_process_ticker(retention=600, caps=300):
    clock = FakeClock(START)
    buffer = RealtimeMetricsBuffer(
        retention_seconds=retention, max_borrows=caps, max_returns=caps, max_failures=caps // 3, clock=clock
    )
    pool = LicensePool(load_inventory(), EventRecorder(buffer), clock=clock)
    return clock, buffer, pool, StreamTicker(buffer, pool, interval=1.0)


def reference_metrics(buffer, variant):
    """What a full message's tool_metrics must be: the buffer's own aggregation, filtered."""
    window = buffer.retention_seconds if variant.window is None else variant.window
    metrics = buffer.aggregate_tool_metrics(window)
    return {tool: buckets for tool, buckets in sorted(metrics.items()) if variant.tools is None or tool in variant.tools}


def random_traffic(rng, clock, buffer, pool, active, step):
    """Add a burst of pool borrows and returns, observed tools, failures (some identical) and late events; return how many."""
    tools = pool.tools
    added = 0
    for n in range(rng.choice((0, 0, 1, 3, 12))):
        roll = rng.random()
        if roll < 0.4:
            try:
                active.append(pool.borrow(rng.choice(tools), f"u{rng.randrange(20)}").id)
            except BorrowDenied:
                pass  # a full pool answers with a failure event, which the buffer keeps too
        elif roll < 0.65 and active:
            pool.return_license(active.pop(rng.randrange(len(active))))
        elif roll < 0.7:
            # A tool outside the inventory, as a log source reports it: the pool's status gains an entry.
            pool.observe_borrow(f"Observed {rng.randrange(3)}", "log", at=clock.now)
        elif roll < 0.85:
            # Late events, most inside the last minute, among events already sent; some far back.
            late = clock.now - rng.choice((rng.uniform(0, 70), rng.uniform(0, 700)))
            kind = rng.choice(("borrow", "return", "failure"))
            if kind == "borrow":
                tool, user = rng.choice(tools), f"late{rng.randrange(5)}"  # in this order: the seeded draws stay the same
                buffer.add_borrow(tool, user, rng.random() < 0.3, f"x{step}-{n}", timestamp=late)
            elif kind == "return":
                buffer.add_return(f"x{rng.randrange(step + 1)}-0", user="late", tool=rng.choice(tools), timestamp=late)
            else:
                buffer.add_failure(rng.choice(tools), "late", "exhausted", timestamp=late)
        else:
            # Identical failures at one instant, as a log with whole seconds gives them.
            buffer.add_failure(rng.choice(tools), "f", "exhausted", timestamp=clock.now)
        added += 1
    return added


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_delta_replay_equals_the_full_message_and_the_buffer_at_every_tick(seed):
    rng = random.Random(seed)
    clock, buffer, pool, ticker = in_process_ticker()
    tools = pool.tools
    variants = [Variant(), Variant(window=120), Variant(window=300, tools=(tools[0], tools[2]))]
    subs = {v: (ticker.subscribe(v), ticker.subscribe(Variant(v.window, v.tools, delta=True))) for v in variants}
    states = {v: new_client() for v in variants}
    seen = {v: {} for v in variants}  # id -> the replayed state, for resuming later
    previous = {}  # the last full message of each variant
    for v, (full_sub, delta_sub) in subs.items():
        apply_delta(states[v], parse_events(delta_sub.first)[0][1])
        previous[v] = parse_events(full_sub.first)[0][1]
    active = []
    recent_sent_whole = recent_sent_new = 0
    for step in range(250):
        added = random_traffic(rng, clock, buffer, pool, active, step)
        # Time jumps cross seconds, minutes, the recent events' minute and the retention edge.
        clock.advance(rng.choice((0.2, 1.0, 1.0, 7.0, 45.0, 61.0, 130.0)))
        tick = ticker.tick()
        for v, (full_sub, delta_sub) in subs.items():
            [(full_id, full)] = drain(full_sub)
            [(delta_id, delta)] = drain(delta_sub)
            assert full_id == delta_id == tick.id
            assert set(full) == MESSAGE_KEYS and set(delta) == DELTA_KEYS and delta["mode"] == "delta"
            assert full["tool_metrics"] == reference_metrics(buffer, v)
            assert full["recent_events"] == buffer.get_recent_events(60, limit=10)
            assert replayed(apply_delta(states[v], delta)) == replayed_keys(full), f"step {step}"
            for key in ("timestamp", "rates", "buffer_stats"):
                assert delta[key] == full[key]
            # Only changes travel: new events (no more than were added), and the fields of pool entries that differ.
            if delta["recent_events_full"]:
                recent_sent_whole += 1
            else:
                recent_sent_new += sum(map(len, delta["recent_events"].values())) > 0
                assert sum(map(len, delta["recent_events"].values())) <= added
            assert not delta["tools_full"]
            before = {entry["tool"]: entry for entry in previous[v]["tools"]}
            for change in delta["tools"]:
                held = before.get(change["tool"])
                assert held is None or all(held[key] != value for key, value in change.items() if key != "tool")
            previous[v] = full
            seen[v][tick.id] = copy.deepcopy(states[v])
        if step % 25 == 24:
            # A client that left a few ticks ago resumes with a delta; an unknown id gets a full message.
            v = variants[step % len(variants)]
            back = list(seen[v])[-rng.randrange(2, 21)]  # ids are tick times: any of the last 20 ticks
            resumed = ticker.subscribe(Variant(v.window, v.tools, delta=True), last_event_id=back)
            [(resumed_id, message)] = parse_events(resumed.first)
            assert resumed_id == tick.id and message["mode"] == "delta"
            assert replayed(apply_delta(copy.deepcopy(seen[v][back]), message)) == replayed_keys(previous[v])
            resumed.close()
            stranger = ticker.subscribe(Variant(v.window, v.tools, delta=True), last_event_id=tick.id + 1)  # never sent
            assert parse_events(stranger.first)[0][1]["mode"] == "full"
            stranger.close()
    assert ticker.stats()["clients"] == 6 and ticker.stats()["variants"] == 6
    # Late events among those already sent make some messages whole; most carry only what is new.
    assert 0 < recent_sent_whole < recent_sent_new


def test_delta_recent_events_and_tools_carry_only_what_is_new():
    clock, buffer, pool, ticker = in_process_ticker()
    sub = ticker.subscribe(Variant(delta=True))
    state = apply_delta(new_client(), parse_events(sub.first)[0][1])
    tools = pool.tools

    def step(seconds=1.0):
        clock.advance(seconds)
        ticker.tick()
        [(_, message)] = drain(sub)
        apply_delta(state, message)
        assert replayed(state)["recent_events"] == buffer.get_recent_events(60, limit=10)
        assert replayed(state)["tools"] == pool.status()
        return message

    pool.borrow(tools[0], "ann")
    message = step()
    assert [e["user"] for e in message["recent_events"]["borrows"]] == ["ann"] and not message["recent_events_full"]
    assert message["tools"] == [{"tool": tools[0], "borrowed": 1, "available": pool.tool_status(tools[0])["available"]}]

    # Twelve borrows at once: the newest ten arrive and push out what the client held.
    for n in range(12):
        pool.borrow(tools[1], f"b{n}")
    message = step()
    assert [e["user"] for e in message["recent_events"]["borrows"]] == [f"b{n}" for n in range(2, 12)]
    assert [e["tool"] for e in message["tools"]] == [tools[1]] and not message["recent_events_full"]

    # Nothing new: empty lists, and the pool is unchanged.
    message = step()
    assert message["recent_events"] == {"borrows": [], "returns": [], "failures": []} and message["tools"] == []

    # A late borrow that lands among those sent cannot be appended: recent_events comes whole, and says so.
    pool.borrow(tools[0], "cy")
    step()
    buffer.add_borrow(tools[2], "late", False, "late-1", timestamp=clock.now - 1.5)
    message = step()
    assert message["recent_events_full"] is True
    assert [e["user"] for e in message["recent_events"]["borrows"]][-3:] == ["b11", "late", "cy"]
    # A late one older than the ten kept changes nothing; the next one in order is simply new again.
    buffer.add_borrow(tools[2], "older", False, "late-2", timestamp=clock.now - 30)
    pool.borrow(tools[2], "dee")
    message = step()
    assert not message["recent_events_full"] and [e["user"] for e in message["recent_events"]["borrows"]] == ["dee"]

    # A minute later every event has left the last 60 s: the client drops them by their timestamps.
    message = step(60.0)
    assert not message["recent_events_full"] and message["recent_events"] == {"borrows": [], "returns": [], "failures": []}
    assert state["recent_events"] == {"borrows": [], "returns": [], "failures": []}

    # A tool a log source reports goes last in the pool's status, and arrives whole.
    pool.observe_borrow("Observed tool", "log", at=clock.now)
    message = step()
    assert message["tools"] == [pool.tool_status("Observed tool")] and list(state["tools"])[-1] == "Observed tool"


def test_tool_changes_are_the_changed_fields_or_else_the_whole_list():
    a, b, c = ({"tool": name, "borrowed": 0, "total": 5} for name in "abc")
    b1 = {**b, "borrowed": 1}
    assert changed_tools([a, b], [a, b1, c]) == ([{"tool": "b", "borrowed": 1}, c], False)
    # A tool gone, a field gone, or a new tool placed before known ones cannot be said as changes.
    assert changed_tools([a, b, c], [a, c]) == ([a, c], True)
    assert changed_tools([a, b], [a, {"tool": "b", "borrowed": 1}]) == ([a, {"tool": "b", "borrowed": 1}], True)
    assert changed_tools([a, b], [c, a, b]) == ([c, a, b], True)


def test_each_variant_is_serialized_once_per_tick_and_the_same_bytes_reach_every_client():
    clock, buffer, pool, ticker = in_process_ticker()
    subs = [ticker.subscribe(Variant(delta=True)) for _ in range(3)] + [ticker.subscribe(Variant(window=60)) for _ in range(2)]
    pool.borrow(pool.tools[0], "alice")
    clock.advance(1)
    ticker.tick()
    chunks = [sub.queue.get_nowait() for sub in subs]
    assert chunks[0] is chunks[1] is chunks[2] and chunks[3] is chunks[4] and chunks[0] != chunks[3]
    for sub in subs:
        sub.close()
    assert ticker.stats()["variants"] == 0 and ticker.stats()["clients"] == 0


def test_gzip_blocks_are_shared_and_decode_for_clients_that_joined_at_different_ticks():
    clock, buffer, pool, ticker = in_process_ticker()
    early = ticker.subscribe(Variant(delta=True), encoding="gzip")
    plain = ticker.subscribe(Variant(delta=True))
    clock.advance(1)
    ticker.tick()
    late = ticker.subscribe(Variant(delta=True), encoding="gzip")
    pool.borrow(pool.tools[1], "bob")
    clock.advance(1)
    ticker.tick()
    streams = {}
    for name, sub in (("early", early), ("late", late), ("plain", plain)):
        stream = event_stream(sub, None)
        streams[name] = next(stream) + sub.queue.get_nowait() + (sub.queue.get_nowait() if name != "late" else b"")
        stream.close()
    assert streams["early"][-40:] == streams["late"][-40:]  # the newest block is one object for both
    decoded = {name: zlib.decompressobj(16 + zlib.MAX_WBITS).decompress(raw) for name, raw in streams.items() if name != "plain"}
    assert decoded["early"] == streams["plain"]
    assert decoded["late"].startswith(b"retry: 3000\n\n")
    assert parse_events(decoded["late"])[-1] == parse_events(streams["plain"])[-1]


def test_keepalive_comment_after_quiet_time_and_resources_freed_on_close():
    clock, buffer, pool, ticker = in_process_ticker()
    sub = ticker.subscribe(Variant())
    stream = event_stream(sub, None, keepalive=0.3, poll=0.05)
    assert next(stream).startswith(b"retry: 3000\n\nid: ")
    started = time.monotonic()
    assert next(stream) == b": keep-alive\n\n"
    assert time.monotonic() - started >= 0.25
    ticker.tick()
    assert next(stream).startswith(b"id: ")
    assert ticker.stats()["clients"] == 1
    stream.close()
    assert ticker.stats() | {"last_id": None} == {
        "clients": 0,
        "max_clients": None,
        "variants": 0,
        "last_id": None,
        "dropped": 0,
        "skipped": 0,
    }


def test_a_client_that_stops_reading_is_dropped_and_hung_up():
    clock, buffer, pool, ticker = in_process_ticker()
    hung_up = []
    stalled = ticker.subscribe(Variant(), on_drop=lambda: hung_up.append(True))
    reading = ticker.subscribe(Variant())
    for n in range(ticker.queue_size + 1):
        ticker.tick()
        reading.queue.get_nowait()
        assert hung_up == ([True] if n == ticker.queue_size else [])
    assert stalled.dropped and not reading.dropped
    # Dropped, but its thread holds the stream until the generator ends.
    assert ticker.stats()["clients"] == 2 and ticker.stats()["dropped"] == 1
    stalled.close()
    assert ticker.stats()["clients"] == 1


def test_a_late_tick_skips_the_boundaries_it_missed_and_counts_them():
    buffer = RealtimeMetricsBuffer(retention_seconds=600)
    pool = LicensePool(load_inventory(), EventRecorder(buffer))
    ids = []

    def slow_once(tick):
        ids.append(tick.id)
        if len(ids) == 3:
            time.sleep(0.13)  # the tick itself runs late: the next two 50 ms boundaries pass during it

    ticker = StreamTicker(buffer, pool, interval=0.05, on_tick=[slow_once])
    ticker.start()
    try:
        deadline = time.monotonic() + 10
        while len(ids) < 8 and time.monotonic() < deadline:
            time.sleep(0.01)
    finally:
        ticker.stop()
    on_boundaries = ids[1:]  # the first tick is taken at start, off the boundaries
    assert len(on_boundaries) >= 7 and all(tick_id % 50 == 0 for tick_id in on_boundaries)
    # Every boundary is either ticked or counted as skipped; none twice, and never a burst to catch up.
    gaps = sum((later - earlier) // 50 - 1 for earlier, later in zip(on_boundaries, on_boundaries[1:]))
    assert all(later > earlier for earlier, later in zip(on_boundaries, on_boundaries[1:]))
    assert ticker.stats()["skipped"] == gaps >= 2


def test_bad_queries_get_400_naming_the_field(make_app):
    client = make_app().server.test_client()
    cases = {
        "window=abc": "window",
        "window=59": "window",
        "window=21601": "window",
        "window=nan": "window",
        "tool=Nope": "tool",
        "tool=": "tool",
        "delta=maybe": "delta",
        "tools=GreenHills%20Multi%20IDE": "tools",
    }
    for query, field in cases.items():
        response = client.get("/realtime/stream?" + query)
        assert response.status_code == 400, query
        body = response.get_json()
        assert set(body) == {"error", "detail"} and body["detail"].startswith(field + ":"), (query, body)


def test_window_and_tool_filters_shape_the_message(make_app):
    app = make_app()
    state = get_state(app)
    for tool, user in (("GreenHills Multi IDE", "ann"), ("CAN Bus Analyzer Pro", "bo"), ("ECU Development Suite", "cy")):
        state.pool.borrow(tool, user)
    state.buffer.add_borrow("GreenHills Multi IDE", "old", False, "old-1", timestamp=time.time() - 3 * 3600)
    state.stream.tick()
    client = app.server.test_client()
    query = "?window=3600&tool=GreenHills%20Multi%20IDE&tool=CAN%20Bus%20Analyzer%20Pro"
    response = client.get("/realtime/stream" + query, buffered=False)
    [(_, message)] = parse_events(next(iter(response.response)))
    response.close()
    assert [e["tool"] for e in message["tools"]] == ["GreenHills Multi IDE", "CAN Bus Analyzer Pro"]
    assert sorted(message["tool_metrics"]) == ["CAN Bus Analyzer Pro", "GreenHills Multi IDE"]
    assert [b["users"] for b in message["tool_metrics"]["GreenHills Multi IDE"]] == [["ann"]]
    assert len(message["recent_events"]["borrows"]) == 3  # recent events are not filtered
    response = client.get("/realtime/stream", buffered=False)
    [(_, whole)] = parse_events(next(iter(response.response)))
    response.close()
    assert [b["users"] for b in whole["tool_metrics"]["GreenHills Multi IDE"]] == [["old"], ["ann"]]


def test_streams_beyond_the_thread_reserve_get_503(make_app):
    app = make_app(threads=5)  # one thread stays free for the page: four streams at most
    client = app.server.test_client()
    open_streams = [client.get("/realtime/stream", buffered=False) for _ in range(4)]
    assert all(r.status_code == 200 for r in open_streams)
    refused = client.get("/realtime/stream")
    assert refused.status_code == 503 and refused.get_json()["error"] == "stream_unavailable"
    assert refused.headers["Retry-After"] == "10"
    open_streams.pop().close()
    again = client.get("/realtime/stream", buffered=False)
    assert again.status_code == 200
    for response in open_streams + [again]:
        response.close()
    assert get_state(app).stream.stats()["clients"] == 0
