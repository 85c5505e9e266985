"""``glob:PATTERN``: the user's own file names (``model_{step}.pt``, ``ckpt/epoch{epoch:03d}.h5``).

PATTERN is a path relative to DIR. ``{step}`` and ``{epoch}`` capture the step
(``{step}`` wins when both are there) and take integer format specs
(``{step:06d}``); any other ``{name}`` (``{val_loss:.2f}``) and ``*`` match
within one path component, ``?`` one character; ``{{`` and ``}}`` are
braces; everything else is literal. Placeholders may sit in directory
components (``step_{step}/model.pt``): matching directories are listed, and
watched while none of their files has committed.

A matching file commits when it is whole (a zip by its end record, an HDF5
file by its end-of-file address, any other file by not being empty) and
unchanged for a moment: 0.1 s after an end-marker check, 0.2 s otherwise (see
:mod:`.singlefile`). A temp name of a match (``model_100.pt.tmp``) is a save
under way. A *directory* matching the whole pattern is not a checkpoint: "all
its files are stable" cannot tell a pause between two files from the end of a
save, so it is reported once; point the pattern at the file the framework
writes last. Never auto-detected.
"""

from __future__ import annotations

import os
import re
import string
from collections.abc import Iterable

from .access import Access
from .base import Checkpoint, Listing, Observation
from .singlefile import FileLayout

__all__ = ["GlobLayout", "translate"]

_STEP_FIELDS = ("step", "epoch")
_INT_SPEC = re.compile(r"^(?P<zero>0)?(?P<width>\d+)?d?$")
_EXAMPLE = "e.g. --layout 'glob:model_{step}.pt'"


def _literal(text: str) -> str:
    return "".join("[^/]*?" if c == "*" else "[^/]" if c == "?" else re.escape(c) for c in text)


def translate(pattern: str, named: list[str] | None = None) -> str:
    """A regex for a pattern (or one component of it); ``named`` collects its step groups.

    A field used twice gets a second group (``step__1``): ``{step:06d}`` and
    ``{step}`` spell one number differently, so the values are compared as ints.

    Raises ValueError with a one-line reason for a pattern that cannot work.
    """
    out = []
    try:
        parts = list(string.Formatter().parse(pattern))
    except ValueError as exc:
        raise ValueError(f"glob pattern {pattern!r}: {exc} (write {{{{ and }}}} for braces)") from None
    for literal, field, spec, conversion in parts:
        out.append(_literal(literal))
        if field is None:
            continue
        if field == "" or conversion:
            raise ValueError(f"glob pattern {pattern!r}: use named placeholders {{step}}/{{epoch}}, no '{{}}' or '!r'")
        if field not in _STEP_FIELDS:
            out.append("[^/]+?")
            continue
        match = _INT_SPEC.match(spec or "")
        if not match:
            raise ValueError(f"glob pattern {pattern!r}: {{{field}:{spec}}} is not an integer format; "
                             f"use {{{field}}}, {{{field}:d}} or {{{field}:06d}}")
        digits = rf"\d{{{int(match['width'])},}}" if match["zero"] and match["width"] else \
            r" *\d+" if match["width"] else r"\d+"
        if named is None:
            out.append(f"(?:{digits})")
        else:
            group = f"{field}__{sum(n.split('__')[0] == field for n in named)}"
            named.append(group)
            out.append(f"(?P<{group}>{digits})")
    return "".join(out)


class GlobLayout(FileLayout):
    name = "glob"
    framework = "your own file names, by a pattern with {step} / {epoch}"
    starts = "a matching file being written, or its temp name (NAME.tmp)"
    commits = "the matching file whole (zip / HDF5 end marker, else not empty) and unchanged for 0.1-0.2 s"
    object_store = "a matching object is listed (visible only once whole)"
    takes_argument = True
    argument_help = "PATTERN"

    def __init__(self, root: str, argument: str | None = None, fs: Access | None = None) -> None:
        super().__init__(root, argument, fs)
        pattern = argument or ""
        parts = pattern.split("/")
        if os.path.isabs(pattern) or any(p in ("", ".", "..") for p in parts):
            raise ValueError(f"glob pattern {pattern!r} must be a relative path inside DIR, {_EXAMPLE}")
        if parts[-1].startswith("."):
            raise ValueError(f"glob pattern {pattern!r}: a name starting with '.' is a temporary name, never a save")
        named: list[str] = []
        self._regex = re.compile(translate(pattern, named))
        if not named:
            raise ValueError(f"glob pattern {pattern!r} has no {{step}} or {{epoch}}, {_EXAMPLE}")
        field = "step" if "step__0" in named else "epoch"
        self._groups = [n for n in named if n.startswith(field + "__")]
        self._dirs = [re.compile(translate(part)) for part in parts[:-1]]
        self._literal_dirs = [not re.search(r"[{}*?]", part) for part in parts[:-1]]
        self._last = re.compile(translate(parts[-1]))
        self._said: set[str] = set()
        self._levels: dict[str, list[str]] = {}  # per top-level directory: its directories at the pattern's depth

    @classmethod
    def detect(cls, listing: Listing) -> str | None:
        return None

    def paths(self, name: str, is_dir: bool, obs: Observation) -> Iterable[str]:
        """A top-level file, or the files under a top-level directory at the pattern's depth."""
        if not self._dirs:
            if is_dir and self._last.fullmatch(name):
                self._say_directory(name, obs)
            return () if is_dir else (name,)
        if not is_dir or not self._dirs[0].fullmatch(name):
            return ()
        level = [name]
        for regex in self._dirs[1:]:
            level = [os.path.join(d, n) for d in level for n in sorted(self._entries(d)[1]) if regex.fullmatch(n)]
        self._levels[name] = level
        found = []
        for d in level:
            files, dirs = self._entries(d)
            found += [os.path.join(d, n) for n in sorted(files)]
            for n in sorted(dirs):
                if self._last.fullmatch(n):
                    self._say_directory(os.path.join(d, n), obs)
        return found

    def _say_directory(self, rel: str, obs: Observation) -> None:
        if rel not in self._said:
            self._said.add(rel)
            obs.problems.append(f"{rel}/ matches the glob pattern but is a directory; "
                                "glob commits files only (point the pattern at the file written last)")

    def watch_of(self, name: str, committed: list[Checkpoint]) -> tuple[str, ...]:
        """The directories at the pattern's depth, while none of their files has committed
        (always, for a pattern whose directories are literal names)."""
        done = {os.path.dirname(c.marker) for c in committed}
        literal = all(self._literal_dirs)
        return tuple(d for d in self._levels.pop(name, ()) if literal or d not in done)

    def _entries(self, rel: str) -> tuple[list[str], list[str]]:
        files: list[str] = []
        dirs: list[str] = []
        try:
            for name, is_dir in self.fs.entries(rel):
                (dirs if is_dir else files).append(name)
        except OSError:
            pass
        return files, dirs

    def owns(self, rel: str) -> bool:
        return self.step_of_name(rel) is not None

    def step_of_name(self, rel: str) -> int | None:
        match = self._regex.fullmatch(rel)
        steps = {int(match[group]) for group in self._groups} if match else set()
        return steps.pop() if len(steps) == 1 else None
