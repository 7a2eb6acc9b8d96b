"""Bad requests to a real server: each is a JSON 4xx that names what is wrong, never a 500, and no traceback in its log."""

import pytest
import requests

from dash_app.testing import ServerProcess
from tests.test_hardening import callback_body

GH = "GreenHills Multi IDE"
BOUNDS = "must be between 1970-01-01T00:00:00Z and 9999-12-31T23:59:59Z"


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    server = ServerProcess({}, tmp_path_factory.mktemp("server"))
    yield server
    server.stop()


@pytest.fixture(autouse=True)
def no_traceback(server):
    """Fail a test whose requests left a traceback (or any error line) in the server's log."""
    start = server.log_path.stat().st_size
    yield
    with open(server.log_path, encoding="utf-8", errors="replace") as log:
        log.seek(start)
        written = log.read()
    assert "Traceback" not in written and " ERROR " not in written, written[-3000:]


def get(server, path, **kwargs):
    return requests.get(server.url + path, timeout=30, **kwargs)


def assert_error(response, status, field=None):
    """Assert `response` is the JSON error {"error", "detail"} with `status`, its detail naming `field` when given."""
    assert response.status_code == status, (response.status_code, response.text[:500])
    assert response.headers["Content-Type"] == "application/json", response.headers["Content-Type"]
    body = response.json()
    assert set(body) == {"error", "detail"} and "Traceback" not in response.text
    if field is not None:
        assert body["detail"].startswith(f"{field}: "), body
    return body


# ------------------------------------------------------------------------------------------------------------ dates


@pytest.mark.parametrize("route", ["/analytics/capacity", "/analytics/commit-advice"])
@pytest.mark.parametrize(
    "field, value",
    [
        ("to", "0001-01-01T00:00:00+14:00"),  # the year 0 in UTC: no datetime can hold it
        ("from", "0001-01-01T00:00:00+14:00"),
        ("to", "9999-12-31T23:59:59-14:00"),  # the year 10000 in UTC
        ("from", "9999-12-31T23:59:59-14:00"),
        ("to", "1969-12-31T23:59:59Z"),  # before the store's epoch
        ("from", "0001-01-01T00:00:00Z"),
    ],
)
def test_a_time_outside_what_the_store_holds_is_a_400_naming_its_field(server, route, field, value):
    body = assert_error(get(server, route, params={field: value}), 400, field)
    assert body == {"error": "invalid_query", "detail": f"{field}: {BOUNDS}"}


def test_a_window_reaching_before_the_epoch_is_a_400(server):
    body = assert_error(get(server, "/analytics/capacity", params={"to": "1970-01-02T00:00:00Z"}), 400, "to")
    assert "1970-01-01T00:00:00Z" in body["detail"]


def test_a_period_inside_the_bounds_still_answers(server):
    assert get(server, "/analytics/capacity", params={"window": "3600"}).status_code == 200
    assert get(server, "/analytics/commit-advice", params={"to": "9999-12-31T23:59:59Z"}).status_code == 200


# ----------------------------------------------------------------------------------------------- paths and methods


@pytest.mark.parametrize(
    "path", ["/_dash-component-suites/nope/x.js", "/_dash-component-suites/dash/nope.js", "/_dash-component-suites/dash/"]
)
def test_an_unknown_component_suite_file_is_a_404(server, path):
    assert_error(get(server, path), 404)


@pytest.mark.parametrize(
    "method, path, allow",
    [
        ("GET", "/licenses/borrow", "POST"),
        ("GET", "/licenses/return", "POST"),
        ("GET", "/_dash-update-component", "POST"),
        ("POST", "/licenses/status", "GET, HEAD"),
        ("DELETE", "/borrows", "GET, HEAD"),
        ("PUT", "/analytics/capacity", "GET, HEAD"),
    ],
)
def test_a_route_asked_with_the_wrong_method_is_a_405_saying_which_it_takes(server, method, path, allow):
    response = requests.request(method, server.url + path, timeout=10, headers=server.headers())
    assert_error(response, 405)
    assert response.headers["Allow"] == allow


@pytest.mark.parametrize(
    "method, path",
    [
        ("GET", "/licenses///status"),
        ("GET", "/licenses//status"),
        ("GET", "/licenses/nope"),
        ("GET", "/analytics"),
        ("GET", "/realtime/"),
        ("GET", "/sources/nope"),
        ("POST", "/licenses///status"),
        ("POST", "/nope"),
        ("GET", "/nope"),
        ("DELETE", "/capacity/x"),
    ],
)
def test_an_unknown_path_is_a_json_404(server, method, path):
    assert_error(requests.request(method, server.url + path, timeout=10, headers={"Accept": "application/json"}), 404)


def test_a_browser_asking_for_an_unknown_page_gets_an_html_404_and_the_pages_still_open(server):
    browser = {"Accept": "text/html,application/xhtml+xml,*/*;q=0.8"}
    missing = get(server, "/no-such-page", headers=browser)
    assert missing.status_code == 404 and missing.headers["Content-Type"].startswith("text/html")
    assert "not found" in missing.text.lower() and 'href="/"' in missing.text
    assert "<script" not in get(server, "/%3Cscript%3Ealert(1)%3C%2Fscript%3E", headers=browser).text
    for page in ("/", "/capacity", "/capacity/", "/?tool=x", "/capacity?window=86400"):
        response = get(server, page, headers=browser)
        assert response.status_code == 200 and "_dash-renderer" in response.text, page


# ------------------------------------------------------------------------------------------------------- callbacks


@pytest.fixture(scope="module")
def dependencies(server):
    return get(server, "/_dash-dependencies").json()


def dependency(dependencies, output):
    """Return the server-side callback that has `output` among its outputs."""
    [found] = [d for d in dependencies if output in d["output"].strip(".").split("...") and d["clientside_function"] is None]
    return found


def post_callback(server, body):
    return requests.post(server.url + "/_dash-update-component", json=body, timeout=60)


def test_a_callback_body_for_an_unknown_output_is_a_400(server):
    body = {"output": "nope.children", "outputs": {"id": "nope", "property": "children"}, "inputs": [], "changedPropIds": []}
    assert_error(post_callback(server, body), 400, "output")


def test_a_callback_body_for_a_browser_side_callback_is_a_400(server, dependencies):
    [clientside] = [d for d in dependencies if d["output"] == "browser-tz.data"]
    body = callback_body(clientside, {("url", "pathname"): "/"}, "url.pathname")
    assert_error(post_callback(server, body), 400, "output")


@pytest.mark.parametrize(
    "change",
    [
        ("inputs", lambda entries: entries[:-1]),  # one input short
        ("inputs", lambda entries: [*entries, {"id": "x", "property": "value", "value": 1}]),  # one too many
        ("inputs", lambda entries: [{**entries[0], "id": "nope"}, *entries[1:]]),  # another component's
        ("inputs", lambda entries: [{**entries[0], "property": "nope"}, *entries[1:]]),
        ("state", lambda entries: entries[1:]),
        ("state", lambda entries: [{**entries[0], "id": {"type": "x"}}, *entries[1:]]),
        ("outputs", lambda outputs: [outputs]),  # a list for a single output
        ("outputs", lambda outputs: {**outputs, "id": "nope"}),
        ("changedPropIds", lambda changed: ["nope.value"]),
    ],
    ids=["short", "long", "other-id", "other-property", "state-short", "state-pattern", "outputs-list", "outputs-id", "changed"],
)
def test_a_callback_body_that_does_not_match_its_callback_is_a_400_naming_the_part(server, dependencies, change):
    download = dependency(dependencies, "download.data")
    values = {("download-csv", "n_clicks"): 1, ("tool-filter", "value"): GH, ("time-range", "value"): 1800}
    body = callback_body(download, values, "download-csv.n_clicks")
    assert post_callback(server, body).status_code == 200
    field, mutate = change
    assert_error(post_callback(server, {**body, field: mutate(body[field])}), 400, field)


def test_a_multi_output_callback_with_outputs_of_another_is_a_400(server, dependencies):
    navigate = dependency(dependencies, "tool-filter.value")
    body = callback_body(navigate, {("url", "search"): "", ("url", "pathname"): "/"}, "url.search")
    assert post_callback(server, body).status_code == 200
    assert_error(post_callback(server, {**body, "outputs": body["outputs"][:-1]}), 400, "outputs")


def capacity_values(**changes):
    values = {
        ("capacity-period", "value"): "range",
        ("capacity-range", "start_date"): "2026-01-01",
        ("capacity-range", "end_date"): "2026-01-31",
        ("capacity-tool", "value"): None,
        ("tz-select", "value"): "UTC",
        ("browser-tz", "data"): "UTC",
        ("url", "pathname"): "/capacity",
    }
    values.update({tuple(key.split(".")): value for key, value in changes.items()})
    return values


@pytest.mark.parametrize(
    "changes, field",
    [
        ({"capacity-range.start_date": "9999-12-31", "capacity-range.end_date": "9999-12-31"}, "capacity-range"),
        ({"capacity-range.end_date": "9999-12-31"}, "capacity-range"),
        ({"capacity-range.start_date": "0001-01-01"}, "capacity-range"),
        ({"capacity-range.start_date": ["2026-01-01"]}, "capacity-range"),
        ({"capacity-range.end_date": {"date": "2026-01-31"}}, "capacity-range"),
        ({"capacity-period.value": ["range"]}, "capacity-period"),
        ({"capacity-period.value": {"a": 1}}, "capacity-period"),
        ({"capacity-period.value": 604800}, "capacity-period"),
        ({"capacity-tool.value": {"tool": GH}}, "capacity-tool"),
        ({"capacity-tool.value": [GH]}, "capacity-tool"),
    ],
)
def test_a_capacity_period_or_control_value_it_cannot_be_is_a_400_naming_the_control(server, dependencies, changes, field):
    # The grid's callback for a period picked (it writes the rows after the address's, so as a duplicate output)
    # takes the period; the tool's takes the period and the tool.
    grid = next(d for d in dependencies if "..capacity-table.rowData@" in d["output"])
    for update in (grid, dependency(dependencies, "capacity-advice.children"))[field == "capacity-tool" :]:
        assert post_callback(server, callback_body(update, capacity_values(), "capacity-period.value")).status_code == 200
        body = callback_body(update, capacity_values(**changes), "capacity-period.value")
        assert_error(post_callback(server, body), 400, field)
    download = dependency(dependencies, "capacity-download.data")
    values = {**capacity_values(**changes), ("capacity-csv", "n_clicks"): 1}
    if field != "capacity-tool":  # the download takes no tool
        assert_error(post_callback(server, callback_body(download, values, "capacity-csv.n_clicks")), 400, field)


def test_a_link_with_dates_the_store_cannot_hold_opens_the_default_period(server, dependencies):
    route = dependency(dependencies, "capacity-period.value")
    values = {("url", "pathname"): "/capacity", ("url", "search"): "?from=9999-12-31&to=9999-12-31"}
    response = post_callback(server, callback_body(route, values, "url.pathname"))
    assert response.status_code == 200
    props = response.json()["response"]
    assert props["capacity-period"]["value"] == "604800" and props["capacity-range"]["start_date"] is None
