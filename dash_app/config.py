"""The one home of configuration: defaults, then environment variables, then CLI flags."""

import argparse
import dataclasses
import ipaddress
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, NoReturn


class ConfigError(ValueError):
    """A setting has a value the app cannot use; the message names the setting."""


def _bool(text: object) -> bool:
    lowered = str(text).strip().lower()
    if lowered in ("1", "true", "yes", "on"):
        return True
    if lowered in ("0", "false", "no", "off", ""):
        return False
    raise ValueError(f"expected a boolean, got {text!r}")


def _currency(text: object) -> str:
    value = str(text).strip()
    if len(value) > 8 or not all(ch.isprintable() for ch in value):
        raise ValueError(f"expected a short currency name such as EUR, got {text!r}")
    return value


def _list(text: object) -> tuple[str, ...]:
    return tuple(part for part in str(text).split(os.pathsep) if part)


def _redis_url(text: object) -> str:
    value = str(text).strip()
    if not value.startswith(("redis://", "rediss://", "unix://")):
        raise ValueError(f"expected redis://HOST:PORT/DB (or rediss://, unix://), got {value!r}")
    return value


def _prefix(text: object) -> str:
    value = str(text).strip()
    if not value or len(value) > 64 or not all(ch.isalnum() or ch in "_-.:" for ch in value):
        raise ValueError(f"expected up to 64 letters, digits or _-.: , got {text!r}")
    return value


def _servers(text: object) -> tuple[str, ...]:
    """Parse `PORT@HOST,PORT@HOST`: license servers as their vendors' tools name them."""
    servers = tuple(part.strip() for part in str(text).split(",") if part.strip())
    for server in servers:
        port, at, host = server.partition("@")
        if not at or not port.isdigit() or not host or any(ch.isspace() or not ch.isprintable() for ch in host):
            raise ValueError(f"expected PORT@HOST, got {server!r}")
    return servers


AUTH_MODES = ("none", "oidc", "proxy")


def _auth_mode(text: object) -> str:
    value = str(text).strip().lower()
    if value not in AUTH_MODES:
        raise ValueError(f"expected one of {', '.join(AUTH_MODES)}, got {text!r}")
    return value


def _http_url(text: object) -> str:
    value = str(text).strip().rstrip("/")
    if not value.startswith(("https://", "http://")) or "#" in value or "?" in value:
        raise ValueError(f"expected an https:// URL without query or fragment, got {text!r}")
    return value


def _networks(text: object) -> tuple[str, ...]:
    parts = tuple(part.strip() for part in str(text).split(",") if part.strip())
    for part in parts:
        ipaddress.ip_network(part, strict=False)  # ValueError names the bad one
    return parts


def header_name(text: object) -> str:
    """Parse an HTTP header name of letters, digits and - ("" for none)."""
    value = str(text).strip()
    # nginx and gunicorn drop a name with _ (a client could spell X_User for X-User); anything else is no header name.
    if value and not all(ch.isascii() and (ch.isalnum() or ch == "-") for ch in value):
        raise ValueError(f"expected a header name of letters, digits and -, got {text!r}")
    return value


def _role_map(text: object) -> tuple[tuple[str, str], ...]:
    pairs = []
    for part in (p.strip() for p in str(text).split(",")):
        if not part:
            continue
        group, eq, role = part.rpartition("=")
        if not eq or not group.strip() or role.strip() not in ("viewer", "analyst", "admin"):
            raise ValueError(f"expected GROUP=viewer|analyst|admin, got {part!r}")
        pairs.append((group.strip(), role.strip()))
    return tuple(pairs)


@dataclass(frozen=True)
class Setting:
    """One setting: its field name, environment variable, parser, CLI flag and help line."""

    name: str
    env: str
    parse: Callable[[str], Any]
    flag: str | None  # None: set by the environment variable only
    help: str
    minimum: float | None = None
    repeat: bool = False  # a list: the flag may be given again, the variable separates values (see `parse`)
    metavar: str | None = None


SETTINGS = [
    Setting("host", "DASH_APP_HOST", str, "--host", "address to listen on"),
    Setting("port", "DASH_APP_PORT", int, "--port", "port to listen on", 0),
    Setting("threads", "DASH_APP_THREADS", int, "--threads", "server threads (each open stream holds one)", 1),
    Setting(
        "db",
        "DASH_APP_DB",
        str,
        "--db",
        "SQLite database path (':memory:' keeps nothing) or postgresql://user:password@host:port/dbname",
    ),
    Setting("tools_file", "DASH_APP_TOOLS", str, "--tools", "JSON inventory of tools (default: the bundled one)"),
    Setting("api_token", "DASH_APP_API_TOKEN", str, None, "bearer token for write endpoints (random when unset)"),
    Setting("demo", "DASH_APP_DEMO", _bool, "--demo", "play demo traffic"),
    Setting("demo_speed", "DASH_APP_DEMO_SPEED", float, "--demo-speed", "demo traffic speed factor", 0.01),
    Setting("backfill_hours", "DASH_APP_BACKFILL_HOURS", float, "--backfill", "hours of past demo traffic at start", 0),
    Setting("stream_interval", "DASH_APP_STREAM_INTERVAL", float, "--stream-interval", "seconds between stream ticks", 0.05),
    Setting("refresh_ms", "DASH_APP_REFRESH_MS", int, "--refresh-ms", "dashboard refresh interval in ms", 200),
    Setting("retention_hours", "DASH_APP_RETENTION_HOURS", float, "--retention-hours", "in-memory history, hours", 0.01),
    Setting("max_borrows", "DASH_APP_MAX_BORROWS", int, "--max-borrows", "buffer cap on borrow events", 0),
    Setting("max_returns", "DASH_APP_MAX_RETURNS", int, "--max-returns", "buffer cap on return events", 0),
    Setting("max_failures", "DASH_APP_MAX_FAILURES", int, "--max-failures", "buffer cap on failure events", 0),
    Setting("history_days", "DASH_APP_HISTORY_DAYS", float, "--history-days", "days of per-minute history in SQLite", 0.01),
    Setting(
        "max_unknown_tools",
        "DASH_APP_MAX_UNKNOWN_TOOLS",
        int,
        "--max-unknown-tools",
        "distinct names outside the inventory charted on their own; the rest share one series",
        0,
    ),
    Setting(
        "header_timeout",
        "DASH_APP_HEADER_TIMEOUT",
        float,
        "--header-timeout",
        "seconds a client has to send its whole request (head, and a body up to the route's limit)",
        0.5,
    ),
    Setting(
        "max_connections",
        "DASH_APP_MAX_CONNECTIONS",
        int,
        "--max-connections",
        "connections held open at once; past it the oldest not yet sent a whole request is closed",
        16,
    ),
    Setting(
        "currency", "DASH_APP_CURRENCY", _currency, "--currency", "currency shown with every cost, e.g. EUR (none by default)"
    ),
    Setting(
        "billing_days",
        "DASH_APP_BILLING_DAYS",
        int,
        "--billing-days",
        "days one payment of a tool's commit_price covers (commit advice)",
        1,
    ),
    Setting(
        "lmstat_servers",
        "DASH_APP_LMSTAT",
        _servers,
        "--lmstat",
        "FlexNet license server to poll with lmutil lmstat (repeat for several)",
        repeat=True,
        metavar="PORT@HOST",
    ),
    Setting(
        "rlmstat_servers",
        "DASH_APP_RLMSTAT",
        _servers,
        "--rlmstat",
        "RLM license server to poll with rlmutil rlmstat (repeat for several)",
        repeat=True,
        metavar="PORT@HOST",
    ),
    Setting("lmutil", "DASH_APP_LMUTIL", str, "--lmutil", "the lmutil program (default: lmutil on PATH)"),
    Setting("rlmutil", "DASH_APP_RLMUTIL", str, "--rlmutil", "the rlmutil program (default: rlmutil on PATH)"),
    Setting("poll_seconds", "DASH_APP_POLL_SECONDS", float, "--poll-seconds", "seconds between polls of each license server", 1),
    Setting("alerts_file", "DASH_APP_ALERTS", str, "--alerts", "JSON file of alert rules and where to notify (none by default)"),
    Setting(
        "public_url",
        "DASH_APP_PUBLIC_URL",
        str,
        "--public-url",
        "the dashboard's address as its users reach it, for links in alerts (default: http://HOST:PORT)",
    ),
    Setting(
        "redis_url",
        "DASH_APP_REDIS_URL",
        _redis_url,
        "--redis",
        "Redis to share the event log and the pool through (several workers and hosts; none by default)",
        metavar="URL",
    ),
    Setting("redis_prefix", "DASH_APP_REDIS_PREFIX", _prefix, "--redis-prefix", "prefix of this deployment's Redis keys"),
    Setting("workers", "DASH_APP_WORKERS", int, "--workers", "server processes (more than one needs --redis)", 1),
    Setting("auth", "DASH_APP_AUTH", _auth_mode, "--auth", "who may read: none (everyone), oidc or proxy (see Who may look)"),
    Setting("oidc_issuer", "DASH_APP_OIDC_ISSUER", _http_url, "--oidc-issuer", "OpenID Connect issuer URL (discovery)"),
    Setting("oidc_client_id", "DASH_APP_OIDC_CLIENT_ID", str, "--oidc-client-id", "OpenID Connect client id"),
    Setting("oidc_client_secret", "DASH_APP_OIDC_CLIENT_SECRET", str, None, "OpenID Connect client secret"),
    Setting("oidc_scopes", "DASH_APP_OIDC_SCOPES", str, "--oidc-scopes", "scopes asked of the identity provider"),
    Setting("oidc_roles_claim", "DASH_APP_OIDC_ROLES_CLAIM", str, "--oidc-roles-claim", "ID token claim holding roles or groups"),
    Setting(
        "proxy_user_header",
        "DASH_APP_PROXY_USER_HEADER",
        header_name,
        "--proxy-user-header",
        "header naming the user (--auth proxy)",
    ),
    Setting(
        "proxy_groups_header",
        "DASH_APP_PROXY_GROUPS_HEADER",
        header_name,
        "--proxy-groups-header",
        "header listing the user's groups, comma-separated (--auth proxy)",
    ),
    Setting(
        "trusted_proxies",
        "DASH_APP_TRUSTED_PROXIES",
        _networks,
        "--trusted-proxy",
        "address range whose user header is believed (--auth proxy; repeat for several)",
        repeat=True,
        metavar="CIDR",
    ),
    Setting(
        "role_map",
        "DASH_APP_ROLE_MAP",
        _role_map,
        "--role-map",
        "groups or roles to map to a role, GROUP=ROLE,... (viewer, analyst, admin map to themselves)",
    ),
    Setting(
        "pseudonymize_users",
        "DASH_APP_PSEUDONYMIZE_USERS",
        _bool,
        "--pseudonymize-users",
        "show readers below analyst stable pseudonyms instead of no user names",
    ),
    Setting("pseudonym_key", "DASH_APP_PSEUDONYM_KEY", str, None, "key of the pseudonyms (keep it secret and fixed)"),
    Setting("secret_key", "DASH_APP_SECRET_KEY", str, None, "key that signs session cookies (random per run when unset)"),
    Setting("session_hours", "DASH_APP_SESSION_HOURS", float, "--session-hours", "hours a sign-in lasts (--auth oidc)", 0.0001),
    Setting("metrics_token", "DASH_APP_METRICS_TOKEN", str, "--metrics-token", "bearer token that may read /metrics"),
    Setting(
        "flexlm_logs",
        "DASH_APP_FLEXLM_LOGS",
        _list,
        "--flexlm-log",
        "FlexNet debug log to follow (repeat for several)",
        repeat=True,
    ),
]


@dataclass(frozen=True)
class Config:
    """Every setting of one running app."""

    host: str = "127.0.0.1"
    port: int = 8050
    threads: int = 256
    db: str = "dash_app.db"
    tools_file: str | None = None
    api_token: str | None = None
    demo: bool = True
    demo_speed: float = 1.0
    backfill_hours: float = 0.0
    stream_interval: float = 1.0
    refresh_ms: int = 1000
    retention_hours: float = 6.0
    max_borrows: int = 100_000
    max_returns: int = 100_000
    max_failures: int = 10_000
    history_days: float = 30.0
    max_unknown_tools: int = 50
    header_timeout: float = 10.0
    max_connections: int = 10_000
    currency: str = ""
    billing_days: int = 30
    flexlm_logs: tuple[str, ...] = ()
    lmstat_servers: tuple[str, ...] = ()
    rlmstat_servers: tuple[str, ...] = ()
    lmutil: str = "lmutil"
    rlmutil: str = "rlmutil"
    poll_seconds: float = 30.0
    alerts_file: str | None = None
    public_url: str = ""
    redis_url: str | None = None
    redis_prefix: str = "dash_app"
    workers: int = 1
    auth: str = "none"
    oidc_issuer: str = ""
    oidc_client_id: str = ""
    oidc_client_secret: str = ""
    oidc_scopes: str = "openid profile"
    oidc_roles_claim: str = "roles"
    proxy_user_header: str = "X-Forwarded-User"
    proxy_groups_header: str = ""
    trusted_proxies: tuple[str, ...] = ()
    role_map: tuple[tuple[str, str], ...] = ()
    pseudonymize_users: bool = False
    pseudonym_key: str = ""
    secret_key: str = ""
    metrics_token: str = ""
    session_hours: float = 8.0

    @property
    def retention_seconds(self) -> float:
        return self.retention_hours * 3600

    def replace(self, **changes: Any) -> "Config":
        """Return a copy with `changes` applied and checked."""
        return _checked(dataclasses.replace(self, **changes))


def _checked(config: Config) -> Config:
    for setting in SETTINGS:
        value: Any = getattr(config, setting.name)
        if setting.repeat and not isinstance(value, tuple):
            try:
                value = setting.parse(value) if isinstance(value, str) else tuple(value)
            except ValueError as exc:
                raise ConfigError(f"{setting.flag or setting.env}: {exc}") from None
            config = dataclasses.replace(config, **{setting.name: value})
        if setting.parse in (_servers, _networks) and setting.repeat:
            try:
                for item in value:
                    setting.parse(item)
            except ValueError as exc:
                raise ConfigError(f"{setting.flag or setting.env}: {exc}") from None
        if setting.minimum is not None and value is not None and value < setting.minimum:
            where = setting.flag or setting.env
            raise ConfigError(f"{where}: must be at least {setting.minimum:g}, got {value}")
    if config.workers > 1 and not config.redis_url:
        # Each worker would hold its own buffer and pool: two histories, and licenses granted twice.
        raise ConfigError(
            f"--workers: {config.workers} workers need --redis (DASH_APP_REDIS_URL), where they share the event log "
            "and the pool; without it each worker would keep its own"
        )
    _check_auth(config)
    return config


def _check_auth(config: Config) -> None:
    """Raise ConfigError when the sign-in settings cannot work together."""
    if config.auth == "oidc":
        for value, where in (
            (config.oidc_issuer, "--oidc-issuer"),
            (config.oidc_client_id, "--oidc-client-id"),
            (config.oidc_client_secret, "DASH_APP_OIDC_CLIENT_SECRET"),
        ):
            if not value:
                raise ConfigError(f"{where}: required with --auth oidc")
        if "openid" not in config.oidc_scopes.split():
            raise ConfigError(f"--oidc-scopes: must include openid, got {config.oidc_scopes!r}")
    if config.auth == "proxy" and not config.trusted_proxies:
        # Anybody could send the user header: only a proxy's word counts, so name the proxy.
        raise ConfigError("--trusted-proxy: required with --auth proxy (the address range of the proxy that signs users in)")
    if config.pseudonymize_users and len(config.pseudonym_key) < 16:
        # A pseudonym must stay the same across restarts and workers, and must not be guessable from the name.
        raise ConfigError("DASH_APP_PSEUDONYM_KEY: --pseudonymize-users needs a secret key of at least 16 characters")
    if config.auth != "none" and config.workers > 1 and not config.secret_key:
        raise ConfigError("DASH_APP_SECRET_KEY: several workers need one key to sign their session cookies")


def _env_changes(environ: Mapping[str, str] | None) -> dict[str, Any]:
    """Return the settings the environment's DASH_APP_* variables give, parsed but not yet checked together."""
    environ = os.environ if environ is None else environ
    changes: dict[str, Any] = {}
    for setting in SETTINGS:
        raw = environ.get(setting.env)
        if raw is None or raw == "":
            continue
        try:
            changes[setting.name] = setting.parse(raw)
        except ValueError as exc:
            raise ConfigError(f"{setting.env}: {exc}") from None
    return changes


def from_env(environ: Mapping[str, str] | None = None, base: Config | None = None) -> Config:
    """Return a Config with the environment's DASH_APP_* variables over `base` (or the defaults)."""
    return (base or Config()).replace(**_env_changes(environ))


def coerce(config: Config | Mapping[str, Any] | None) -> Config:
    """Accept None, a Config, or a dict of field names (the test_config style) and return a Config."""
    if config is None:
        return from_env()
    if isinstance(config, Config):
        return _checked(config)
    known = {f.name for f in dataclasses.fields(Config)}
    unknown = set(config) - known
    if unknown:
        raise ConfigError(f"unknown settings: {', '.join(sorted(unknown))}")
    # Checked once, after the given settings are over the environment's: either may satisfy the other.
    return Config().replace(**{**_env_changes(None), **config})


class OneLineParser(argparse.ArgumentParser):
    """An argument parser whose errors are one line naming the flag (no usage block), with exit status 2."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {message}\n")


def _flag_type(parse: Callable[[str], Any]) -> Callable[[str], Any]:
    """Return `parse` with its ValueError's message kept for argparse (which would print a generic one)."""

    def checked(text: str) -> Any:
        try:
            return parse(text)
        except ValueError as exc:
            raise argparse.ArgumentTypeError(str(exc)) from None

    checked.__name__ = getattr(parse, "__name__", "value")
    return checked


def add_arguments(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """Add one CLI flag per setting; flags left out keep the environment's value."""
    for setting in SETTINGS:
        if setting.flag is None:
            continue
        dest = setting.name
        if setting.parse is _bool:
            parser.add_argument(setting.flag, dest=dest, action=argparse.BooleanOptionalAction, default=None, help=setting.help)
        elif setting.repeat:
            parser.add_argument(
                setting.flag,
                dest=dest,
                action="append",
                default=None,
                metavar=setting.metavar or "PATH",
                help=f"{setting.help} [{setting.env}]",
            )
        else:
            parser.add_argument(
                setting.flag, dest=dest, type=_flag_type(setting.parse), default=None, help=f"{setting.help} [{setting.env}]"
            )
    return parser


def from_args(namespace: argparse.Namespace, environ: Mapping[str, str] | None = None) -> Config:
    """Return the Config given by the environment with the parsed CLI flags over it."""
    flags = {s.name: getattr(namespace, s.name) for s in SETTINGS if getattr(namespace, s.name, None) is not None}
    # Flags win first, then the settings are checked against each other once: an environment's DASH_APP_AUTH=proxy
    # is complete with a --trusted-proxy flag, and a flag's --auth none needs nothing the environment left out.
    return Config().replace(**{**_env_changes(environ), **flags})
