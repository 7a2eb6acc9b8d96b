"""HTTP helpers shared by the JSON routes: errors, the bearer token, body and query parsing."""

import functools
import hmac
import json
import unicodedata

from flask import current_app, jsonify, request

from dash_app.licenses.inventory import MAX_NAME_LENGTH

MAX_BODY_BYTES = 64 * 1024


class ApiError(Exception):
    """A client error, answered as JSON {"error", "detail"} with `status`."""

    def __init__(self, status, error, detail):
        super().__init__(detail)
        self.status = status
        self.error = error
        self.detail = detail


def error_response(status, error, detail):
    """Return a JSON error response."""
    response = jsonify({"error": error, "detail": detail})
    response.status_code = status
    return response


def register_error_handler(blueprint):
    """Answer ApiError raised in `blueprint`'s routes as JSON."""
    blueprint.register_error_handler(ApiError, lambda exc: error_response(exc.status, exc.error, exc.detail))


def require_token(view):
    """Reject the request with 401 unless it carries `Authorization: Bearer <the API token>`."""

    @functools.wraps(view)
    def wrapper(*args, **kwargs):
        expected = current_app.extensions["dash_app"].config.api_token.encode()
        header = request.headers.get("Authorization", "")
        scheme, _, given = header.partition(" ")
        # compare_digest takes the same time wherever the strings differ.
        if scheme.lower() != "bearer" or not hmac.compare_digest(given.strip().encode(), expected):
            response = error_response(401, "unauthorized", "Authorization: send 'Bearer <token>' with the API token")
            response.headers["WWW-Authenticate"] = "Bearer"
            return response
        return view(*args, **kwargs)

    return wrapper


def json_body():
    """Return the request's JSON object, or raise ApiError (413 past 64 KiB, 400 otherwise)."""
    if request.content_length is not None and request.content_length > MAX_BODY_BYTES:
        raise ApiError(413, "body_too_large", f"body: at most {MAX_BODY_BYTES} bytes")
    raw = request.stream.read(MAX_BODY_BYTES + 1)
    if len(raw) > MAX_BODY_BYTES:
        raise ApiError(413, "body_too_large", f"body: at most {MAX_BODY_BYTES} bytes")
    try:
        body = json.loads(raw)
    except (ValueError, UnicodeDecodeError):
        raise ApiError(400, "invalid_json", "body: not valid JSON") from None
    if not isinstance(body, dict):
        raise ApiError(400, "invalid_json", "body: expected a JSON object")
    return body


def name_field(body, field):
    """Return body[field] as a checked name: text, not empty, at most 200 characters, no control characters."""
    value = body.get(field)
    if value is None:
        raise ApiError(400, "invalid_field", f"{field}: required")
    if not isinstance(value, str):
        raise ApiError(400, "invalid_field", f"{field}: must be a string")
    if not value.strip():
        raise ApiError(400, "invalid_field", f"{field}: must not be empty")
    if len(value) > MAX_NAME_LENGTH:
        raise ApiError(400, "invalid_field", f"{field}: at most {MAX_NAME_LENGTH} characters")
    if any(unicodedata.category(ch) == "Cc" for ch in value):
        raise ApiError(400, "invalid_field", f"{field}: must not contain control characters")
    return value


def query_number(name, default, minimum, maximum):
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
