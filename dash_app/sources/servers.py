"""The kinds of polled license servers (FlexNet lmstat, RLM rlmstat, LM-X, DSLS) and the poller build_state starts."""

from __future__ import annotations

from collections.abc import Callable, Sequence

from dash_app.licenses.pool import LicensePool
from dash_app.sources.dsls import parse_dsls
from dash_app.sources.lmstat import parse_lmstat
from dash_app.sources.lmx import parse_lmx
from dash_app.sources.polling import CONFIRM_POLLS, MAX_OUTPUT_BYTES, PollKind, ServerPoll, ServerPoller
from dash_app.sources.rlm import parse_rlmstat


def _port_host(server: str) -> tuple[str, str]:
    """Return (port, host) of "PORT@HOST" (checked by the settings)."""
    port, _, host = server.partition("@")
    return port, host


def _lmx_command(utility: str, server: str) -> list[str]:
    port, host = _port_host(server)
    return [utility, "-licstat", "-host", host, "-port", port]


def _dsls_commands(server: str) -> bytes:
    # The admin console reads its commands from standard input; `quit` ends it even if it does not stop at end of input.
    port, host = _port_host(server)
    return f"connect {host} {port}\ngetLicenseUsage -csv\nquit\n".encode()


# The exact commands: `lmutil lmstat -a -c PORT@HOST` is what FlexNet's own docs and most monitors run.
LMSTAT = PollKind("lmstat", lambda utility, server: [utility, "lmstat", "-a", "-c", server], parse_lmstat)
RLMSTAT = PollKind("rlmstat", lambda utility, server: [utility, "rlmstat", "-a", "-c", server], parse_rlmstat)
LMX = PollKind("lmx", _lmx_command, parse_lmx)
DSLS = PollKind("dsls", lambda utility, server: [utility, "-admin"], parse_dsls, stdin=_dsls_commands)


def build_poller(
    pool: LicensePool,
    clock: Callable[[], float],
    *,
    lmutil: str,
    lmstat_servers: Sequence[str],
    rlmutil: str,
    rlmstat_servers: Sequence[str],
    poll_seconds: float,
    poll_confirm: int = CONFIRM_POLLS,
    poll_max_bytes: int = MAX_OUTPUT_BYTES,
    lmxendutil: str = "lmxendutil",
    lmx_servers: Sequence[str] = (),
    dslicsrv: str = "DSLicSrv",
    dsls_servers: Sequence[str] = (),
) -> ServerPoller | None:
    """Return a poller of every lmstat, rlmstat, LM-X and DSLS server named (each once), or None when there is none."""
    limits = {"confirm": poll_confirm, "max_bytes": poll_max_bytes}
    kinds = ((LMSTAT, lmutil, lmstat_servers), (RLMSTAT, rlmutil, rlmstat_servers), (LMX, lmxendutil, lmx_servers))
    servers = [
        ServerPoll(kind, utility, server, pool, clock, **limits)
        for kind, utility, named in (*kinds, (DSLS, dslicsrv, dsls_servers))
        for server in dict.fromkeys(named)
    ]
    return ServerPoller(servers, poll_seconds, clock) if servers else None
