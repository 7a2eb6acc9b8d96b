"""The one home of configuration: each setting declared once (settings.py), parsed (parsers.py), loaded (loading.py)."""

from dash_app.config.loading import OneLineParser, add_arguments, coerce, from_args, from_env
from dash_app.config.parsers import AUTH_MODES, ConfigError, header_name
from dash_app.config.settings import SETTINGS, Config, Setting

__all__ = [
    "AUTH_MODES",
    "SETTINGS",
    "Config",
    "ConfigError",
    "OneLineParser",
    "Setting",
    "add_arguments",
    "coerce",
    "from_args",
    "from_env",
    "header_name",
]
