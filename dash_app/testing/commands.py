"""A command's main(argv) run in the test's own process, with what `python -m dash_app ...` would show and return."""

import contextlib
import io
import logging
import subprocess
import threading
from collections.abc import Callable, Iterator, Sequence


@contextlib.contextmanager
def _logs_to(stream: io.StringIO, level: int) -> Iterator[None]:
    """Write this thread's log records of `level` and above to `stream`, as the command's own process would to stderr."""
    handler = logging.StreamHandler(stream)
    handler.setLevel(level)
    handler.setFormatter(logging.Formatter("%(levelname)s %(name)s: %(message)s"))
    # Other tests' leftover threads log in this process too; the command's process would hold only its own.
    here = threading.get_ident()
    handler.addFilter(lambda record: record.thread == here)
    root = logging.getLogger()
    old_level = root.level
    root.addHandler(handler)
    root.setLevel(min(old_level, level))
    try:
        yield
    finally:
        root.removeHandler(handler)
        root.setLevel(old_level)


def run_main(
    main: Callable[[list[str]], int | None], argv: Sequence[str], log_level: int = logging.WARNING
) -> subprocess.CompletedProcess[str]:
    """Run `main(argv)` as `sys.exit(main())` would end it: return its exit status and what it printed to each stream.

    The same code as the subprocess runs, without a new interpreter importing the package: for tests whose subject is
    the command's own work and messages (a test that needs processes of its own, or the entry point, runs them). Log
    records of `log_level` and above land in stderr, as they would there: WARNING is Python's default without a
    logging setup (the db command's), INFO what the server's command line sets up.
    """
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err), _logs_to(err, log_level):
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
        return run_main(main, argv, log_level=logging.INFO)
    finally:
        serve_module.serve = original
