"""The listener API's first home; kept so that scripts that import from here keep working.

New code imports from :mod:`ckptwatch.listener` (or ``from ckptwatch import CheckpointSaverListener``).
"""

from .listener import CheckpointSaverListener, ListenerEvent, serve

__all__ = ["CheckpointSaverListener", "ListenerEvent", "serve"]
