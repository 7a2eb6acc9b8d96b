"""The few plain pages sign-in needs (failed, sign out, signed out): text escaped, no script, no data."""

from __future__ import annotations

from flask import Response
from markupsafe import Markup, escape

from dash_app.vendor import BOOTSTRAP_CSS

_PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<title>{title} · License usage</title><link rel="stylesheet" href="{stylesheet}"></head>
<body class="bg-light"><main class="container py-5" style="max-width: 32rem">
<h1 class="h4 mb-3">{title}</h1><p id="auth-message">{message}</p>{extra}</main></body></html>"""


def page(title: str, message: str | Markup, retry: bool = False, form: tuple[str, str, str] | None = None) -> Response:
    """Return a small HTML page; `message` is escaped unless it is Markup; `form` is (action, button, csrf token)."""
    extra = Markup("")
    if form is not None:
        action, button, csrf = form
        extra = Markup(
            '<form method="post" action="{}"><input type="hidden" name="csrf" value="{}">'
            '<button type="submit" id="auth-submit" class="btn btn-primary">{}</button></form>'
        ).format(action, csrf, button)
    if retry:
        extra += Markup('<a id="auth-sign-in" class="btn btn-primary" href="/auth/login">Sign in</a>')
    body = _PAGE.format(stylesheet=BOOTSTRAP_CSS, title=escape(title), message=escape(message), extra=extra)
    return Response(body, mimetype="text/html", headers={"Cache-Control": "no-store"})
