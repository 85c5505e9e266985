"""The environment listeners start with.

The watcher's own, with one change: when the watcher runs from a virtual
environment (``.venv/bin/ckptwatch``), that environment's ``bin`` comes first
on ``PATH``, as if it were activated. A script's ``#!/usr/bin/env python3``
then finds the Python that has ckptwatch installed (``from ckptwatch import
...`` works), whether the watcher was started through the venv's ``bin`` or
with the venv's python, and whether or not the venv was activated.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Mapping

__all__ = ["listener_environment"]


def listener_environment(environ: Mapping[str, str] | None = None) -> dict[str, str]:
    """A copy of ``environ`` (default ``os.environ``) with our venv's ``bin`` first on ``PATH``."""
    env = dict(os.environ if environ is None else environ)
    if sys.prefix == sys.base_prefix:
        return env  # not a virtual environment: PATH is the user's business
    folder = os.path.join(sys.prefix, "bin")
    if not os.path.isdir(folder):
        return env
    entries = env.get("PATH", os.defpath).split(os.pathsep)
    if entries and entries[0] == folder:
        return env
    env["PATH"] = os.pathsep.join([folder] + [entry for entry in entries if entry != folder])
    return env
