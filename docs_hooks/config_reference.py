"""MkDocs hook: the configuration reference's table, built from `dash_app.config` when the site is built."""

from typing import Any

from dash_app.config import SETTINGS

MARKER = "<!-- config-reference -->"
PAGE = "configuration.md"


def _cell(text: str) -> str:
    """Return `text` safe inside a Markdown table cell (a `|` would end the cell)."""
    return text.replace("|", "\\|")


def _code(text: str) -> str:
    return f"`{text}`"


def _default(value: Any) -> str:
    """Return a default as the reader would type it; an empty one as a dash (the help line says what unset means)."""
    if value is None or value == "" or value == ():
        return "—"
    if isinstance(value, bool):
        return "on" if value else "off"
    if isinstance(value, tuple):
        return _code(",".join("=".join(item) if isinstance(item, tuple) else str(item) for item in value))
    if isinstance(value, float) and value.is_integer():
        return _code(str(int(value)))
    return _code(str(value))


def _flag(flag: str | None, default: Any, repeat: bool, metavar: str | None) -> str:
    if flag is None:
        return "(environment only)"
    if isinstance(default, bool):
        return f"{_code(flag)} / {_code('--no-' + flag[2:])}"
    text = _code(f"{flag} {metavar}" if metavar else flag)
    return f"{text}, repeatable" if repeat else text


def _meaning(help_text: str, minimum: float | None) -> str:
    if minimum is None:
        return help_text
    return f"{help_text}; at least {minimum:g}"


def reference_table() -> str:
    """Return the Markdown table of every setting: flag, environment variable, default and meaning."""
    rows = ["| flag | environment | default | meaning |", "| --- | --- | --- | --- |"]
    for setting in SETTINGS:
        cells = (
            _flag(setting.flag, setting.default, setting.repeat, setting.metavar),
            _code(setting.env),
            _default(setting.default),
            _meaning(setting.help, setting.minimum),
        )
        rows.append("| " + " | ".join(_cell(cell) for cell in cells) + " |")
    return "\n".join(rows)


def on_page_markdown(markdown: str, page: Any, config: Any, files: Any) -> str:
    """Put the table in place of the marker on the configuration page; fail the build when the marker is gone."""
    if page.file.src_uri != PAGE:
        return markdown
    if MARKER not in markdown:
        raise ValueError(f"{PAGE} lost its {MARKER} line: the configuration reference has nowhere to go")
    return markdown.replace(MARKER, reference_table())
