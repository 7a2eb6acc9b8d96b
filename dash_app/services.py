"""The background services' seam: what a service is, and the names build_state gives them (in start order)."""

from __future__ import annotations

from typing import Protocol

# The names of the background services build_state may start, in start order. With --redis, DEMO, FLEXLM and POLLER
# run under LEASE in one process of the deployment (see AppState.service), and LOG follows the shared log.
STORE, LOG, DELIVERIES, DEMO, FLEXLM, POLLER, LEASE, STREAM = (
    "store",
    "log",
    "deliveries",
    "demo",
    "flexlm",
    "poller",
    "lease",
    "stream",
)
REPORTS = "reports"  # the scheduled reports' thread (--reports), in every process: the database orders them
DIRECTORY = "directory"  # who belongs where: every process runs its own (it only reads)
PERSISTER = "persister"  # the lease holder's service that writes the log to the store (--redis)


class Service(Protocol):
    """A background part of the app: started once with the app, stopped once when it ends."""

    def start(self) -> None:
        """Start the service's thread(s)."""

    def stop(self) -> None:
        """Stop them, finishing what is under way."""


class ServiceHolder(Protocol):
    """What holds the running services (the app's state), as the services' own modules may see it."""

    def service(self, name: str) -> Service | None:
        """Return the service called `name`, or None when this process does not run it (now)."""
