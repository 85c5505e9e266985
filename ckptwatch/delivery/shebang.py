"""A script's ``#!`` interpreter: is it there?

When a script's interpreter is missing, ``execve`` fails with "No such file or
directory" and names the script, which exists: a person then looks in the
wrong place. This module finds the interpreter a ``#!`` line names (through
``PATH`` for ``#!/usr/bin/env NAME``) and says which one is missing.
"""

from __future__ import annotations

import errno
import os
from collections.abc import Mapping

__all__ = ["interpreter_problem", "spawn_error"]


def _interpreter(path: str) -> tuple[str, list[str]] | None:
    """``(interpreter, its arguments)`` from the file's ``#!`` line, or None."""
    try:
        with open(path, "rb") as handle:
            first = handle.readline(1024)
    except OSError:
        return None
    if not first.startswith(b"#!"):
        return None
    words = first[2:].decode("utf-8", "surrogateescape").split()
    return (words[0], words[1:]) if words else None


def _on_path(name: str, env: Mapping[str, str]) -> bool:
    for folder in env.get("PATH", os.defpath).split(os.pathsep):
        candidate = os.path.join(folder or ".", name)
        if os.path.isfile(candidate) and os.access(candidate, os.X_OK):
            return True
    return False


def interpreter_problem(path: str, env: Mapping[str, str] | None = None) -> str | None:
    """Why the ``#!`` interpreter of ``path`` cannot run, or None (also when there is no ``#!``)."""
    env = os.environ if env is None else env
    found = _interpreter(path)
    if found is None:
        return None
    program, args = found
    if not os.path.isabs(program):
        return f"its #! interpreter {program} is not an absolute path"
    if not os.path.exists(program):
        return f"its #! interpreter {program} does not exist"
    if not os.access(program, os.X_OK) or os.path.isdir(program):
        return f"its #! interpreter {program} is not executable"
    if os.path.basename(program) == "env":
        names = [a for a in args if not a.startswith("-") and "=" not in a]
        if names and not _on_path(names[0], env):
            return f"its #! interpreter {names[0]} (#!{program} {names[0]}) is not on PATH"
    return None


def spawn_error(path: str, exc: OSError, env: Mapping[str, str] | None = None) -> str:
    """One line for a listener that could not be started: the missing interpreter when that is why."""
    if exc.errno == errno.ENOENT and os.path.exists(path):
        problem = interpreter_problem(path, env)
        if problem:
            return f"{path}: {problem}"
    return str(exc)
