"""Which reporters a watcher gets, from its Config: called once by ``Engine.prepare``.

Each reporter is built only when its option asks for it, and its module is
imported only then (prometheus-client, XML writers): a plain ``run`` pays for
the status file and a few counters. The summary line is added last, so that
it is the last line of the log.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING

from .console import emit
from .expect import Expectations, check
from .hub import Verdict
from .record import SessionRecord
from .statuswriter import StatusWriter
from .summary import SummaryLine

if TYPE_CHECKING:
    from ..config import Config
    from .hub import Hub

__all__ = ["Reports", "install"]


class Reports:
    """What the engine asks of the reporters at its end: the expectations' verdicts."""

    def __init__(self, record: SessionRecord, expectations: Expectations) -> None:
        self.record = record
        self.expectations = expectations

    def verdicts(self) -> tuple[Verdict, ...]:
        return check(self.expectations, self.record) if self.expectations else ()


def install(hub: Hub, config: Config) -> Reports:
    """Add the configured reporters to ``hub``; raises ``ConfigError`` for one that cannot start."""
    from ..config import ConfigError
    status = StatusWriter(config.state_path, stale_after=config.stale_after)
    hub.add(status)
    if config.metrics_port is not None:
        try:
            from .metrics import Metrics, MetricsError
        except ImportError:
            raise ConfigError("--metrics-port needs prometheus-client: pip install 'ckptwatch[metrics]'") from None
        try:
            metrics = Metrics(config.metrics_port, config.metrics_addr)
        except MetricsError as exc:
            raise ConfigError(str(exc)) from None
        hub.add(metrics)
        status.set_metrics(metrics.url)
        emit("info", f"metrics on {metrics.url}", metrics_url=metrics.url)
    step_summary = os.environ.get("GITHUB_STEP_SUMMARY") or None
    record = SessionRecord(keep_runs=bool(config.summary_json or config.junit_xml or step_summary))
    hub.add(record)
    if config.summary_json:
        from .summaryjson import SummaryJson

        hub.add(SummaryJson(config.summary_json, record))
    if config.junit_xml:
        from .junit import JunitXml

        hub.add(JunitXml(config.junit_xml, record))
    if step_summary:
        from .stepsummary import StepSummary

        hub.add(StepSummary(step_summary, record))
    hub.add(SummaryLine(record))  # last: its line ends the log
    return Reports(record, Expectations.from_config(config))
