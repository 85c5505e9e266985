"""Naming a Python listener class, and finding it without importing it.

A Python class listener is named ``MODULE:CLASS`` (``mypkg.hooks:Eval``, an
importable module; the current directory comes first, as with ``python -m``),
``PATH.py:CLASS`` (a file), or by the name of an entry point in the group
``ckptwatch.listeners`` that an installed package declares.

The watcher must never import a listener's module (it may import TensorFlow),
so :func:`locate` checks a target by reading: the module's file is found the
way the import system would find it, and its source is parsed for the class.
The import itself happens in the listener's own process (:mod:`.hostchild`).
"""

from __future__ import annotations

import ast
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

__all__ = ["ENTRY_POINT_GROUP", "PythonTarget", "TargetError", "class_summary", "entry_points", "locate",
           "parse_target"]

ENTRY_POINT_GROUP = "ckptwatch.listeners"
_DOTTED = re.compile(r"[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*")


class TargetError(ValueError):
    """A class target that cannot be used; the message says what to fix."""


@dataclass(frozen=True)
class PythonTarget:
    """Where a listener class lives: a module or a file, and the class's name in it."""

    cls: str
    module: str | None = None
    #: Absolute path of the ``.py`` file (``PATH.py:CLASS``), else None.
    file: str | None = None
    #: Keyword arguments for the constructor (``args = {...}`` in ckptwatch.toml).
    args: Mapping[str, Any] = field(default_factory=dict, compare=False, hash=False)
    #: The entry point's name when it came from one.
    entry_point: str | None = None

    def __str__(self) -> str:
        return f"{self.file or self.module}:{self.cls}"

    def to_json(self) -> dict[str, Any]:
        return {"cls": self.cls, "module": self.module, "file": self.file, "args": dict(self.args)}


def parse_target(text: str, args: Mapping[str, Any] | None = None) -> PythonTarget | None:
    """``MODULE:CLASS`` or ``PATH.py:CLASS`` as a target; None when ``text`` is neither."""
    where, colon, cls = text.rpartition(":")
    if not colon or not where or not _DOTTED.fullmatch(cls):
        return None
    if where.endswith(".py"):
        return PythonTarget(cls, file=os.path.abspath(where), args=dict(args or {}))
    if _DOTTED.fullmatch(where):
        return PythonTarget(cls, module=where, args=dict(args or {}))
    return None


def entry_points() -> dict[str, tuple[str, str]]:
    """Installed listeners: entry point name -> (``MODULE:CLASS``, distribution and version)."""
    from importlib.metadata import entry_points as installed

    found: dict[str, tuple[str, str]] = {}
    for point in installed(group=ENTRY_POINT_GROUP):
        dist = getattr(point, "dist", None)
        origin = f"{dist.name} {dist.version}" if dist is not None else "?"
        found.setdefault(point.name, (point.value, origin))
    return found


def _module_source(module: str, cwd: str) -> str | None:
    """The source file of ``module`` as the listener's process would import it; raises TargetError.

    Finds each package on the way down without running it (``find_spec`` of
    a dotted name would import its parents). None when the module is found
    but has no Python source (an extension, a namespace package).
    """
    import importlib.machinery
    import importlib.util
    import sys

    parts = module.split(".")
    spec = importlib.machinery.PathFinder.find_spec(parts[0], [cwd])
    if spec is None:
        try:
            spec = importlib.util.find_spec(parts[0])
        except (ImportError, ValueError):
            spec = None
    if spec is None:
        raise TargetError(f"no module named {parts[0]!r} (looked in {cwd} and {sys.executable}'s sys.path)")
    for depth in range(1, len(parts)):
        locations = spec.submodule_search_locations
        if locations is None:
            raise TargetError(f"{'.'.join(parts[:depth])} is a module, not a package: no {module}")
        child = importlib.machinery.PathFinder.find_spec(".".join(parts[: depth + 1]), list(locations))
        if child is None:
            raise TargetError(f"no module named {'.'.join(parts[: depth + 1])!r}")
        spec = child
    origin = spec.origin
    if origin and origin.endswith(".py") and os.path.isfile(origin):
        return origin
    return None


def _defines(source: str, path: str, name: str) -> str | None:
    """None when the module's top level defines ``name`` (or may: ``*`` imports); else why not."""
    try:
        tree = ast.parse(source, path)
    except SyntaxError as exc:
        return f"{path}:{exc.lineno}: syntax error: {exc.msg}"
    top = name.split(".")[0]
    classes = [node.name for node in tree.body if isinstance(node, ast.ClassDef)]
    defined: set[str] = set()
    for node in ast.walk(tree):  # generous: the listener's own process has the last word
        if isinstance(node, ast.ClassDef):
            defined.add(node.name)
        elif isinstance(node, (ast.Import, ast.ImportFrom)):
            for alias in node.names:
                if alias.name == "*":
                    return None
                defined.add((alias.asname or alias.name).split(".")[0])
        elif isinstance(node, (ast.Assign, ast.AnnAssign)):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            defined.update(t.id for t in targets if isinstance(t, ast.Name))
        elif isinstance(node, ast.FunctionDef) and node.name == "__getattr__" and node in tree.body:
            return None
    if top in defined:
        return None
    shown = f" (classes there: {', '.join(classes)})" if classes else ""
    return f"{path} defines no {top}{shown}"


def locate(target: PythonTarget, cwd: str | None = None) -> None:
    """Check that ``target``'s module or file exists and defines its class, without importing it.

    Raises :class:`TargetError` with one line that says what to fix.
    """
    cwd = cwd or os.getcwd()
    if target.file is not None:
        if not os.path.exists(target.file):
            raise TargetError(f"no file {target.file} (for the class listener {target})")
        if not os.path.isfile(target.file):
            raise TargetError(f"{target.file} is not a file")
        path: str | None = target.file
    else:
        assert target.module is not None
        path = _module_source(target.module, cwd)
    if path is None:
        return
    try:
        with open(path, "rb") as handle:
            source = handle.read().decode("utf-8", "replace")
    except OSError as exc:
        raise TargetError(f"cannot read {path}: {exc.strerror}") from None
    problem = _defines(source, path, target.cls)
    if problem:
        raise TargetError(problem)


def class_summary(target: PythonTarget, cwd: str | None = None) -> str:
    """The first line of the class's docstring, read from its source (empty when there is none)."""
    try:
        path = target.file or _module_source(target.module or "", cwd or os.getcwd())
        if path is None:
            return ""
        with open(path, "rb") as handle:
            tree = ast.parse(handle.read(), path)
    except (TargetError, OSError, SyntaxError, ValueError):
        return ""
    for node in ast.walk(tree):
        if isinstance(node, ast.ClassDef) and node.name == target.cls.split(".")[-1]:
            doc = ast.get_docstring(node) or ""
            return doc.strip().splitlines()[0] if doc.strip() else ""
    return ""
