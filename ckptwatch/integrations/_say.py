"""One line to the training log: the ``ckptwatch`` logger, or stderr when nothing handles it.

Training scripts seldom configure logging; a stop that nobody sees explained
is a support ticket. So a line goes to the ``ckptwatch.integrations`` logger
when the application configured logging, else straight to stderr.
"""

from __future__ import annotations

import logging
import sys

__all__ = ["say"]

_log = logging.getLogger("ckptwatch.integrations")


def say(text: str, level: int = logging.INFO) -> None:
    if _log.hasHandlers():
        _log.log(level, text)
        return
    if level < logging.INFO:
        return
    try:
        print(f"ckptwatch: {text}", file=sys.stderr, flush=True)
    except (OSError, ValueError):
        pass
