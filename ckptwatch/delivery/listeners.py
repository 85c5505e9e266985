"""Listener discovery: which listeners run, for which events, with which policy.

A listener is any executable, or a Python class. In a directory, every
executable regular file runs, in byte order of names (``10-eval`` before
``20-upload.py``), as run-parts does; hidden files and package-manager or
editor leftovers are skipped quietly, and anything else that cannot run is
skipped with a warning that says why. A script names the events it wants,
and its policy, in a line ``# ckptwatch: events=after_save,end
every_n_steps=1000`` among its first 10 lines (:mod:`.header`); an event it
does not want starts no process. A file whose line says ``class=NAME`` is a
Python class listener (executable or not), hosted warm (:mod:`.host`).

``-l`` also takes ``MODULE:CLASS``, ``PATH.py:CLASS`` and the name of an
installed listener (entry point group ``ckptwatch.listeners``), and
``[listener.NAME] class = "..."`` in ckptwatch.toml adds a class listener.
A listener named explicitly that cannot run is a usage error.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from ..events import ALL_EVENT_NAMES, EVENT_NAMES, EventName
from .header import Header, read_header
from .policy import POLICY_KEYS, Policy, PolicyError, parse_policy
from .pytarget import PythonTarget, TargetError, entry_points, locate, parse_target
from .shebang import interpreter_problem

__all__ = ["ListenerError", "ListenerSpec", "discover", "read_subscription"]

_BACKUP_SUFFIXES = ("~", ".bak", ".swp", ".swo", ".orig", ".rpmnew", ".rpmsave", ".rpmorig")


class ListenerError(ValueError):
    """A listener path that cannot be used at all (a usage error)."""


@dataclass(frozen=True)
class ListenerSpec:
    name: str
    #: The executable, or the ``.py`` file of a class listener ("" for one named by module).
    path: str
    events: frozenset[EventName]
    timeout: float | None = None
    policy: Policy = Policy()
    #: Set for a Python class listener (one warm process for the session).
    python: PythonTarget | None = None
    #: Which watchers run it (``--role``): ``[listener.NAME] roles``, default chief only.
    roles: frozenset[str] = frozenset({"chief"})

    @property
    def kind(self) -> str:
        return "class" if self.python is not None else "script"

    def wants(self, event: EventName) -> bool:
        return event in self.events


def _skipped_quietly(name: str) -> bool:
    return name.startswith(".") or name.endswith(_BACKUP_SUFFIXES) or ".dpkg-" in name


def _events(words: Mapping[str, str], where: str, warn: Callable[[str], None]) -> frozenset[EventName] | None:
    if "events" not in words:
        return None
    wanted = {word.strip() for word in words["events"].split(",") if word.strip()}
    unknown = sorted(wanted - set(ALL_EVENT_NAMES))
    if unknown:
        warn(f"{where}: unknown event(s) {', '.join(unknown)} in its 'ckptwatch: events=' line; ignored")
    return frozenset(e for e in ALL_EVENT_NAMES if e in wanted)


def read_subscription(path: str, warn: Callable[[str], None]) -> frozenset[EventName] | None:
    """The events named in a ``ckptwatch: events=`` line of the file's head, or None."""
    header = read_header(path)
    return None if header is None else _events(header.words, path, warn)


def _unusable(path: str, st: os.stat_result) -> str | None:
    """Why an executable must not run, or None."""
    if st.st_mode & stat.S_IWOTH:
        return f"{path} is writable by every user; skipped (chmod o-w {path} to run it)"
    if not st.st_mode & (stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH) or not os.access(path, os.X_OK):
        return f"{path} is not executable; skipped (chmod +x {path} to run it)"
    return None


def _candidates(location: str, fail: Callable[[str], None], warn: Callable[[str], None]) -> Iterable[str]:
    try:
        st = os.stat(location)
    except OSError as exc:
        fail(f"cannot read listener path {location}: {exc.strerror}")
        return
    if not stat.S_ISDIR(st.st_mode):
        if not stat.S_ISREG(st.st_mode):
            fail(f"listener {location} is not a regular file or a directory")
            return
        yield location
        return
    if st.st_mode & stat.S_IWOTH and not st.st_mode & stat.S_ISVTX:
        fail(f"listener directory {location} is writable by every user; fix it with chmod o-w {location}")
        return
    try:
        names = sorted(os.listdir(location), key=os.fsencode)
    except OSError as exc:
        fail(f"cannot list listener directory {location}: {exc.strerror}")
        return
    for name in names:
        if _skipped_quietly(name):
            continue
        path = os.path.join(location, name)
        if os.path.isdir(path):
            warn(f"{path} is a directory; skipped (listeners are executables)")
            continue
        yield path


class _Found:
    """Listeners as they are found, with their names made unique and their settings applied."""

    def __init__(self, settings: Mapping[str, Mapping[str, Any]], default_timeout: float | None,
                 fail: Callable[[str], None], warn: Callable[[str], None]) -> None:
        self.settings = settings
        self.default_timeout = default_timeout
        self.fail = fail
        self.warn = warn
        self.specs: list[ListenerSpec] = []
        self.names: set[str] = set()

    def add(self, name: str, path: str, header: Header | None, python: PythonTarget | None,
            alias: str | None = None) -> None:
        if name in self.names:
            name = alias or path or name
        self.names.add(name)
        own = self.settings.get(name, {})
        words: dict[str, Any] = dict(header.words) if header else {}
        where = f"{path}: its 'ckptwatch:' line" if header else f"[listener.{name}]"
        if header and header.leftover:
            self.warn(f"{path}: '{header.leftover}' in its 'ckptwatch:' line is not key=value; ignored")
        if header and header.unknown:
            self.warn(f"{path}: unknown key(s) {', '.join(header.unknown)} in its 'ckptwatch:' line; ignored")
        events = _events(words, path, self.warn)
        if "events" in own:
            events = frozenset(e for e in ALL_EVENT_NAMES if e in set(own["events"]))
        timeout = own.get("timeout", self.default_timeout)
        if "timeout" in words and "timeout" not in own:
            try:
                timeout = float(words["timeout"])
                if not timeout > 0:
                    raise ValueError
            except ValueError:
                self.fail(f"{where}: timeout must be a number of seconds above 0, not {words['timeout']!r}")
                return
        merged = {k: v for k, v in words.items() if k in POLICY_KEYS}
        merged.update({k: v for k, v in own.items() if k in POLICY_KEYS})
        try:
            policy = parse_policy(merged)
        except PolicyError as exc:
            self.fail(f"{where}: {exc}" if not own else f"listener {name}: {exc}")
            return
        if python is not None and "args" in own:
            python = PythonTarget(python.cls, python.module, python.file, dict(own["args"]), python.entry_point)
        elif python is None and "args" in own:
            self.warn(f"[listener.{name}] args is for Python class listeners; {name} is a script: ignored")
        self.specs.append(ListenerSpec(name, path, events or frozenset(EVENT_NAMES), timeout, policy, python,
                                       frozenset(own.get("roles", ("chief",)))))


def _class_target(text: str, fail: Callable[[str], None]) -> PythonTarget | None:
    """``MODULE:CLASS``, ``PATH.py:CLASS`` or an installed listener's name, checked without importing it."""
    target = parse_target(text)
    if target is None:
        installed = entry_points()
        if text not in installed:
            return None
        value, _origin = installed[text]
        target = parse_target(value)
        if target is None:
            fail(f"the installed listener {text} names {value!r}, which is not MODULE:CLASS")
            return None
        target = PythonTarget(target.cls, target.module, target.file, {}, text)
    try:
        locate(target)
    except TargetError as exc:
        fail(f"class listener {text}: {exc}")
        return None
    return target


def _file(path: str, explicit: bool, found: _Found, env: Mapping[str, str] | None) -> None:
    """One file: a script, or a class listener when its header says ``class=``."""
    def refuse(text: str) -> None:
        (found.fail if explicit else found.warn)(text)

    try:
        st = os.stat(path)
    except OSError as exc:
        refuse(f"{path}: {exc.strerror}; skipped")
        return
    if not stat.S_ISREG(st.st_mode):
        refuse(f"{path} is not a regular file; skipped")
        return
    header = read_header(path)
    name = os.path.basename(path)
    if header is not None and "class" in header.words:
        if st.st_mode & stat.S_IWOTH:
            refuse(f"{path} is writable by every user; skipped (chmod o-w {path} to run it)")
            return
        target = parse_target(f"{path}:{header.words['class']}")
        if target is None:
            refuse(f"{path}: class={header.words['class']} in its 'ckptwatch:' line is not a class name")
            return
        try:
            locate(target)
        except TargetError as exc:
            refuse(f"class listener {path}: {exc}")
            return
        found.add(name, os.path.abspath(path), header, target)
        return
    reason = _unusable(path, st)
    if reason:
        refuse(reason)
        return
    missing = interpreter_problem(path, env)
    if missing:
        if explicit:
            found.fail(f"listener {path} cannot run: {missing}")
            return
        found.warn(f"{path}: {missing}; each of its runs will fail")
    found.add(name, os.path.abspath(path), header, None)


def discover(
    locations: Iterable[str],
    warn: Callable[[str], None],
    settings: Mapping[str, Mapping[str, Any]] | None = None,
    default_timeout: float | None = None,
    *,
    problems: list[str] | None = None,
    env: Mapping[str, str] | None = None,
) -> list[ListenerSpec]:
    """The listeners to run, in order; ``settings`` are per-name overrides from the config.

    Raises :class:`ListenerError` for a listener named explicitly (``-l``,
    ``[listener.NAME] class``) that cannot run; with ``problems``, every
    such problem is appended there instead and discovery goes on
    (``ckptwatch check``). ``env`` is the listeners' environment (its
    ``PATH`` finds ``#!/usr/bin/env`` interpreters).
    """
    settings = settings or {}

    def fail(text: str) -> None:
        if problems is None:
            raise ListenerError(text)
        problems.append(text)

    found = _Found(settings, default_timeout, fail, warn)
    for location in locations:
        if not os.path.lexists(location):
            target = _class_target(location, fail)
            if target is not None:
                name = location if target.file is None else f"{os.path.basename(target.file)}:{target.cls}"
                found.add(name, target.file or "", None, target, alias=location)
            elif parse_target(location) is None:
                fail(f"listener path {location} does not exist; create it or pass -l PATH "
                     "(or -l MODULE:CLASS, -l PATH.py:CLASS)")
            continue
        explicit = not os.path.isdir(location)
        for path in _candidates(location, fail, warn):
            _file(path, explicit, found, env)
    for name, table in settings.items():
        if "class" not in table:
            continue
        if name in found.names:
            fail(f"[listener.{name}] sets class = {table['class']!r}, but listener {name} is already a file "
                 "in a listener directory; give the table another name")
            continue
        target = _class_target(str(table["class"]), fail)
        if target is None:
            if parse_target(str(table["class"])) is None and str(table["class"]) not in entry_points():
                fail(f"[listener.{name}] class = {table['class']!r}: use MODULE:CLASS, PATH.py:CLASS or the "
                     "name of an installed listener (ckptwatch listeners)")
            continue
        found.add(name, target.file or "", None, target)
    return found.specs
