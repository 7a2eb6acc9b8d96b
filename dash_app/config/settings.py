"""Every setting, declared once on `Config`: its default, DASH_APP_* variable, flag, help line and check."""

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from dash_app.config.parsers import (
    ConfigError,
    header_name,
    parse_auth_mode,
    parse_bool,
    parse_currency,
    parse_folder_or_none,
    parse_http_url,
    parse_ldap_url,
    parse_networks,
    parse_paths,
    parse_prefix,
    parse_redis_url,
    parse_role_map,
    parse_servers,
)
from dash_app.pressure import TRUE_DENIAL_MINUTES

_KEY = "setting"  # where a Config field's metadata holds its Setting


@dataclass(frozen=True)
class Setting:
    """One setting: its field name, default, environment variable, parser, CLI flag and help line."""

    name: str
    default: Any
    env: str
    parse: Callable[[str], Any]
    flag: str | None  # None: set by the environment variable only
    help: str
    minimum: float | None = None
    repeat: bool = False  # a list: the flag may be given again, the variable separates values (see `parse`)
    metavar: str | None = None


def setting(
    default: Any,
    env: str,
    flag: str | None,
    help: str,
    parse: Callable[[str], Any] = str,
    minimum: float | None = None,
    repeat: bool = False,
    metavar: str | None = None,
    secret: bool = False,
) -> Any:
    """Declare a Config field: its default and how the environment and the command line set it (`secret`: not in a repr)."""
    declared = Setting("", default, env, parse, flag, help, minimum, repeat, metavar)
    return dataclasses.field(default=default, metadata={_KEY: declared}, repr=not secret)


def listed(env: str, flag: str, help: str, parse: Callable[[str], Any], metavar: str = "PATH") -> Any:
    """Declare a Config field that holds a list: empty by default, its flag given once per item."""
    return setting((), env, flag, help, parse, repeat=True, metavar=metavar)


@dataclass(frozen=True)
class Config:
    """Every setting of one running app."""

    host: str = setting("127.0.0.1", "DASH_APP_HOST", "--host", "address to listen on")
    port: int = setting(8050, "DASH_APP_PORT", "--port", "port to listen on", int, 0)
    threads: int = setting(256, "DASH_APP_THREADS", "--threads", "server threads (each open stream holds one)", int, 1)
    db: str = setting(
        "dash_app.db",
        "DASH_APP_DB",
        "--db",
        "SQLite database path (':memory:' keeps nothing) or postgresql://user:password@host:port/dbname",
    )
    analysis_dir: str = setting(
        "~/.cache/dash_app",
        "DASH_APP_ANALYSIS_DIR",
        "--analysis-dir",
        "folder where the analysis process keeps its copy of a PostgreSQL history, or none (a SQLite file's sits beside it)",
        parse_folder_or_none,
    )
    tools_file: str | None = setting(None, "DASH_APP_TOOLS", "--tools", "JSON inventory of tools (default: the bundled one)")
    api_token: str | None = setting(None, "DASH_APP_API_TOKEN", None, "bearer token for write endpoints (random when unset)")
    demo: bool = setting(True, "DASH_APP_DEMO", "--demo", "play demo traffic", parse_bool)
    demo_speed: float = setting(1.0, "DASH_APP_DEMO_SPEED", "--demo-speed", "demo traffic speed factor", float, 0.01)
    backfill_hours: float = setting(0.0, "DASH_APP_BACKFILL_HOURS", "--backfill", "hours of past demo traffic at start", float, 0)
    stream_interval: float = setting(
        1.0, "DASH_APP_STREAM_INTERVAL", "--stream-interval", "seconds between stream ticks", float, 0.05
    )
    refresh_ms: int = setting(1000, "DASH_APP_REFRESH_MS", "--refresh-ms", "dashboard refresh interval in ms", int, 200)
    retention_hours: float = setting(
        6.0, "DASH_APP_RETENTION_HOURS", "--retention-hours", "in-memory history, hours", float, 0.01
    )
    max_borrows: int = setting(100_000, "DASH_APP_MAX_BORROWS", "--max-borrows", "buffer cap on borrow events", int, 0)
    max_returns: int = setting(100_000, "DASH_APP_MAX_RETURNS", "--max-returns", "buffer cap on return events", int, 0)
    max_failures: int = setting(10_000, "DASH_APP_MAX_FAILURES", "--max-failures", "buffer cap on failure events", int, 0)
    history_days: float = setting(
        30.0, "DASH_APP_HISTORY_DAYS", "--history-days", "days of per-minute history in SQLite", float, 0.01
    )
    max_unknown_tools: int = setting(
        50,
        "DASH_APP_MAX_UNKNOWN_TOOLS",
        "--max-unknown-tools",
        "distinct names outside the inventory charted on their own; the rest share one series",
        int,
        0,
    )
    header_timeout: float = setting(
        10.0,
        "DASH_APP_HEADER_TIMEOUT",
        "--header-timeout",
        "seconds a client has to send its whole request (head, and a body up to the route's limit)",
        float,
        0.5,
    )
    max_connections: int = setting(
        10_000,
        "DASH_APP_MAX_CONNECTIONS",
        "--max-connections",
        "connections held open at once; past it the oldest not yet sent a whole request is closed",
        int,
        16,
    )
    currency: str = setting(
        "", "DASH_APP_CURRENCY", "--currency", "currency shown with every cost, e.g. EUR (none by default)", parse_currency
    )
    billing_days: int = setting(
        30, "DASH_APP_BILLING_DAYS", "--billing-days", "days one payment of a tool's commit_price covers (commit advice)", int, 1
    )
    true_denial_minutes: int = setting(
        TRUE_DENIAL_MINUTES,
        "DASH_APP_TRUE_DENIAL_MINUTES",
        "--true-denial-minutes",
        "a user's denials of one tool within this many minutes of the first count as one true denial",
        int,
        1,
    )
    lmstat_servers: tuple[str, ...] = listed(
        "DASH_APP_LMSTAT",
        "--lmstat",
        "FlexNet license server to poll with lmutil lmstat (repeat for several)",
        parse_servers,
        "PORT@HOST",
    )
    rlmstat_servers: tuple[str, ...] = listed(
        "DASH_APP_RLMSTAT",
        "--rlmstat",
        "RLM license server to poll with rlmutil rlmstat (repeat for several)",
        parse_servers,
        "PORT@HOST",
    )
    lmutil: str = setting("lmutil", "DASH_APP_LMUTIL", "--lmutil", "the lmutil program (default: lmutil on PATH)")
    rlmutil: str = setting("rlmutil", "DASH_APP_RLMUTIL", "--rlmutil", "the rlmutil program (default: rlmutil on PATH)")
    lmx_servers: tuple[str, ...] = listed(
        "DASH_APP_LMX",
        "--lmx",
        "LM-X license server to poll with lmxendutil -licstat (repeat for several)",
        parse_servers,
        "PORT@HOST",
    )
    lmxendutil: str = setting(
        "lmxendutil", "DASH_APP_LMXENDUTIL", "--lmxendutil", "the lmxendutil program (default: lmxendutil on PATH)"
    )
    dsls_servers: tuple[str, ...] = listed(
        "DASH_APP_DSLS",
        "--dsls",
        "Dassault Systèmes DSLS license server to poll with DSLicSrv -admin (repeat for several)",
        parse_servers,
        "PORT@HOST",
    )
    dslicsrv: str = setting("DSLicSrv", "DASH_APP_DSLICSRV", "--dslicsrv", "the DSLicSrv program (default: DSLicSrv on PATH)")
    poll_seconds: float = setting(
        30.0, "DASH_APP_POLL_SECONDS", "--poll-seconds", "seconds between polls of each license server", float, 1
    )
    poll_confirm: int = setting(
        3,
        "DASH_APP_POLL_CONFIRM",
        "--poll-confirm",
        "polls in a row a feature's same gap between in-use and listed licenses must last to be taken as the server's count",
        int,
        1,
    )
    poll_max_bytes: int = setting(
        32 << 20,
        "DASH_APP_POLL_MAX_BYTES",
        "--poll-max-bytes",
        "the most output one poll reads; a larger answer is a failed poll",
        int,
        1,
    )
    alerts_file: str | None = setting(
        None, "DASH_APP_ALERTS", "--alerts", "JSON file of alert rules and where to notify (none by default)"
    )
    reports_file: str | None = setting(
        None, "DASH_APP_REPORTS", "--reports", "JSON file of reports to send by themselves, and where to (none by default)"
    )
    public_url: str = setting(
        "",
        "DASH_APP_PUBLIC_URL",
        "--public-url",
        "the dashboard's address as its users reach it, for links in alerts (default: http://HOST:PORT)",
    )
    redis_url: str | None = setting(
        None,
        "DASH_APP_REDIS_URL",
        "--redis",
        "Redis to share the event log and the pool through (several workers and hosts; none by default)",
        parse_redis_url,
        metavar="URL",
    )
    redis_prefix: str = setting(
        "dash_app", "DASH_APP_REDIS_PREFIX", "--redis-prefix", "prefix of this deployment's Redis keys", parse_prefix
    )
    workers: int = setting(1, "DASH_APP_WORKERS", "--workers", "server processes (more than one needs --redis)", int, 1)
    auth: str = setting(
        "none", "DASH_APP_AUTH", "--auth", "who may read: none (everyone), oidc or proxy (see Who may look)", parse_auth_mode
    )
    oidc_issuer: str = setting(
        "", "DASH_APP_OIDC_ISSUER", "--oidc-issuer", "OpenID Connect issuer URL (discovery)", parse_http_url
    )
    oidc_client_id: str = setting("", "DASH_APP_OIDC_CLIENT_ID", "--oidc-client-id", "OpenID Connect client id")
    oidc_client_secret: str = setting("", "DASH_APP_OIDC_CLIENT_SECRET", None, "OpenID Connect client secret")
    oidc_scopes: str = setting("openid profile", "DASH_APP_OIDC_SCOPES", "--oidc-scopes", "scopes asked of the identity provider")
    oidc_roles_claim: str = setting(
        "roles", "DASH_APP_OIDC_ROLES_CLAIM", "--oidc-roles-claim", "ID token claim holding roles or groups"
    )
    proxy_user_header: str = setting(
        "X-Forwarded-User",
        "DASH_APP_PROXY_USER_HEADER",
        "--proxy-user-header",
        "header naming the user (--auth proxy)",
        header_name,
    )
    proxy_groups_header: str = setting(
        "",
        "DASH_APP_PROXY_GROUPS_HEADER",
        "--proxy-groups-header",
        "header listing the user's groups, comma-separated (--auth proxy)",
        header_name,
    )
    trusted_proxies: tuple[str, ...] = listed(
        "DASH_APP_TRUSTED_PROXIES",
        "--trusted-proxy",
        "address range whose user header is believed (--auth proxy; repeat for several)",
        parse_networks,
        "CIDR",
    )
    role_map: tuple[tuple[str, str], ...] = setting(
        (),
        "DASH_APP_ROLE_MAP",
        "--role-map",
        "groups or roles to map to a role, GROUP=ROLE,... (viewer, analyst, admin map to themselves)",
        parse_role_map,
    )
    pseudonymize_users: bool = setting(
        False,
        "DASH_APP_PSEUDONYMIZE_USERS",
        "--pseudonymize-users",
        "show readers below analyst stable pseudonyms instead of no user names",
        parse_bool,
    )
    pseudonym_key: str = setting("", "DASH_APP_PSEUDONYM_KEY", None, "key of the pseudonyms (keep it secret and fixed)")
    secret_key: str = setting("", "DASH_APP_SECRET_KEY", None, "key that signs session cookies (random per run when unset)")
    session_hours: float = setting(
        8.0, "DASH_APP_SESSION_HOURS", "--session-hours", "hours a sign-in lasts (--auth oidc)", float, 0.0001
    )
    metrics_token: str = setting("", "DASH_APP_METRICS_TOKEN", "--metrics-token", "bearer token that may read /metrics")
    flexlm_logs: tuple[str, ...] = listed(
        "DASH_APP_FLEXLM_LOGS", "--flexlm-log", "FlexNet debug log to follow (repeat for several)", parse_paths
    )
    user_groups: str | None = setting(
        None,
        "DASH_APP_USER_GROUPS",
        "--user-groups",
        "CSV file of user,group[,cost_centre[,from]]: who belongs where (wins over the directory; re-read when it changes)",
    )
    ldap_url: str = setting(
        "",
        "DASH_APP_LDAP_URL",
        "--ldap-url",
        "company directory to look users' groups up in, ldap[s]://HOST:PORT",
        parse_ldap_url,
    )
    ldap_base_dn: str = setting("", "DASH_APP_LDAP_BASE_DN", "--ldap-base-dn", "where in the directory users are searched for")
    ldap_user_filter: str = setting(
        "(uid={user})",
        "DASH_APP_LDAP_USER_FILTER",
        "--ldap-user-filter",
        "LDAP filter that finds one user; {user} is the user name, escaped (RFC 4515)",
    )
    ldap_group_attribute: str = setting(
        "departmentNumber", "DASH_APP_LDAP_GROUP_ATTRIBUTE", "--ldap-group-attribute", "user attribute that names the group"
    )
    ldap_cost_centre_attribute: str = setting(
        "",
        "DASH_APP_LDAP_COST_CENTRE_ATTRIBUTE",
        "--ldap-cost-centre-attribute",
        "user attribute that names the cost centre (none by default)",
    )
    ldap_bind_dn: str = setting("", "DASH_APP_LDAP_BIND_DN", "--ldap-bind-dn", "DN to bind as (anonymous when unset)")
    ldap_password: str = setting("", "DASH_APP_LDAP_PASSWORD", None, "password of the bind DN", secret=True)
    ldap_refresh_hours: float = setting(
        6.0,
        "DASH_APP_LDAP_REFRESH_HOURS",
        "--ldap-refresh-hours",
        "hours between lookups of every user in the directory",
        float,
        0.001,
    )

    @property
    def retention_seconds(self) -> float:
        return self.retention_hours * 3600

    def replace(self, **changes: Any) -> "Config":
        """Return a copy with `changes` applied and checked."""
        return _checked(dataclasses.replace(self, **changes))


def _declared(field: "dataclasses.Field[Any]") -> Setting:
    """Return the Setting a Config field was declared with, named after the field."""
    if _KEY not in field.metadata:
        raise TypeError(f"Config.{field.name}: declare it with setting() or listed(), which give its variable and flag")
    return dataclasses.replace(field.metadata[_KEY], name=field.name)


# Every setting, in the order of the declarations above (the configuration reference's order).
SETTINGS = [_declared(field) for field in dataclasses.fields(Config)]


def _checked(config: Config) -> Config:
    for setting in SETTINGS:
        value: Any = getattr(config, setting.name)
        if setting.repeat and not isinstance(value, tuple):
            try:
                value = setting.parse(value) if isinstance(value, str) else tuple(value)
            except ValueError as exc:
                raise ConfigError(f"{setting.flag or setting.env}: {exc}") from None
            config = dataclasses.replace(config, **{setting.name: value})
        if setting.parse in (parse_servers, parse_networks) and setting.repeat:
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
    _check_directory(config)
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


def _check_directory(config: Config) -> None:
    """Raise ConfigError when the company directory's settings cannot work together."""
    if not config.ldap_url:
        return
    if not config.ldap_base_dn.strip():
        raise ConfigError("--ldap-base-dn: required with --ldap-url")
    if "{user}" not in config.ldap_user_filter:
        raise ConfigError(f"--ldap-user-filter: must contain {{user}}, got {config.ldap_user_filter!r}")
    try:
        config.ldap_user_filter.format(user="x")
    except (ValueError, LookupError):
        raise ConfigError(f"--ldap-user-filter: only {{user}} may stand in braces, got {config.ldap_user_filter!r}") from None
    if not config.ldap_group_attribute.strip():
        raise ConfigError("--ldap-group-attribute: must not be empty")
    if config.ldap_bind_dn and not config.ldap_password:
        raise ConfigError("DASH_APP_LDAP_PASSWORD: required with --ldap-bind-dn")
