"""The shape the code keeps (issue #28): each module does one thing, so none grows past 400 lines; a worker stays lean."""

import subprocess
import sys

from dash_app.testing import ROOT

MOST_LINES = 400


def test_no_module_of_dash_app_is_over_400_lines():
    long = {}
    for path in sorted((ROOT / "dash_app").rglob("*.py")):
        lines = len(path.read_text(encoding="utf-8").splitlines())
        if lines > MOST_LINES:
            long[str(path.relative_to(ROOT))] = lines
    assert long == {}, f"split these by what each part does (at most {MOST_LINES} lines a module): {long}"


def test_a_serving_process_loads_neither_pandas_nor_ipython_nor_what_it_is_not_configured_for(tmp_path):
    # A fresh interpreter, as a gunicorn worker: the analyses (pandas) load in the process that runs them, and Dash's
    # notebook support (IPython) nowhere. Each would cost every worker start half a second and tens of MB. Sign-in
    # through a provider (Authlib, requests) and Redis load only where they are configured: a fifth of a start.
    code = (
        "import sys; from dash_app.serve import served_app; "
        f"served_app({{'demo': True, 'db': {str(tmp_path / 'x.db')!r}, 'api_token': 'x' * 20}}); "
        "print(sorted(m for m in ('pandas', 'numpy', 'IPython', 'authlib', 'requests', 'redis', 'ldap3') if sys.modules.get(m)))"
    )
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip().splitlines()[-1] == "[]"
