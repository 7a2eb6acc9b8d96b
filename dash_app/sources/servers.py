"""The kinds of polled license servers (FlexNet lmstat, RLM rlmstat) and the poller build_state starts for them."""

from __future__ import annotations

from collections.abc import Callable, Sequence

from dash_app.licenses.pool import LicensePool
from dash_app.sources.lmstat import parse_lmstat
from dash_app.sources.polling import CONFIRM_POLLS, MAX_OUTPUT_BYTES, PollKind, ServerPoll, ServerPoller
from dash_app.sources.rlm import parse_rlmstat

# The exact commands: `lmutil lmstat -a -c PORT@HOST` is what FlexNet's own docs and most monitors run.
LMSTAT = PollKind("lmstat", lambda utility, server: [utility, "lmstat", "-a", "-c", server], parse_lmstat)
RLMSTAT = PollKind("rlmstat", lambda utility, server: [utility, "rlmstat", "-a", "-c", server], parse_rlmstat)


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
) -> ServerPoller | None:
    """Return a poller of every lmstat and rlmstat server named (each once), or None when there is none."""
    limits = {"confirm": poll_confirm, "max_bytes": poll_max_bytes}
    servers = [ServerPoll(LMSTAT, lmutil, server, pool, clock, **limits) for server in dict.fromkeys(lmstat_servers)]
    servers += [ServerPoll(RLMSTAT, rlmutil, server, pool, clock, **limits) for server in dict.fromkeys(rlmstat_servers)]
    return ServerPoller(servers, poll_seconds, clock) if servers else None
