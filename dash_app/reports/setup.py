"""How build_state makes the reports' scheduler: the reports file, its storage, and the figures of a period."""

from __future__ import annotations

import os
import socket
import uuid
from typing import TYPE_CHECKING

from dash_app.alerts.redaction import check_url
from dash_app.alerts.setup import public_url
from dash_app.reports.content import Figures
from dash_app.reports.rules import CHARGEBACK, RECOMMENDATIONS, ReportRule, load_reports
from dash_app.reports.scheduler import ReportScheduler
from dash_app.reports.storage import ReportStorage

if TYPE_CHECKING:
    from dash_app.analytics.service import CapacityService
    from dash_app.config import Config
    from dash_app.store.database import Store


def read_reports(config: Config) -> tuple[ReportRule, ...]:
    """Return the reports of `--reports` (none without the flag); raise ReportsError for a file that cannot be used."""
    return load_reports(config.reports_file, check_url)


def build_reports(
    config: Config, reports: tuple[ReportRule, ...], store: Store, analytics: CapacityService
) -> ReportScheduler | None:
    """Return the scheduler to start as a service, or None without reports."""
    if not reports:
        return None

    def figures(report: ReportRule, start: float, end: float) -> Figures:
        """The analyses a report's content asks for, over [start, end)."""
        capacity = analytics.report(start, end)
        recommendations = analytics.recommendations(start, end) if RECOMMENDATIONS in report.content else None
        chargeback = analytics.chargeback(start, end) if CHARGEBACK in report.content else None
        return Figures(start, end, config.currency, capacity, recommendations, chargeback)

    # This process's claims are its own: host, process and a random part (a pid is reused after a restart).
    owner = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
    return ReportScheduler(reports, ReportStorage(store, owner), figures, public_url(config))
