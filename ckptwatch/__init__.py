"""ckptwatch: TensorFlow's CheckpointSaverListener for any training job, out of process.

The public API is small: :class:`CheckpointSaverListener` (write a listener
in Python), :class:`Event`, and :func:`stop_requested` (for the training
loop; :mod:`ckptwatch.integrations` has the callbacks for each framework).
Everything else runs behind ``ckptwatch run``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"
__all__ = ["CheckpointSaverListener", "Event", "__version__", "stop_requested"]

if TYPE_CHECKING:
    from .events import Event
    from .listener import CheckpointSaverListener
    from .integrations.stopfile import stop_requested


def __getattr__(name: str) -> Any:
    # Lazy, so that `ckptwatch --help` imports nothing it does not need.
    if name == "Event":
        from .events import Event

        return Event
    if name == "CheckpointSaverListener":
        from .listener import CheckpointSaverListener

        return CheckpointSaverListener
    if name == "stop_requested":
        from .integrations.stopfile import stop_requested

        return stop_requested
    raise AttributeError(f"module 'ckptwatch' has no attribute {name!r}")
