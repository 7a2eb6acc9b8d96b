"""Generated malformed requests to every route of one real server: a 2xx or a JSON 4xx, no traceback, no change."""

import http.client
import json
import re
from urllib.parse import quote

import pytest
from hypothesis import HealthCheck, given, note, settings
from hypothesis import strategies as st

from dash_app.testing import TEST_TOKEN, ServerProcess

GH = "GreenHills Multi IDE"
READS = ("GET", "HEAD", "OPTIONS")
METHODS = ("GET", "HEAD", "POST", "PUT", "DELETE", "PATCH", "OPTIONS")
# The names the routes read from queries and bodies, so generated requests reach past the first check.
QUERY_NAMES = ("window", "format", "kind", "tool", "user", "from", "to", "delta", "v", "next")
BODY_FIELDS = ("tool", "user", "host", "version", "id", "output", "outputs", "inputs", "state", "changedPropIds")
EXAMPLES_PER_ROUTE = 20
CALLBACK_ROUTE = "/_dash-update-component"

# Text a client may send: control characters, lone surrogates, non-characters, HTML, separators of paths and queries.
weird_text = st.text(
    st.characters(exclude_categories=()) | st.sampled_from("\x00\x1f\x7f\x85\ud800\udfff\ufffe/?#%&=<>\"' "),
    max_size=24,
)
numbers = st.one_of(
    st.integers(min_value=-(2**80), max_value=2**80),
    st.floats(allow_nan=True, allow_infinity=True),
    st.sampled_from([0, -1, 1e308, 2**63, -(2**63) - 1, 10**400]),
)
query_values = st.one_of(
    weird_text,
    numbers.map(str),
    st.sampled_from(
        [
            "nan", "inf", "-inf", "1e400", "0x10", "", " ", "json", "csv", "events", "buckets", "1", "0", "true", GH,
            "0001-01-01T00:00:00+14:00", "9999-12-31T23:59:59-14:00", "2026-13-45T99:99:99Z", "2026-01-01T00:00:00",
            "1970-01-01T00:00:00Z", "-99999-01-01", "//evil.example/", "/capacity",
        ]
    ),
)  # fmt: skip
# Besides anything, values the page's controls do send, so a body gets past its first check now and then.
CONTROL_VALUES = [GH, "alice", "", "x.y", "range", "this-month", "604800", 1800, "UTC", "Europe/Berlin", "/capacity", "/"]
DATES = ["2026-01-01", "2026-12-31", "9999-12-31", "0001-01-01", "1970-01-01", "2026-02-30", "2026-01-01T10:00:00"]
json_scalars = st.one_of(st.none(), st.booleans(), numbers, weird_text, st.sampled_from(CONTROL_VALUES + DATES))
json_values = st.recursive(
    json_scalars,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.sampled_from(BODY_FIELDS) | weird_text, inner, max_size=5),
    max_leaves=12,
)


def encode(text):
    """Percent-encode `text` as UTF-8, lone surrogates as the bytes they would be, so any text can go in a URL."""
    return quote(text.encode("utf-8", "surrogatepass"), safe="")


@st.composite
def queries(draw):
    pairs = draw(st.lists(st.tuples(st.sampled_from(QUERY_NAMES) | weird_text, query_values), max_size=4))
    query = "&".join(f"{encode(key)}={encode(value)}" for key, value in pairs)
    if draw(st.booleans()):
        query += "&" + quote(draw(st.binary(max_size=16)), safe="=&")  # stray bytes, separators kept
    return query


def callback_bodies(dependencies):
    """Bodies of the shape the browser posts for a registered callback, with values of any JSON type."""

    @st.composite
    def body(draw):
        dependency = draw(st.sampled_from(dependencies))
        output = dependency["output"]
        if output.startswith(".."):
            outputs = [dict(zip(("id", "property"), part.rsplit(".", 1))) for part in output.strip(".").split("...")]
        else:
            outputs = dict(zip(("id", "property"), output.rsplit(".", 1)))

        def entries(kind):
            return [{**d, "value": draw(json_values)} for d in dependency[kind]]

        inputs = entries("inputs")
        changed = [f"{d['id']}.{d['property']}" for d in inputs[: draw(st.integers(0, len(inputs)))]]
        body = {"output": output, "outputs": outputs, "inputs": inputs, "state": entries("state"), "changedPropIds": changed}
        if draw(st.integers(0, 3)) == 0:
            body[draw(st.sampled_from(sorted(body)))] = draw(json_values)  # a part of the wrong shape now and then
        return body

    return body()


@st.composite
def bodies(draw, callbacks, likely):
    kind = draw(st.sampled_from(["bytes", "json", "borrow", "callback", likely, likely]))
    if kind == "bytes":
        return draw(st.binary(max_size=200))
    if kind == "json":
        value = draw(json_values)
    elif kind == "borrow":
        value = {field: draw(json_scalars) for field in draw(st.sets(st.sampled_from(BODY_FIELDS[:5]), max_size=5))}
    else:
        value = draw(callbacks)
    # ensure_ascii keeps lone surrogates as escapes, which Python's parser reads back; NaN and Infinity as Python writes them.
    return json.dumps(value, ensure_ascii=draw(st.booleans()), allow_nan=True).encode("utf-8", "surrogatepass")


def path_of(rule, draw):
    """Fill the rule's variables with generated text: sometimes a real name, mostly anything."""

    def fill(match):
        converter = match.group(1) or "string"
        value = draw(st.sampled_from([GH, "dash", "bootstrap.min.css", "x/y", ".", "..", "%2e%2e"]) | weird_text)
        if converter != "path":
            value = value.replace("/", "")
        return encode(value).replace("%2F", "/")

    return re.sub(r"<(?:(\w+):)?\w+>", fill, rule)


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    server = ServerProcess({}, tmp_path_factory.mktemp("server"))
    yield server
    server.stop()


@pytest.fixture(scope="module")
def rules():
    """Every route of the app's Flask url_map (Dash's own included), with the methods each takes."""
    from dash_app import create_app
    from dash_app.state import get_state

    app = create_app({"demo": False, "db": ":memory:", "api_token": TEST_TOKEN})
    try:
        return [(rule.rule, sorted(rule.methods - {"OPTIONS"})) for rule in app.server.url_map.iter_rules()]
    finally:
        get_state(app).stop()


class Client:
    """One keep-alive-free HTTP client of the server that also reads what the server logged since the last call."""

    def __init__(self, server):
        self.server = server
        self.log = open(server.log_path, encoding="utf-8", errors="replace")
        self.log.seek(0, 2)

    def send(self, method, path, body=None, headers=None):
        connection = http.client.HTTPConnection("127.0.0.1", self.server.port, timeout=120)
        try:
            connection.request(method, path, body=body, headers=headers or {})
            response = connection.getresponse()
            kind = response.getheader("Content-Type", "")
            # A stream that was accepted runs until the client leaves: its head says enough.
            data = b"" if "text/event-stream" in kind and response.status == 200 else response.read()
            return response.status, kind, dict(response.getheaders()), data
        finally:
            connection.close()

    def logged(self):
        return self.log.read()

    def state(self):
        """The pool as readers see it: every tool's status and the open borrows."""
        return tuple(json.loads(self.send("GET", path)[3]) for path in ("/licenses/status", "/borrows"))


@pytest.fixture(scope="module")
def client(server):
    client = Client(server)
    yield client
    client.log.close()


def test_every_route_answers_generated_bad_requests_with_a_2xx_or_a_json_4xx(client, rules):
    routes = {rule for rule, _ in rules}
    assert {"/licenses/borrow", "/analytics/capacity", "/_dash-update-component", "/<path:path>"} <= routes
    status, _, _, raw = client.send("GET", "/_dash-dependencies")
    assert status == 200
    server_side = [d for d in json.loads(raw) if d["clientside_function"] is None]
    callbacks = callback_bodies(server_side)
    known = {"state": client.state()}

    for rule, methods in rules:
        # One route serves every server-side callback: as many examples for each as another route gets.
        examples = EXAMPLES_PER_ROUTE * (len(server_side) if rule == CALLBACK_ROUTE else 1)
        checker(client, callbacks, known, rule, methods, examples)()


def checker(client, callbacks, known, rule, methods, examples):
    """Return a property test of one route: `examples` generated requests to it."""

    @settings(max_examples=examples, deadline=None, suppress_health_check=list(HealthCheck))
    @given(data=st.data())
    def check(data):
        note(f"route {rule}")
        method = data.draw(st.sampled_from(methods * 3 + list(METHODS)), label="method")
        path = path_of(rule, data.draw)
        query = data.draw(queries(), label="query")
        target = path + ("?" + query if query else "")
        likely = "callback" if rule == CALLBACK_ROUTE else "borrow"  # what the route reads, more often than not
        body = data.draw(bodies(callbacks, likely), label="body") if method not in ("GET", "HEAD") else None
        headers = {"Authorization": f"Bearer {TEST_TOKEN}", "Content-Type": "application/json"}
        if data.draw(st.booleans(), label="other content type"):
            headers["Content-Type"] = data.draw(st.sampled_from(["text/plain", "application/x-www-form-urlencoded", ""]))
        note(f"{method} {target}\n{body!r}")
        status, kind, answer_headers, answer = client.send(method, target, body, headers)
        note(f"-> {status} {kind} {answer[:500]!r}")
        logged = client.logged()
        assert "Traceback" not in logged and " ERROR " not in logged, logged[-4000:]
        assert b"Traceback" not in answer
        assert 200 <= status < 300 or 400 <= status < 500, status
        if status >= 400 and method != "HEAD":
            assert kind == "application/json", kind
            error = json.loads(answer)
            assert set(error) == {"error", "detail"} and all(isinstance(v, str) for v in error.values())
        if status == 405:
            assert answer_headers.get("Allow"), answer_headers
        if method not in READS:
            state = client.state()
            if status >= 400:
                assert state == known["state"], "a refused write changed the pool"
            known["state"] = state  # a write that was valid may change it

    return check
