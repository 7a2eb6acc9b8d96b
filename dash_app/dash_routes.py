"""Dash's own routes made to answer bad requests as the API does: paths and methods no route serves, callback bodies
that match no callback, unknown component files."""

from __future__ import annotations

import threading
from collections.abc import Callable, Mapping
from typing import Any

import dash
from dash.exceptions import DependencyException
from flask import Response, request
from markupsafe import Markup
from werkzeug.exceptions import MethodNotAllowed, NotFound
from werkzeug.routing import Map, RequestRedirect

from dash_app.auth.pages import page
from dash_app.callbacks.capacity import CAPACITY_PATH
from dash_app.web import ApiError, error_response, http_error

# The page's addresses besides "/". Dash serves its page at every path no other route takes; any other path is a 404.
PAGE_PATHS = frozenset({CAPACITY_PATH})
NOT_FOUND_PAGE = Markup('No page of this dashboard has this address. <a href="/">Open the dashboard</a>.')


def register_dash_routes(app: dash.Dash) -> None:
    """Make `app`'s server check callback bodies against the callbacks and refuse paths only Dash's catch-all takes."""
    server = app.server
    prefix = app.config.routes_pathname_prefix
    catch_all, callback_route = prefix + "<path:path>", prefix + "_dash-update-component"
    rules = [rule for rule in server.url_map.iter_rules() if rule.rule != catch_all]
    # The routes besides the catch-all, to tell a path's 404 from a 405. Unlike the server's map they never merge
    # slashes, so /licenses///status is no /licenses/status.
    routes = Map([rule.empty() for rule in rules], merge_slashes=False, strict_slashes=server.url_map.strict_slashes).bind("")
    # The first segments of the routes' paths (licenses, realtime, _dash-layout, ...): their unknown paths get JSON.
    areas = frozenset(_first_segment(rule.rule) for rule in rules) - {""}

    @server.before_request
    def check_request() -> None:
        rule = request.url_rule
        if rule is not None and rule.rule == callback_route and request.method == "POST":
            try:
                body = request.get_json(silent=True)  # cached: Dash reads it again without parsing
            except RecursionError:
                raise ApiError(400, "invalid_json", "body: nested too deeply") from None
            check_callback_body(app.callback_map, body)
            return
        # Only the catch-all took the path (or it would have, for another method): answer as the other routes would.
        caught = rule is not None and rule.rule == catch_all and request.path.rstrip("/") not in PAGE_PATHS
        if caught or (rule is None and isinstance(request.routing_exception, MethodNotAllowed)):
            try:
                routes.match(request.path, request.method)
            except MethodNotAllowed:
                raise
            except (NotFound, RequestRedirect):
                pass
            raise NotFound()

    def not_found(exc: NotFound) -> Response:
        # A person who opened a wrong address reads a page; a program, and every path of an API area, gets JSON.
        wants_page = request.accept_mimetypes.best_match(("application/json", "text/html")) == "text/html"
        if wants_page and _first_segment(request.path) not in areas:
            response = page("Page not found", NOT_FOUND_PAGE)
            response.status_code = 404
            return response
        return http_error(exc)

    server.register_error_handler(NotFound, not_found)
    # Dash raises it for a file under /_dash-component-suites/ it does not serve.
    server.register_error_handler(DependencyException, lambda _exc: error_response(404, "not_found", "path: no such file"))


def _first_segment(path: str) -> str:
    return path.lstrip("/").split("/", 1)[0]


def check_callback_body(callbacks: Mapping[str, Mapping[str, Any]], body: object) -> None:
    """Raise ApiError 400 unless `body` is a request for one of `callbacks` (Dash's callback_map) that matches it.

    Dash would call the callback with whatever values come, in whatever order: too few is a crash, another
    component's value is a wrong answer.
    """
    if not isinstance(body, dict):
        raise ApiError(400, "invalid_input", "body: expected a JSON object")
    output = body.get("output")
    if not isinstance(output, str):
        raise ApiError(400, "invalid_input", "output: must be a string")
    callback = callbacks.get(output)
    if callback is None or "callback" not in callback:  # a clientside callback runs in the browser only
        raise ApiError(400, "invalid_input", "output: no callback on the server has this output")
    if not callback.get("no_output"):
        declared = callback["output"]
        many = isinstance(declared, (list, tuple))
        outputs = body.get("outputs")
        if many != isinstance(outputs, list):
            raise ApiError(400, "invalid_input", f"outputs: must be {'a list' if many else 'an object'} for this callback")
        expected = [{"id": o.component_id, "property": o.component_property} for o in (declared if many else [declared])]
        _check_dependencies("outputs", outputs if many else [outputs], expected)
    _check_dependencies("inputs", body.get("inputs", []), callback["inputs"])
    _check_dependencies("state", body.get("state", []), callback["state"])
    changed = body.get("changedPropIds", [])
    if not isinstance(changed, list):
        raise ApiError(400, "invalid_input", "changedPropIds: must be a list")
    if not any(isinstance(d["id"], dict) for d in callback["inputs"]):  # pattern ids change names: not checked
        inputs = {f"{d['id']}.{d['property']}" for d in callback["inputs"]}
        if not all(isinstance(prop_id, str) and prop_id in inputs for prop_id in changed):
            raise ApiError(400, "invalid_input", "changedPropIds: each must be one of the callback's inputs")


def _check_dependencies(field: str, given: object, expected: list[dict[str, Any]]) -> None:
    """Raise ApiError 400 unless `given` lists one entry per `expected` component and property, in order."""
    if not isinstance(given, list):
        raise ApiError(400, "invalid_input", f"{field}: must be a list")
    if len(given) != len(expected):
        raise ApiError(400, "invalid_input", f"{field}: this callback takes {len(expected)}, not {len(given)}")
    for number, (entry, dependency) in enumerate(zip(given, expected), start=1):
        wanted = dependency["property"]
        if isinstance(dependency["id"], dict):
            # A pattern: one entry (MATCH) or a list of one per matching component (ALL), their ids the components'.
            items = entry if isinstance(entry, list) else [entry]
            matches = all(isinstance(i, dict) and isinstance(i.get("id"), dict) and _property(i) == wanted for i in items)
        else:
            matches = isinstance(entry, dict) and entry.get("id") == dependency["id"] and _property(entry) == wanted
        if not matches:
            raise ApiError(400, "invalid_input", f"{field}: entry {number} must be {dependency['id']}.{wanted}")


def _property(entry: dict[str, Any]) -> object:
    prop = entry.get("property")
    # An output that other callbacks may also set (allow_duplicate) carries "@<hash>" after its property.
    return prop.split("@", 1)[0] if isinstance(prop, str) else prop


def warm_on_first_page(app: dash.Dash, warm: Callable[[], None]) -> None:
    """Call `warm` once, when a browser first asks for the page's layout (the Capacity view's analyses start then).

    A server that only answers the API (a scale-out worker behind the page's, a test) never starts the analysis process
    and its second copy of the history; one that serves the page starts it while the person looks at the overview.
    """
    layout_path = app.config.routes_pathname_prefix + "_dash-layout"
    done = threading.Event()

    @app.server.before_request
    def warm_once() -> None:
        if not done.is_set() and request.path == layout_path:
            done.set()
            warm()
