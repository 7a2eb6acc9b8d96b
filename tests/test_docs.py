"""The documentation: a short README, and a site whose configuration reference is built from the settings' declaration."""

import html
import os
import re
import shutil
import subprocess
import sys

import pytest

from dash_app.config import SETTINGS
from dash_app.testing import ROOT

README_MAX_LINES = 250  # issue #28: the README says what it is and how to run it; the rest is the site


def build(root, out):
    """Run `mkdocs build --strict` as scripts/test does, in `root`, into `out`."""
    env = {**os.environ, "NO_MKDOCS_2_WARNING": "1"}
    command = [sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(out)]
    return subprocess.run(command, cwd=root, env=env, capture_output=True, text=True, timeout=300)


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    """Build the site once into a temporary folder."""
    out = tmp_path_factory.mktemp("site")
    result = build(ROOT, out)
    assert result.returncode == 0, result.stderr
    return out


def test_readme_stays_short():
    lines = (ROOT / "README.md").read_text(encoding="utf-8").splitlines()
    assert len(lines) <= README_MAX_LINES


def test_readme_and_contributing_link_to_files_that_exist():
    for page in ("README.md", "CONTRIBUTING.md"):
        targets = re.findall(r"\]\(([^)#\s]+)[^)]*\)", (ROOT / page).read_text(encoding="utf-8"))
        local = [target for target in targets if "://" not in target]
        assert local, page
        missing = [target for target in local if not (ROOT / target).exists()]
        assert not missing, f"{page} links to missing files: {missing}"


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


def test_strict_build_fails_on_a_broken_link_or_a_page_outside_the_nav(tmp_path):
    copy = tmp_path / "repo"
    copy.mkdir()
    shutil.copy(ROOT / "mkdocs.yml", copy)
    shutil.copytree(ROOT / "docs", copy / "docs")
    shutil.copytree(ROOT / "docs_hooks", copy / "docs_hooks")
    with open(copy / "docs" / "index.md", "a", encoding="utf-8") as handle:
        handle.write("\n[gone](no-such-page.md) [gone](api.md#no-such-heading) [root](/metrics)\n")
    (copy / "docs" / "orphan.md").write_text("# Not in the nav\n", encoding="utf-8")
    result = build(copy, tmp_path / "site")
    assert result.returncode != 0
    for warning in ("'no-such-page.md'", "'#no-such-heading'", "absolute link '/metrics'", "- orphan.md"):
        assert warning in result.stderr, warning
