"""A small marker file that its framework rewrites in place, and may be read half-written.

DeepSpeed's ``latest``, Megatron's ``latest_checkpointed_iteration.txt`` and
Ray's ``checkpoint_manager_snapshot.json`` are opened with ``'w'`` (truncate)
and then written: a scan can read them empty or cut short. Such a read is "not
yet", not an error: the layout keeps what the file said last time it was whole
and asks for a second look (``Observation.recheck``). Only content that stays
bad after a short settle time, or that can never become good (a path out of
DIR), is reported, once, as a problem.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Generic, TypeVar

from .base import Layout, Observation

__all__ = ["Bad", "InPlaceFile", "RECHECK", "SETTLE"]

T = TypeVar("T")

#: How soon to look again at a file that read as incomplete.
RECHECK = 0.1
#: How long a file may read as incomplete before it is reported (both its mtime
#: age and the time since this watcher first saw it in that state).
SETTLE = 2.0


@dataclass(frozen=True)
class Bad:
    """Why content was not taken; ``maybe_partial``: it may still be being written."""

    reason: str
    maybe_partial: bool = True


class InPlaceFile(Generic[T]):
    """Reads ``rel`` (relative to the layout's DIR) when its mtime or size moved; parses it with ``parse``."""

    def __init__(self, layout: Layout, rel: str, parse: Callable[[bytes], T | Bad]) -> None:
        self.layout = layout
        self.rel = rel
        self.parse = parse
        self.good: T | None = None  # what the file said when last whole
        self.good_stat: tuple[int, int] | None = None  # its (mtime_ns, size) then
        self._key: tuple[int, int] | None = None
        self._result: T | Bad | None = None
        self._bad_since: float | None = None

    def read(self, obs: Observation) -> T | None:
        """The file's value now, or the last whole value while it reads as incomplete.

        ``good_stat`` is the file's (mtime_ns, size) when it said that value:
        a checkpoint identified by this file must use it, not the file's
        current stat, or a half-written rewrite would look like a new save.
        """
        st = self.layout.stat(self.rel)
        if st is None:
            self._key = self._result = self.good = self.good_stat = None
            return None
        key = (st.st_mtime_ns, st.st_size)
        if key != self._key:
            data = self.layout.read_marker(self.rel, obs.problems)
            if data is None:
                return self.good  # gone or unreadable this instant (a problem says why): look again next scan
            self._key = key
            self._result = self.parse(data) if data and data.strip() else Bad("it is empty")
            self._bad_since = time.monotonic()
        result = self._result
        if not isinstance(result, Bad):
            self.good, self.good_stat = result, key
            return result
        assert self._bad_since is not None
        young = (time.time_ns() - st.st_mtime_ns) / 1e9 < SETTLE and time.monotonic() - self._bad_since < SETTLE
        if result.maybe_partial and young:
            obs.recheck = RECHECK if obs.recheck is None else min(obs.recheck, RECHECK)
        else:
            obs.problems.append(f"{self.rel}: {result.reason}")
        return self.good
