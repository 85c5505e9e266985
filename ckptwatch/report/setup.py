"""Which reporters a watcher gets, from its Config: called once by ``Engine.prepare``.

Each reporter is built only when its option asks for it, and its module is
imported only then (prometheus-client, XML writers): a plain ``run`` pays for
the status file alone.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from .statuswriter import StatusWriter

if TYPE_CHECKING:
    from ..engine import Engine

__all__ = ["install"]


def install(engine: Engine) -> None:
    """Add the configured reporters to ``engine.hub``; raises ``UsageError`` for one that cannot start."""
    config = engine.config
    status = StatusWriter(config.state_path)
    engine.hub.add(status)
