"""The page's weight: responses compressed as the client accepts, static bundles cached for a year, and the first load.

Against a real gunicorn (the Procfile's line) with requests reading the bytes as sent, and in headless Chromium.
"""

import gzip
import pkgutil
import re
import sys
import time
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import urljoin

import brotli
import requests
from dash import dcc
from dash.testing.wait import until
from plotly.offline import get_plotlyjs_version

from dash_app import figures, vendor
from dash_app.compression import EXTENSION
from dash_app.testing.sse_client import SseClient
from tests.browser_helpers import figure
from tests.stream_client import parse_iso

IMMUTABLE = {"public", "max-age=31536000", "immutable"}
CHROMIUM_ACCEPTS = "gzip, deflate, br, zstd"
PLOTLY = "/_dash-component-suites/plotly/package_data/plotly.min.js"
ASYNC_GRAPH = "/_dash-component-suites/dash/dcc/async-graph.js"
FIRST_LOAD_LIMIT = 1_500_000


def fetch(url, accept_encoding, method="GET", **kwargs):
    """Return (response, body as sent on the wire); accept_encoding None sends no Accept-Encoding at all."""
    response = requests.request(
        method,
        url,
        headers={"Accept-Encoding": accept_encoding, **kwargs.pop("headers", {})},
        stream=True,
        allow_redirects=False,
        timeout=30,
        **kwargs,
    )
    with response:
        return response, response.raw.read(decode_content=False)


def decoded(response, body):
    encoding = response.headers.get("Content-Encoding")
    if encoding == "gzip":
        return gzip.decompress(body)
    if encoding == "br":
        return brotli.decompress(body)
    assert encoding is None, encoding
    return body


def directives(response):
    return {part.strip() for part in response.headers.get("Cache-Control", "").split(",") if part.strip()}


def long_lived(response):
    return any(d.startswith("max-age=") and int(d.split("=")[1]) > 0 for d in directives(response)) or (
        "immutable" in directives(response)
    )


class PageLinks(HTMLParser):
    """Collects every script src and link href of a page."""

    def __init__(self):
        super().__init__()
        self.urls = []

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if tag == "script" and attrs.get("src"):
            self.urls.append(attrs["src"])
        if tag == "link" and attrs.get("href"):
            self.urls.append(attrs["href"])


def page_links(server):
    parser = PageLinks()
    parser.feed(requests.get(server.url + "/", timeout=10).text)
    return parser.urls


def layout_values(node, values=None):
    """Return {(id, prop): value} of every component in a /_dash-layout tree, as the browser holds them at start."""
    values = {} if values is None else values
    if isinstance(node, list):
        for child in node:
            layout_values(child, values)
    elif isinstance(node, dict):
        props = node.get("props")
        if isinstance(props, dict):
            if isinstance(props.get("id"), str):
                values.update({(props["id"], name): value for name, value in props.items()})
            for value in props.values():
                layout_values(value, values)
    return values


def first_refresh_body(server):
    """Return the body of the page's first refresh callback, built as dash-renderer builds it from layout and dependencies."""
    values = layout_values(requests.get(server.url + "/_dash-layout", timeout=10).json())
    dependencies = requests.get(server.url + "/_dash-dependencies", timeout=10).json()
    [refresh] = [d for d in dependencies if "render-state.data" in d["output"] and d["clientside_function"] is None]
    output = refresh["output"]
    outputs = [dict(zip(("id", "property"), part.rsplit(".", 1))) for part in output.strip(".").split("...")]

    def entries(kind):
        return [{**d, "value": values.get((d["id"], d["property"]))} for d in refresh[kind]]

    return {"output": output, "outputs": outputs, "inputs": entries("inputs"), "state": entries("state"), "changedPropIds": []}


def test_responses_are_compressed_as_the_client_accepts(start_server):
    server = start_server()
    for n, tool in enumerate(entry["tool"] for entry in requests.get(server.url + "/licenses/status", timeout=5).json()):
        for user in ("ann", "bob", "cy"):
            body = {"tool": tool, "user": f"{user}{n}"}
            assert requests.post(server.url + "/licenses/borrow", json=body, headers=server.headers(), timeout=5).ok
    links = page_links(server)
    renderer = next(url for url in links if "dash_renderer" in url)
    bootstrap_css = next(url for url in links if url.startswith("/assets/bootstrap.min.css?m="))
    plotly = requests.head(server.url + PLOTLY, timeout=5).headers["Location"]
    # (method, path, body): the same bytes on every request where `same` is True.
    routes = [
        ("GET", "/", None, False),  # the page carries a fresh token each time
        ("GET", "/_dash-layout", None, True),
        ("GET", "/_dash-dependencies", None, True),
        ("POST", "/_dash-update-component", first_refresh_body(server), False),
        ("GET", renderer, None, True),
        ("GET", plotly, None, True),
        ("GET", bootstrap_css, None, True),
        ("GET", "/assets/bootstrap.min.css", None, True),
        ("GET", "/licenses/status", None, True),
        ("GET", "/realtime/export?format=json&kind=events", None, True),
        ("GET", "/realtime/export?format=csv&kind=events", None, True),
        ("GET", "/metrics", None, True),
    ]
    for method, path, body, same in routes:
        url = urljoin(server.url, path)
        plain, reference = fetch(url, "identity", method, json=body)
        assert plain.status_code == 200, path
        assert len(reference) > 1000, path  # large enough to be worth compressing
        assert "Content-Encoding" not in plain.headers, path
        assert "Content-Encoding" not in fetch(url, None, method, json=body)[0].headers, path
        for accepts, expected in (
            ("gzip", "gzip"),
            ("br", "br"),
            (CHROMIUM_ACCEPTS, "br"),
            ("gzip, deflate, br", "br"),
            ("br;q=0.5, gzip", "gzip"),
            ("deflate", None),
        ):
            response, wire = fetch(url, accepts, method, json=body)
            assert response.status_code == 200, (path, accepts)
            assert response.headers.get("Content-Encoding") == expected, (path, accepts)
            assert "Accept-Encoding" in response.headers.get("Vary", ""), (path, accepts)
            text = decoded(response, wire)
            if expected is not None:
                assert len(wire) < len(text) / 2, (path, accepts)
            if same:
                assert text == reference, (path, accepts)
            else:
                assert abs(len(text) - len(reference)) < len(reference) * 0.1, (path, accepts)


def test_static_bundles_are_cached_for_a_year_and_the_page_and_data_are_not(start_server):
    server = start_server()
    page = requests.get(server.url + "/", timeout=10)
    assert page.headers["Cache-Control"] == "no-cache"
    links = page_links(server)
    # Bootstrap's CSS, from assets/, comes before style.css, which builds on it.
    sheets = [url.split("?")[0] for url in links if url.endswith(".css") or ".css?" in url]
    assert sheets == ["/assets/bootstrap.min.css", "/assets/style.css"], sheets
    assert all(re.fullmatch(r"/assets/[\w.]+\.css\?m=[\d.]+", url) for url in links if ".css" in url)
    assert any(url.startswith("/_favicon.ico?v=") for url in links)
    # Every script and stylesheet the page names, and what it loads later by a fixed URL (plotly, dcc's chunks).
    for path in links + [PLOTLY, ASYNC_GRAPH]:
        response = requests.get(urljoin(server.url, path), headers={"Accept-Encoding": CHROMIUM_ACCEPTS}, timeout=30)
        assert response.status_code == 200, path
        assert directives(response) == IMMUTABLE, (path, response.headers.get("Cache-Control"))
        assert "Accept-Encoding" in response.headers["Vary"], path
    for fixed in (PLOTLY, ASYNC_GRAPH):
        # Redirected to the fingerprinted URL: the redirect is asked again, so an upgrade reaches every browser.
        hop = requests.get(server.url + fixed, allow_redirects=False, timeout=10)
        assert hop.status_code == 302 and hop.headers["Cache-Control"] == "no-cache", fixed
        # A bundle's fingerprint, or (plotly.js's smaller bundle, an asset) the file's mtime as Dash links assets.
        assert re.search(r"\.v[\w-]+m\d+\.|\.js\?m=[\d.]+$", hop.headers["Location"]), hop.headers["Location"]

    # Unversioned URLs still answer, but are revalidated.
    for path in ("/assets/bootstrap.min.css", "/assets/style.css"):
        response = requests.get(server.url + path, timeout=10)
        assert response.status_code == 200 and not long_lived(response), (path, response.headers.get("Cache-Control"))
    for path in ("/_dash-layout", "/_dash-dependencies", "/licenses/status", "/realtime/stats", "/healthz"):
        response = requests.get(server.url + path, timeout=10)
        assert response.status_code == 200 and response.headers["Cache-Control"] == "no-cache", path
    refresh = requests.post(server.url + "/_dash-update-component", json=first_refresh_body(server), timeout=10)
    assert refresh.status_code == 200 and refresh.headers["Cache-Control"] == "no-cache"


def test_the_stream_is_neither_compressed_nor_buffered(start_server):
    interval = 3.0
    server = start_server(DASH_APP_STREAM_INTERVAL=interval)
    url = server.url + "/realtime/stream"
    # The stream gzips its own messages (one flushed block each) when gzip is accepted; nothing else touches it.
    expected = {"identity": None, None: None, "gzip": "gzip", CHROMIUM_ACCEPTS: "gzip", "br": None}
    with SseClient(url, headers={"Accept-Encoding": "identity"}) as watch:
        watch.next_message()
        watch.next_message()  # a tick has just been made: the next one is a whole interval away
    clients = {accepts: SseClient(url, headers={"Accept-Encoding": accepts}) for accepts in expected}
    try:
        for accepts, client in clients.items():
            headers = client.response.headers
            assert headers.get("Content-Encoding") == expected[accepts], accepts
            assert headers["Content-Type"] == "text/event-stream; charset=utf-8"
            assert headers["Cache-Control"] == "no-cache" and "Content-Length" not in headers
        firsts = {accepts: (client.next_message(), time.time()) for accepts, client in clients.items()}
        seconds = {accepts: client.next_message() for accepts, client in clients.items()}
    finally:
        for client in clients.values():
            client.close()
    for accepts in expected:
        (first, arrived), second = firsts[accepts], seconds[accepts]
        # The first message was read before the server made the next tick, which then came on its own.
        assert arrived < parse_iso(second["data"]["timestamp"]), accepts
        assert second["id"] == first["id"] + 3000, accepts  # the next tick: ids are tick times in ms


def test_a_static_bundle_is_compressed_once_per_encoding(make_app):
    app = make_app()
    client = app.server.test_client()
    client.get("/")
    location = client.get(ASYNC_GRAPH).headers["Location"]
    cache = app.server.extensions[EXTENSION]
    source = pkgutil.get_data("dash", "dcc/async-graph.js")
    bodies = set()
    # Made-up fingerprints name the same file: they share its cached body instead of adding one each.
    for n in range(5):
        url = re.sub(r"m\d+\.", f"m{n}1.", location) if n else location
        for accepts in ("br", "gzip"):
            response = client.get(url, headers={"Accept-Encoding": accepts})
            assert response.headers["Content-Encoding"] == accepts
            assert decoded(response, response.data) == source
            bodies.add((accepts, response.data))
    assert len(bodies) == 2
    assert len([key for key in cache.keys() if "async-graph.js" in key]) == 2


def test_plotly_comes_as_its_cartesian_bundle_of_the_same_version_with_every_trace_type_drawn(make_app):
    client = make_app().server.test_client()
    location = client.get(PLOTLY).headers["Location"]
    assert re.fullmatch(r"/assets/bundles/plotly-cartesian\.min\.js\?m=[0-9.]+", location)
    response = client.get(location, headers={"Accept-Encoding": "br"})
    assert response.headers["Cache-Control"] == "public, max-age=31536000, immutable"
    bundle = decoded(response, response.data).decode()
    assert f"plotly.js (cartesian - minified) v{get_plotlyjs_version()}" in bundle[:200]  # upgrade both together
    registered = set(re.findall(r'moduleType:"trace",name:"(\w+)"', bundle))
    # Every trace type a figure builder names (figures/ writes them as "type": "...").
    drawn = set()
    for module in Path(figures.__file__).parent.glob("*.py"):
        drawn |= set(re.findall(r'"type": "(\w+)"', module.read_text())) - {"category", "date", "line", "linear", "log"}
    assert drawn and drawn <= registered, drawn - registered
    # The page runs the bundle as soon as it arrives, from the very URL dcc.Graph's request is sent on to.
    page = client.get("/").get_data(as_text=True)
    assert page.count("plotly-cartesian") == 1
    assert f'<script src="{location}" async="async"></script>' in page
    # The Capacity view's grid needs none of it: the page loads the same URL once the grid shows rows.
    capacity = client.get("/capacity?window=604800").get_data(as_text=True)
    assert f'<script src="{location}"' not in capacity and capacity.count(f'var url = "{location}"') == 1


def test_the_capacity_page_links_the_chunks_its_components_load_by_the_url_their_fixed_one_leads_to(make_app):
    client = make_app().server.test_client()
    page = client.get("/capacity?window=604800").get_data(as_text=True)
    assert "/async-" not in client.get("/").get_data(as_text=True)  # the live view's first chart needs none of them
    for package, path in vendor.PAGE_CHUNKS:
        # Each is a chunk its package registers to load on demand: an upgrade that renames one fails here.
        listed = dcc._js_dist if package == "dash" else sys.modules[package]._js_dist  # dcc's files are dash's
        registered = [d for d in listed if d.get("relative_package_path") == path]
        assert [d.get("async") for d in registered] == [True], (package, path)
        fixed = f"/_dash-component-suites/{package}/{path}"
        location = client.get(fixed).headers["Location"]  # where the component's own request would be sent on
        assert re.fullmatch(rf"/_dash-component-suites/{package}/{path[:-3]}\.v[\w-]+m\d+\.js", location), location
        assert page.count(f'<script src="{location}" async="async"></script>') == 1, location
        response = client.get(location)
        assert response.status_code == 200 and directives(response) == IMMUTABLE


def test_first_load_is_at_most_1_5_mb_and_draws_the_charts(dash_duo, make_app):
    app = make_app(demo=True, backfill_hours=1)
    dash_duo.start_server(app)
    until(lambda: any(t["y"] for t in (figure(dash_duo, "borrow-chart") or {"traces": []})["traces"]), timeout=30)
    entries = dash_duo.driver.execute_script(
        "return performance.getEntriesByType('navigation').concat(performance.getEntriesByType('resource'))"
        ".map(e => ({name: e.name, transfer: e.transferSize, encoded: e.encodedBodySize, decoded: e.decodedBodySize}))"
    )
    total = sum(entry["transfer"] for entry in entries)
    assert all(entry["transfer"] > 0 for entry in entries)  # a first load: nothing came from the cache
    # The page links plotly.js's cartesian bundle; dcc.Graph, finding it loaded, asks for no other plotly.js.
    [plotly] = [entry for entry in entries if "plotly" in entry["name"].rsplit("/", 1)[-1]]
    assert "/bundles/plotly-cartesian.min.js?m=" in plotly["name"]
    assert plotly["decoded"] < 1_600_000  # the full bundle is 4.8 MB
    assert plotly["encoded"] < plotly["decoded"] / 3
    assert total <= FIRST_LOAD_LIMIT, f"first load {total:,} bytes"
    assert dash_duo.get_logs() == []
