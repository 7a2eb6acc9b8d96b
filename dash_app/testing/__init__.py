"""Helpers shared by the tests and the benchmarks: a fake clock, synthetic traffic, timing, and real servers."""

from dash_app.testing.clock import FakeClock
from dash_app.testing.postgres import PostgresServer
from dash_app.testing.servers import ROOT, TEST_TOKEN, RedisServer, ServerProcess, free_port, procfile_command
from dash_app.testing.traffic import (
    REASONS,
    TOOLS,
    USERS,
    TrafficEvent,
    estate_inventory,
    feed,
    full_buffer_events,
    p95,
    timings,
)

__all__ = [
    "REASONS",
    "ROOT",
    "TEST_TOKEN",
    "TOOLS",
    "USERS",
    "FakeClock",
    "PostgresServer",
    "RedisServer",
    "ServerProcess",
    "TrafficEvent",
    "feed",
    "free_port",
    "estate_inventory",
    "full_buffer_events",
    "p95",
    "procfile_command",
    "timings",
]
