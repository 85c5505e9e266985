"""The ``ckptwatch:`` line of a listener file: its events, timeout, class and policy.

A listener file may carry one line among its first 10, after any comment
character, such as::

    # ckptwatch: events=after_save,end every_n_steps=1000 on_failure=retry:3
    # ckptwatch: class=Eval events=after_save        (a Python class listener)

Each word is ``key=value``; ``events`` takes a comma-separated list. This
module only reads the words; what they mean is checked where they are used
(:mod:`.policy`, discovery).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

__all__ = ["HEAD_LINES", "HEADER_KEYS", "Header", "parse_header_line", "read_header"]

HEAD_LINES = 10
#: Every key a header line may hold.
HEADER_KEYS = frozenset({"events", "timeout", "class", "every_n_steps", "every_n_secs", "on_failure", "coalesce"})

_MARK = re.compile(rb"ckptwatch:")
_WORD = re.compile(r"\s*([A-Za-z_][A-Za-z0-9_]*)\s*=\s*((?:[^\s,=]+\s*,\s*)*[^\s,=]+)")
_TRAILER = re.compile(r"\s*(\*/|-->|#|;|//)?\s*$")


@dataclass(frozen=True)
class Header:
    """The words of a file's ``ckptwatch:`` line (``line`` is its number, from 1)."""

    words: dict[str, str] = field(default_factory=dict)
    line: int = 0
    #: Text on the line that is not ``key=value`` (a typo such as ``every_n_steps 100``).
    leftover: str = ""

    @property
    def unknown(self) -> list[str]:
        return sorted(set(self.words) - HEADER_KEYS)


def parse_header_line(text: str) -> Header | None:
    """The words after ``ckptwatch:`` in one line, or None when it holds no ``key=value``."""
    _, found, tail = text.partition("ckptwatch:")
    if not found:
        return None
    words: dict[str, str] = {}
    pos = 0
    while True:
        match = _WORD.match(tail, pos)
        if not match:
            break
        words[match.group(1)] = re.sub(r"\s+", "", match.group(2))
        pos = match.end()
    if not words:
        return None
    rest = tail[pos:]
    leftover = "" if _TRAILER.fullmatch(rest) else rest.strip()
    return Header(words, 0, leftover)


def read_header(path: str) -> Header | None:
    """The ``ckptwatch:`` line among the file's first 10 lines, or None (also when unreadable)."""
    try:
        with open(path, "rb") as handle:
            head = handle.read(8192).splitlines()[:HEAD_LINES]
    except OSError:
        return None
    for number, raw in enumerate(head, 1):
        if not _MARK.search(raw):
            continue
        header = parse_header_line(raw.decode("utf-8", "replace"))
        if header is not None:
            return Header(header.words, number, header.leftover)
    return None
