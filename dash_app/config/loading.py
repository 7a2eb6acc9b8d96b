"""Where a Config comes from: the declared defaults, then DASH_APP_* variables, then CLI flags."""

import argparse
import dataclasses
import os
from collections.abc import Callable, Mapping
from typing import Any, NoReturn

from dash_app.config.parsers import ConfigError, parse_bool
from dash_app.config.settings import SETTINGS, Config, _checked


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
        if setting.parse is parse_bool:
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
