"""A real OpenID Connect provider for tests: panva's oidc-provider (tests/oidc/provider.mjs) run by Node.

Its npm packages live in tests/oidc/node_modules, installed from tests/oidc/package-lock.json by scripts/test
(`npm ci --prefix tests/oidc`). A browser signs in on its development login page by typing an account id as the login
(any password): the form's fields are input[name=login] and input[name=password], its button button.login-submit.
See tests/oidc/provider.mjs for the consent and sign-out pages and for which claims land in the ID token.
"""

import json
import shutil
import signal
import subprocess
import time
from pathlib import Path
from typing import Any

from dash_app.testing.servers import ROOT, free_port

OIDC_DIR = ROOT / "tests" / "oidc"
PROVIDER_SCRIPT = OIDC_DIR / "provider.mjs"

# The login page's form (dev interactions): type an account id as the login, any password, then press the button.
LOGIN_FIELD = "login"
PASSWORD_FIELD = "password"
SUBMIT_SELECTOR = "button.login-submit"
# The sign-out confirmation page (RP-initiated logout): this button signs out.
LOGOUT_SELECTOR = "button[name=logout][value=yes]"


def ensure_installed() -> None:
    """Raise a clear error unless Node and the provider's npm packages (tests/oidc/node_modules) are there."""
    if shutil.which("node") is None:
        raise RuntimeError("node is not on PATH: the tests' OpenID Connect provider runs on Node.js 20 or later")
    if not (OIDC_DIR / "node_modules" / "oidc-provider" / "package.json").is_file():
        raise RuntimeError(
            f"{OIDC_DIR / 'node_modules'} is missing: install the test OpenID Connect provider with "
            f"`npm ci --prefix {OIDC_DIR}` (scripts/test does it)"
        )


class OidcProvider:
    """A real OpenID Connect provider on a free loopback port, its config and log in `tmp_path`; stop() ends it.

    `clients` are OIDC client metadata (client_id, client_secret, redirect_uris, post_logout_redirect_uris,
    token_endpoint_auth_method; grant_types ["authorization_code"] and response_types ["code"] by default).
    `accounts` maps an account id (what is typed as the login) to its claims (sub defaults to the id; name,
    preferred_username, roles, groups). `ttl` overrides lifetimes in seconds, e.g. {"IdToken": 60, "Session": 60}.
    With `auto_consent` (the default) no consent page is shown; without it the first sign-in to a client shows one.
    """

    def __init__(
        self,
        tmp_path: Path,
        clients: list[dict[str, Any]],
        accounts: dict[str, dict[str, Any]],
        ttl: dict[str, int] | None = None,
        *,
        auto_consent: bool = True,
        port: int | None = None,
    ) -> None:
        ensure_installed()
        self.dir = Path(tmp_path).resolve() / "oidc"
        self.dir.mkdir(parents=True, exist_ok=True)
        self.port = port or free_port()
        self.issuer = f"http://127.0.0.1:{self.port}"
        self.url = self.issuer
        self.discovery_url = self.issuer + "/.well-known/openid-configuration"
        self.config_path = self.dir / f"config-{self.port}.json"
        self.config_path.write_text(
            json.dumps({"clients": clients, "accounts": accounts, "ttl": ttl or {}, "autoConsent": auto_consent}, indent=2)
        )
        self.log_path = self.dir / f"provider-{self.port}.log"
        self.process: subprocess.Popen[bytes] | None = None
        self.start()

    def start(self, timeout: float = 30) -> None:
        """Start the provider (again: sessions, grants and tokens are kept in memory and lost) on the same port.

        Return once it has printed READY; raise with its log if it exits or is not ready within `timeout` seconds.
        """
        self._log = open(self.log_path, "a")
        start = self._log.tell()
        self.process = subprocess.Popen(
            ["node", str(PROVIDER_SCRIPT), str(self.config_path), str(self.port)],
            cwd=OIDC_DIR,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if f"READY {self.issuer}\n" in self._read_log(start):
                return
            if self.process.poll() is not None:
                raise RuntimeError(f"the OpenID Connect provider exited early:\n{self._read_log(start)}")
            time.sleep(0.05)
        self.stop()
        raise RuntimeError(f"the OpenID Connect provider was not ready within {timeout} s:\n{self._read_log(start)}")

    def _read_log(self, start: int) -> str:
        with open(self.log_path) as log:
            log.seek(start)
            return log.read()

    def stop(self, sig: int = signal.SIGTERM) -> None:
        """Stop the provider and wait for it; SIGKILL it after 10 s."""
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(sig)
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self._log.close()
