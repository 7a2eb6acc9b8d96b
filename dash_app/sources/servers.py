"""The kinds of polled license servers (FlexNet lmstat, RLM rlmstat) and the poller build_state starts for them."""

from __future__ import annotations

from collections.abc import Callable

from dash_app.config import Config
from dash_app.licenses.pool import LicensePool
from dash_app.sources.lmstat import parse_lmstat
from dash_app.sources.polling import PollKind, ServerPoll, ServerPoller
from dash_app.sources.rlm import parse_rlmstat

# The exact commands: `lmutil lmstat -a -c PORT@HOST` is what FlexNet's own docs and most monitors run.
LMSTAT = PollKind("lmstat", lambda utility, server: [utility, "lmstat", "-a", "-c", server], parse_lmstat)
RLMSTAT = PollKind("rlmstat", lambda utility, server: [utility, "rlmstat", "-a", "-c", server], parse_rlmstat)


def build_poller(config: Config, pool: LicensePool, clock: Callable[[], float]) -> ServerPoller | None:
    """Return a poller of every configured lmstat and rlmstat server, or None when there is none."""
    servers = [ServerPoll(LMSTAT, config.lmutil, server, pool, clock) for server in dict.fromkeys(config.lmstat_servers)]
    servers += [ServerPoll(RLMSTAT, config.rlmutil, server, pool, clock) for server in dict.fromkeys(config.rlmstat_servers)]
    return ServerPoller(servers, config.poll_seconds, clock) if servers else None
