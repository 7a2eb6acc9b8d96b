"""The shape the code keeps (issue #28): each module does one thing, so none grows past 400 lines."""

from dash_app.testing import ROOT

MOST_LINES = 400


def test_no_module_of_dash_app_is_over_400_lines():
    long = {}
    for path in sorted((ROOT / "dash_app").rglob("*.py")):
        lines = len(path.read_text(encoding="utf-8").splitlines())
        if lines > MOST_LINES:
            long[str(path.relative_to(ROOT))] = lines
    assert long == {}, f"split these by what each part does (at most {MOST_LINES} lines a module): {long}"
