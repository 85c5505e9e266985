"""The training side: stop training cleanly when a ckptwatch listener asks.

One import line per framework; each stops at a step boundary the way that
framework stops itself, saves a last checkpoint where the framework can be
asked to, logs who asked and why, and with ``sync=True`` stops at the very
step whose listener asked:

=========================  ==============================================================
hand-written loop          ``from ckptwatch.integrations import StopWatcher``
torch.distributed loop     ``from ckptwatch.integrations.torch import DistributedStopWatcher``
Keras 3                    ``from ckptwatch.integrations.keras import StopOnRequest``
PyTorch Lightning          ``from ckptwatch.integrations.lightning import StopOnRequest``
Transformers ``Trainer``   ``from ckptwatch.integrations.transformers import StopOnRequest``
TF1 ``MonitoredSession``   ``from ckptwatch.integrations.tf1 import StopHook``
=========================  ==============================================================

Importing this package loads no framework and nothing of the watcher (no
click, rich or watchdog): a training image pays only for what it uses. A
framework is imported by its own module, when that module is imported.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__all__ = ["Progress", "StopRequest", "StopWatcher", "read_progress", "stop_requested"]

if TYPE_CHECKING:
    from .progress import Progress, read_progress
    from .stopfile import StopRequest, stop_requested
    from .watcher import StopWatcher

_WHERE = {
    "StopWatcher": "watcher",
    "StopRequest": "stopfile",
    "stop_requested": "stopfile",
    "Progress": "progress",
    "read_progress": "progress",
}


def __getattr__(name: str) -> Any:
    module = _WHERE.get(name)
    if module is None:
        raise AttributeError(f"module 'ckptwatch.integrations' has no attribute {name!r}")
    from importlib import import_module

    return getattr(import_module(f".{module}", __name__), name)
