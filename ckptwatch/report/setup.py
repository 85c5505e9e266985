"""Which reporters a watcher gets, from its Config: called once by ``Engine.prepare``.

Each reporter is built only when its option asks for it, and its module is
imported only then (prometheus-client, XML writers): a plain ``run`` pays for
the status file alone.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from .console import emit
from .statuswriter import StatusWriter

if TYPE_CHECKING:
    from ..engine import Engine

__all__ = ["install"]


def install(engine: Engine) -> None:
    """Add the configured reporters to ``engine.hub``; raises ``UsageError`` for one that cannot start."""
    from ..engine import UsageError

    config = engine.config
    status = StatusWriter(config.state_path, stale_after=config.stale_after)
    engine.hub.add(status)
    if config.metrics_port is not None:
        try:
            from .metrics import Metrics, MetricsError
        except ImportError:
            raise UsageError("--metrics-port needs prometheus-client: pip install 'ckptwatch[metrics]'") from None
        try:
            metrics = Metrics(config.metrics_port, config.metrics_addr)
        except MetricsError as exc:
            raise UsageError(str(exc)) from None
        engine.hub.add(metrics)
        status.set_metrics(metrics.url)
        emit("info", f"metrics on {metrics.url}", metrics_url=metrics.url)
