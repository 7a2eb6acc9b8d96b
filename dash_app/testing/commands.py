"""A command's main(argv) run in the test's own process, with what `python -m dash_app ...` would show and return."""

import contextlib
import io
import subprocess
from collections.abc import Callable, Sequence


def run_main(main: Callable[[list[str]], int | None], argv: Sequence[str]) -> subprocess.CompletedProcess[str]:
    """Run `main(argv)` as `sys.exit(main())` would end it: return its exit status and what it printed to each stream.

    The same code as the subprocess runs, without a new interpreter importing the package: for tests whose subject is
    the command's own work and messages (a test that needs processes of its own, or the entry point, runs them).
    """
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            status = main(list(argv))
        except SystemExit as exc:  # argparse's usage errors (status 2), or a sys.exit() in the command
            status = exc.code if isinstance(exc.code, int) or exc.code is None else 1
            if isinstance(exc.code, str):
                print(exc.code, file=err)
    return subprocess.CompletedProcess(list(argv), status or 0, out.getvalue(), err.getvalue())


def run_refused(argv: Sequence[str]) -> subprocess.CompletedProcess[str]:
    """Run `python -m dash_app ARGV` in this process for arguments it must refuse before serving: what it returned and printed.

    Should it accept them instead, it would serve here until stopped: serving raises AssertionError, so such a test
    fails at once rather than hanging.
    """
    from dash_app import serve as serve_module
    from dash_app.__main__ import main

    def refuse_to_serve(config: object) -> None:
        raise AssertionError(f"python -m dash_app {' '.join(argv)} was accepted and went on to serve")

    original = serve_module.serve
    serve_module.serve = refuse_to_serve
    try:
        return run_main(main, argv)
    finally:
        serve_module.serve = original
