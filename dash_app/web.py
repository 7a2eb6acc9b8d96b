"""HTTP helpers shared by the JSON routes: errors, the bearer token, body and query parsing."""

import functools
import hmac
import json
import logging
from collections.abc import Callable
from typing import Any, ParamSpec, TypeVar

from flask import Flask, Response, jsonify, request
from gunicorn.http.errors import NoMoreData, ParseException
from werkzeug.exceptions import HTTPException, MethodNotAllowed

from dash_app.events import name_problem
from dash_app.state import get_state
from dash_app.store.database import DATABASE_DOWN, one_line

log = logging.getLogger(__name__)

MAX_BODY_BYTES = 64 * 1024
MAX_CALLBACK_BODY_BYTES = 1024 * 1024  # Dash's callback requests carry the page's inputs and state
DASH_ROUTES_PREFIX = "/_dash-"

P = ParamSpec("P")
R = TypeVar("R")
D = TypeVar("D")


class ApiError(Exception):
    """A client error, answered as JSON {"error", "detail"} with `status`."""

    def __init__(self, status: int, error: str, detail: str) -> None:
        super().__init__(detail)
        self.status = status
        self.error = error
        self.detail = detail


def error_response(status: int, error: str, detail: str) -> Response:
    """Return a JSON error response."""
    response = jsonify({"error": error, "detail": detail})
    response.status_code = status
    return response


def body_limit(path: str) -> int:
    """Return the most body bytes a request to `path` may carry (the server reads no more before the app answers)."""
    return MAX_CALLBACK_BODY_BYTES if path.startswith(DASH_ROUTES_PREFIX) else MAX_BODY_BYTES


def register_request_guards(server: Flask) -> None:
    """Limit every request's body before it is read, and answer every HTTP error as JSON."""

    @server.before_request
    def limit_body() -> None:
        limit = body_limit(request.path)
        # Checked on the header first, so a large body is refused unread; a chunked body is cut at the limit.
        request.max_content_length = limit
        if request.content_length is not None and request.content_length > limit:
            raise ApiError(413, "body_too_large", f"body: at most {limit} bytes")
        if request.content_length is None and "chunked" in request.headers.get("Transfer-Encoding", "").lower():
            # Werkzeug cuts a chunked body at the limit without a word; one byte more means it was too large.
            if len(request.get_data(cache=True)) >= limit and request.environ["wsgi.input"].read(1):
                raise ApiError(413, "body_too_large", f"body: at most {limit} bytes")

    server.register_error_handler(ApiError, lambda exc: error_response(exc.status, exc.error, exc.detail))
    server.register_error_handler(HTTPException, http_error)
    # The server reads a chunked body while the app asks for it: a malformed one surfaces here, mid-request.
    server.register_error_handler(ParseException, _malformed_body)
    server.register_error_handler(NoMoreData, _malformed_body)
    # A read the database cannot answer now (a server gone, a file being written back): 503, never a traceback.
    for kind in DATABASE_DOWN:
        server.register_error_handler(kind, _database_down)


def http_error(exc: HTTPException) -> Response:
    """Answer a Werkzeug HTTP error (404, 405, ...) as JSON; a 405 says in Allow which methods the path takes."""
    if exc.code == 413:
        return error_response(413, "body_too_large", f"body: at most {request.max_content_length} bytes")
    name = (exc.name or "error").lower().replace(" ", "_")
    response = error_response(exc.code or 500, name, exc.description or name)
    if isinstance(exc, MethodNotAllowed) and exc.valid_methods:
        # OPTIONS is answered on every path, so naming it says nothing.
        response.headers["Allow"] = ", ".join(sorted(set(exc.valid_methods) - {"OPTIONS"}))
    return response


def _database_down(exc: Exception) -> Response:
    # The driver's words (host, user) are for the log, not for whoever asked.
    log.warning("a read failed, the database being unavailable: %s", one_line(exc))
    response = error_response(503, "database_unavailable", "database: unavailable; try again shortly")
    response.headers["Retry-After"] = "5"
    return response


def _malformed_body(_exc: Exception) -> Response:
    return error_response(400, "invalid_body", "body: malformed or incomplete request body")


def require_token(view: Callable[P, R]) -> Callable[P, R | Response]:
    """Reject the request with 401 unless it carries `Authorization: Bearer <the API token>`."""

    @functools.wraps(view)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> R | Response:
        token = get_state().settings.api_token
        if token is None:  # create_app always sets one
            raise RuntimeError("no API token is configured")
        expected = token.encode()
        header = request.headers.get("Authorization", "")
        scheme, _, given = header.partition(" ")
        # compare_digest takes the same time wherever the strings differ.
        if scheme.lower() != "bearer" or not hmac.compare_digest(given.strip().encode(), expected):
            response = error_response(401, "unauthorized", "Authorization: send 'Bearer <token>' with the API token")
            response.headers["WWW-Authenticate"] = "Bearer"
            return response
        return view(*args, **kwargs)

    return wrapper


def json_body() -> dict[str, Any]:
    """Return the request's JSON object, or raise ApiError 400 (the request guards answer 413 past 64 KiB)."""
    raw = request.get_data(cache=True)
    try:
        body = json.loads(raw)
    except (ValueError, UnicodeDecodeError):
        raise ApiError(400, "invalid_json", "body: not valid JSON") from None
    except RecursionError:
        raise ApiError(400, "invalid_json", "body: nested too deeply") from None
    if not isinstance(body, dict):
        raise ApiError(400, "invalid_json", "body: expected a JSON object")
    return body


def name_field(body: dict[str, Any], field: str) -> str:
    """Return body[field] as a checked name (see dash_app.events), or raise ApiError 400 naming the field."""
    value = body.get(field)
    problem = "required" if value is None else name_problem(value)
    if problem is not None or not isinstance(value, str):  # name_problem refuses every non-string
        raise ApiError(400, "invalid_input", f"{field}: {problem}")
    return value


def query_number(name: str, default: D, minimum: float, maximum: float) -> float | D:
    """Return the query parameter `name` as a number within [minimum, maximum], or raise ApiError 400."""
    raw = request.args.get(name)
    if raw is None:
        return default
    try:
        value = float(raw)
    except ValueError:
        raise ApiError(400, "invalid_query", f"{name}: must be a number of seconds") from None
    if not minimum <= value <= maximum:
        raise ApiError(400, "invalid_query", f"{name}: must be between {minimum:g} and {maximum:g}")
    return int(value) if value.is_integer() else value
