"""Command line: `python -m dash_app` serves the dashboard."""

import logging
import sys
from collections.abc import Sequence

from dash_app import config as config_module
from dash_app.alerts.setup import read_rules
from dash_app.config import Config
from dash_app.directory.service import read_groups_file
from dash_app.eventlog.setup import SharedLogError, open_redis
from dash_app.licenses import InventoryError, load_inventory
from dash_app.reports.setup import read_reports
from dash_app.store import Store, StoreError


def build_parser() -> config_module.OneLineParser:
    """Return the CLI parser; every flag overrides its DASH_APP_* environment variable."""
    parser = config_module.OneLineParser(
        prog="python -m dash_app",
        description="Real-time license-usage dashboard.",
        epilog="Other commands: python -m dash_app ingest-flexlm PATH... reads FlexNet debug logs into the database, "
        "then exits; python -m dash_app db current|upgrade|copy says the database's schema revision, upgrades it, or copies a "
        "SQLite history into PostgreSQL; python -m dash_app demo-history [--days 30] writes weeks of made-up sessions "
        "for the Capacity view.",
    )
    config_module.add_arguments(parser)
    return parser


def check_startup(config: Config) -> None:
    """Fail fast, in this process, on a bad tools file or database, before the server forks its worker."""
    load_inventory(config.tools_file)
    read_rules(config)  # a bad rules file or notify URL: AlertRulesError, a ConfigError
    read_reports(config)  # a bad reports file or URL: ReportsError, a ConfigError
    if config.user_groups:
        read_groups_file(config.user_groups)  # a malformed line: GroupsFileError, a ConfigError naming the line
    store = Store(config.db)
    try:
        store.check_writable()
    finally:
        store.close()
    if config.redis_url:
        open_redis(config.redis_url).close()  # unreachable, or a wrong password: SharedLogError, one line
    if config.auth == "oidc":
        from dash_app.auth.oidc import check_issuer

        check_issuer(config.oidc_issuer)  # unreachable or not an OpenID provider: one line


def main(argv: Sequence[str] | None = None) -> int:
    """Parse flags, then serve; return the exit status: 2, after one line on stderr, for a bad flag or setting."""
    argv = sys.argv[1:] if argv is None else list(argv)
    if argv[:1] == ["ingest-flexlm"]:
        from dash_app.sources.flexlm.backfill import main as ingest_flexlm

        return ingest_flexlm(argv[1:])
    if argv[:1] == ["db"]:
        from dash_app.store.db_command import main as db_command

        return db_command(argv[1:])
    if argv[:1] == ["demo-history"]:
        from dash_app.testing.demo_history import main as demo_history

        return demo_history(argv[1:])
    try:
        args = build_parser().parse_args(argv)
    except SystemExit as exc:  # a bad flag (its one line already printed), or --help
        return exc.code if isinstance(exc.code, int) else 2
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        config = config_module.from_args(args)
        check_startup(config)
    except (config_module.ConfigError, InventoryError, StoreError, SharedLogError) as exc:
        print(f"python -m dash_app: error: {exc}", file=sys.stderr)
        return 2
    from dash_app.serve import serve

    print(f"Serving the dashboard on http://{config.host}:{config.port}/", file=sys.stderr, flush=True)
    serve(config)
    return 0


if __name__ == "__main__":
    sys.exit(main())
