"""The session cookie's one key: the signed-in identity the guard reads and the sign-in writes (not named `session`,
which would hide flask.session in dash_app.auth)."""

SESSION_KEY = "who"  # the signed-in identity in the session cookie (auth.oidc): user, role, exp, csrf, id_token
