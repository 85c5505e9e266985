"""Small JSON files that other processes read: replaced whole, read without trusting them.

The status, progress and report files are advice that the watcher rewrites
often and that ``status``, training and CI read from other processes (other
containers). A reader must see the old file or the new one, never half of
one: the text goes to a temp file in the same directory, renamed over the
name. A reader takes a file that is missing, unreadable, torn or not a JSON
object as no file. No fsync: a crash loses at most the newest version, which
the next write replaces. (The stop file and the journal, which must survive
a crash, fsync in their own modules.)

It lives on the training side, the lowest role, because training reads these
files too (the progress file, the stop file) and imports nothing of the
watcher; the watcher's reporters use it from here.
"""

from __future__ import annotations

import json
import os
from typing import Any

__all__ = ["read_object", "replace_text"]


def read_object(path: str) -> dict[str, Any] | None:
    """The JSON object at ``path``; None when it is missing, unreadable or not a JSON object."""
    try:
        with open(path, encoding="utf-8") as handle:
            body = json.load(handle)
    except (OSError, ValueError):
        return None
    return body if isinstance(body, dict) else None


def replace_text(path: str, text: str) -> None:
    """Replace ``path`` with ``text`` atomically; raises OSError (its temp file removed)."""
    folder, name = os.path.split(os.path.abspath(path))
    tmp = os.path.join(folder, f".{name}.{os.getpid()}.tmp")
    try:
        with open(tmp, "w", encoding="utf-8") as handle:
            handle.write(text)
        os.replace(tmp, path)
    except OSError:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise
