"""Listener discovery: which executables run, for which events.

A listener is any executable. In a directory, every executable regular file
runs, in byte order of names (``10-eval`` before ``20-upload.py``), as
run-parts does; hidden files and package-manager or editor leftovers are
skipped quietly, and anything else that cannot run is skipped with a warning
that says why. A script names the events it wants in a line
``# ckptwatch: events=after_save,end`` among its first 10 lines; an event it
does not want starts no process.
"""

from __future__ import annotations

import os
import re
import stat
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from ..events import EVENT_NAMES, EventName

__all__ = ["ListenerError", "ListenerSpec", "discover", "read_subscription"]

_BACKUP_SUFFIXES = ("~", ".bak", ".swp", ".swo", ".orig", ".rpmnew", ".rpmsave", ".rpmorig")
_SUBSCRIPTION = re.compile(rb"ckptwatch:\s*events\s*=\s*([A-Za-z_,\s]*)")
_HEAD_LINES = 10


class ListenerError(ValueError):
    """A listener path that cannot be used at all (a usage error)."""


@dataclass(frozen=True)
class ListenerSpec:
    name: str
    path: str
    events: frozenset[EventName]
    timeout: float | None = None

    def wants(self, event: EventName) -> bool:
        return event in self.events


def _skipped_quietly(name: str) -> bool:
    return name.startswith(".") or name.endswith(_BACKUP_SUFFIXES) or ".dpkg-" in name


def read_subscription(path: str, warn: Callable[[str], None]) -> frozenset[EventName] | None:
    """The events named in a ``ckptwatch: events=`` line of the file's head, or None."""
    try:
        with open(path, "rb") as handle:
            head = handle.read(8192).splitlines()[:_HEAD_LINES]
    except OSError:
        return None
    for line in head:
        match = _SUBSCRIPTION.search(line)
        if not match:
            continue
        wanted = {word.strip() for word in match.group(1).decode("ascii", "replace").split(",") if word.strip()}
        unknown = sorted(wanted - set(EVENT_NAMES))
        if unknown:
            warn(f"{path}: unknown event(s) {', '.join(unknown)} in its 'ckptwatch: events=' line; ignored")
        return frozenset(e for e in EVENT_NAMES if e in wanted)
    return None


def _unusable(path: str, st: os.stat_result) -> str | None:
    """Why an executable must not run, or None."""
    if st.st_mode & stat.S_IWOTH:
        return f"{path} is writable by every user; skipped (chmod o-w {path} to run it)"
    if not st.st_mode & (stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH) or not os.access(path, os.X_OK):
        return f"{path} is not executable; skipped (chmod +x {path} to run it)"
    return None


def _candidates(location: str, warn: Callable[[str], None]) -> Iterable[str]:
    try:
        st = os.stat(location)
    except FileNotFoundError:
        raise ListenerError(f"listener path {location} does not exist; create it or pass -l PATH") from None
    except OSError as exc:
        raise ListenerError(f"cannot read listener path {location}: {exc.strerror}") from None
    if not stat.S_ISDIR(st.st_mode):
        if not stat.S_ISREG(st.st_mode):
            raise ListenerError(f"listener {location} is not a regular file or a directory")
        yield location
        return
    if st.st_mode & stat.S_IWOTH and not st.st_mode & stat.S_ISVTX:
        raise ListenerError(f"listener directory {location} is writable by every user; fix it with chmod o-w {location}")
    try:
        names = sorted(os.listdir(location), key=os.fsencode)
    except OSError as exc:
        raise ListenerError(f"cannot list listener directory {location}: {exc.strerror}") from None
    for name in names:
        if _skipped_quietly(name):
            continue
        path = os.path.join(location, name)
        if os.path.isdir(path):
            warn(f"{path} is a directory; skipped (listeners are executables)")
            continue
        yield path


def discover(
    locations: Iterable[str],
    warn: Callable[[str], None],
    settings: Mapping[str, Mapping[str, Any]] | None = None,
    default_timeout: float | None = None,
) -> list[ListenerSpec]:
    """The listeners to run, in order; ``settings`` are per-name overrides from the config.

    Raises :class:`ListenerError` for a location that cannot be used at all.
    """
    settings = settings or {}
    found: list[ListenerSpec] = []
    names: set[str] = set()
    for location in locations:
        for path in _candidates(location, warn):
            try:
                st = os.stat(path)
            except OSError as exc:
                warn(f"{path}: {exc.strerror}; skipped")
                continue
            if not stat.S_ISREG(st.st_mode):
                warn(f"{path} is not a regular file; skipped")
                continue
            reason = _unusable(path, st)
            if reason:
                warn(reason)
                continue
            name = os.path.basename(path)
            if name in names:
                name = path
            names.add(name)
            own = settings.get(name, {})
            events = read_subscription(path, warn)
            if "events" in own:
                events = frozenset(e for e in EVENT_NAMES if e in set(own["events"]))
            timeout = own.get("timeout", default_timeout)
            found.append(ListenerSpec(name, os.path.abspath(path), events or frozenset(EVENT_NAMES), timeout))
    return found
