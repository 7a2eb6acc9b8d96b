"""The documentation: a short README, and a site whose configuration reference is built from the settings' declaration."""

import html
import os
import re
import subprocess
import sys

import pytest

from dash_app.config import SETTINGS
from dash_app.testing import ROOT

README_MAX_LINES = 250  # issue #28: the README says what it is and how to run it; the rest is the site


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    """Build the site once, as scripts/test does (--strict), into a temporary folder."""
    out = tmp_path_factory.mktemp("site")
    env = {**os.environ, "NO_MKDOCS_2_WARNING": "1"}
    result = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(out)],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr
    return out


def test_readme_stays_short():
    lines = (ROOT / "README.md").read_text(encoding="utf-8").splitlines()
    assert len(lines) <= README_MAX_LINES


def test_configuration_reference_lists_every_setting(site):
    page = html.unescape((site / "configuration" / "index.html").read_text(encoding="utf-8"))
    assert "config-reference" not in page  # the marker was replaced
    rows = re.findall(r"<tr>(.*?)</tr>", page, re.S)
    for setting in SETTINGS:
        row = next((r for r in rows if f"<code>{setting.env}</code>" in r), None)
        assert row is not None, setting.env
        assert html.unescape(setting.help) in row
        if setting.flag is not None:
            assert f"<code>{setting.flag}" in row, setting.flag
        else:
            assert "environment only" in row


def test_configuration_reference_shows_the_defaults(site):
    page = html.unescape((site / "configuration" / "index.html").read_text(encoding="utf-8"))
    rows = {re.search(r"<code>(DASH_APP_\w+)</code>", r).group(1): r for r in re.findall(r"<tr>(.*?)</tr>", page, re.S)[1:]}
    assert "<code>127.0.0.1</code>" in rows["DASH_APP_HOST"]
    assert "<code>8050</code>" in rows["DASH_APP_PORT"]
    assert "<code>openid profile</code>" in rows["DASH_APP_OIDC_SCOPES"]
    assert "<td>on</td>" in rows["DASH_APP_DEMO"]


def test_docs_name_only_settings_that_exist():
    known = {setting.env for setting in SETTINGS}
    pages = [ROOT / "README.md", ROOT / "CONTRIBUTING.md", *sorted((ROOT / "docs").glob("*.md"))]
    for page in pages:
        named = set(re.findall(r"DASH_APP_[A-Z_]*[A-Z]", page.read_text(encoding="utf-8")))
        assert named <= known, f"{page.name} names unknown settings: {sorted(named - known)}"
