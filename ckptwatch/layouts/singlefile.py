"""What the single-file layouts (keras, torch, lightning, glob) share.

These frameworks write one file per save, often in place under its final
name, so "the file is there" is never "the save is done". A file commits when

1. its content is whole: a zip with its end record and a complete central
   directory (``torch.save``, ``.keras``, Lightning), an HDF5 file whose
   superblock end-of-file address is the file's size (``.h5``); other formats
   have no end marker and only step 2 speaks for them; and
2. that same version (mtime and size) was already whole at a look at least
   ``settle`` seconds earlier. The engine scans when a file is closed after
   writing; the second look is asked for with ``Observation.recheck``.

A file renamed into place (Lightning, ``os.replace``) looks exactly like one
written in place once it is there (scans get no event kinds), so it also
waits ``settle`` seconds: the price of one rule for both. The second look
is the engine's (``recheck``), with ``--once`` too; a layout never sleeps.

Only the tail of a zip (end record, central directory, capped) and the first
bytes of an HDF5 file are read, never a whole checkpoint. A step that is not
in the name may come from ``data.pkl`` inside a ``torch.save`` zip, read by an
unpickler that builds no object but dicts, lists and numbers.
"""

from __future__ import annotations

import io
import os
import re
import stat
import struct
import time
from collections.abc import Iterable
from dataclasses import dataclass
from typing import IO, Any, ClassVar

from .access import Access, StatLike
from .base import Checkpoint, Listing, Observation, SaveInProgress
from .entries import EntryLayout, Found

__all__ = [
    "FileLayout",
    "hdf5_whole",
    "name_step",
    "pickled_step",
    "temp_target",
    "whole",
    "zip_whole",
]

ZIP_MAGIC = b"PK\x03\x04"
HDF5_MAGIC = b"\x89HDF\r\n\x1a\n"
#: The most central directory bytes read to check that it is complete.
MAX_CENTRAL_DIRECTORY = 4 << 20
#: The largest ``data.pkl`` unpickled for a step.
MAX_PICKLE = 8 << 20
_UNDEFINED = {0xFFFF, 0xFFFFFFFF, 0xFFFFFFFFFFFFFFFF}
_TEMP_SUFFIX = re.compile(r"(?:\.tmp[0-9A-Za-z_]*|\.tempstate\d*|\.part)$")
_DECIMAL = re.compile(r"\d+\.\d+")
_LAST_NUMBER = re.compile(r"(\d+)(?!.*\d)")
_NAMED_NUMBER = r"(?:^|[^A-Za-z])({})[-_=.]?(\d+)"


# Content checks ---------------------------------------------------------------


def _read_at(handle: Any, offset: int, length: int) -> bytes:
    handle.seek(offset)
    data: bytes = handle.read(length)
    return data


def _u16(data: bytes, offset: int) -> int:
    value: int = struct.unpack_from("<H", data, offset)[0]
    return value


def zip_whole(handle: Any, size: int) -> bool:
    """Whether a zip ends with its end record and a complete central directory."""
    if size < 22:
        return False
    tail_len = min(size, 22 + 0xFFFF + 20)
    tail = _read_at(handle, size - tail_len, tail_len)
    pos = tail.rfind(b"PK\x05\x06")
    # the end record is the one whose comment ends exactly at the end of the file
    while pos >= 0 and not (pos + 22 <= len(tail) and pos + 22 + _u16(tail, pos + 20) == len(tail)):
        pos = tail.rfind(b"PK\x05\x06", 0, pos)
    if pos < 0:
        return False
    entries, cd_size, cd_offset = struct.unpack_from("<HII", tail, pos + 10)
    end_of_cd = size - tail_len + pos
    locator = tail[pos - 20 : pos] if pos >= 20 else b""
    if locator[:4] == b"PK\x06\x07" or {entries, cd_size, cd_offset} & _UNDEFINED:
        # zip64 (torch.save always writes it): the locator sits just before the end record
        if locator[:4] != b"PK\x06\x07":
            return False
        end_of_cd = struct.unpack_from("<Q", locator, 8)[0]
        record = _read_at(handle, end_of_cd, 56) if end_of_cd + 56 <= size else b""
        if record[:4] != b"PK\x06\x06":
            return False
        entries, cd_size, cd_offset = struct.unpack_from("<QQQ", record, 32)
    if entries == 0 or cd_offset + cd_size != end_of_cd:
        return False
    directory = _read_at(handle, cd_offset, min(cd_size, MAX_CENTRAL_DIRECTORY))
    if cd_size > MAX_CENTRAL_DIRECTORY:
        return directory[:4] == b"PK\x01\x02"  # too big to walk: the offsets and the signature agree
    offset = count = 0
    while offset + 46 <= len(directory) and directory[offset : offset + 4] == b"PK\x01\x02":
        name_len, extra_len, comment_len = struct.unpack_from("<HHH", directory, offset + 28)
        offset += 46 + name_len + extra_len + comment_len
        count += 1
    return offset == len(directory) and count == entries


def hdf5_whole(handle: Any, size: int) -> bool:
    """Whether an HDF5 superblock's end-of-file address is the file's size.

    The superblock sits at 0 or after a user block (512, 1024, ... bytes).
    Version 2/3 superblocks also carry "open for writing" flags, cleared on close.
    """
    base = 0
    while base + 48 <= size and _read_at(handle, base, 8) != HDF5_MAGIC:
        base = 512 if base == 0 else base * 2
        if base > 1 << 20:
            return False
    head = _read_at(handle, base, 128)
    if len(head) < 48 or head[:8] != HDF5_MAGIC:
        return False
    version = head[8]
    if version in (0, 1):
        width, start = head[13], 24 if version == 0 else 28
    elif version in (2, 3):
        width, start = head[9], 12
        if version == 3 and head[11] & 0x05:
            return False  # still open for writing (or SWMR)
    else:
        return False
    if width not in (2, 4, 8) or start + 3 * width > len(head):
        return False
    fmt = {2: "<H", 4: "<I", 8: "<Q"}[width]
    base_address = struct.unpack_from(fmt, head, start)[0]
    eof = struct.unpack_from(fmt, head, start + 2 * width)[0]
    if eof in _UNDEFINED:
        return False
    return eof == size or (base_address > 0 and base_address + eof == size)


def whole(path: str, size: int, kind: str | None = None) -> tuple[bool, str | None]:
    """Whether a file's content is whole, and the format that was checked.

    The format is ``kind`` ("zip", "hdf5") when the name demands one, else
    what the first bytes say. A file of another format (None) is whole when
    it is not empty: only its settle time speaks for it.
    """
    if size == 0:
        return False, kind
    try:
        with open(path, "rb") as handle:
            head = handle.read(8)
            if not kind and len(head) < 8 and (ZIP_MAGIC.startswith(head[:4]) or HDF5_MAGIC.startswith(head)):
                return False, None  # the first bytes of a zip or an HDF5 file, so far
            kind = kind or ("zip" if head[:4] == ZIP_MAGIC else "hdf5" if head == HDF5_MAGIC else None)
            if kind == "zip":
                return head[:4] == ZIP_MAGIC and zip_whole(handle, size), kind
            if kind == "hdf5":
                return hdf5_whole(handle, size), kind
            return True, None
    except (OSError, struct.error):
        return False, kind


# Steps --------------------------------------------------------------------------


def name_step(stem: str, prefer: Iterable[str] = ("step",)) -> int | None:
    """The step a file name carries: after one of ``prefer`` (``step=400``,
    ``epoch-003``), else its last whole number. Decimals (``0.42``, a metric
    in a Keras template) are not steps."""
    for word in prefer:
        match = re.search(_NAMED_NUMBER.format(re.escape(word)), stem, re.IGNORECASE)
        if match:
            return int(match.group(2))
    match = _LAST_NUMBER.search(_DECIMAL.sub("", stem))
    return int(match.group(1)) if match else None


class _Opaque:
    """What every class and persistent id becomes when a pickle is read for its numbers."""

    def __init__(self, *args: object, **kwargs: object) -> None:
        pass

    def __setstate__(self, state: object) -> None:
        pass

    def __setitem__(self, key: object, value: object) -> None:
        pass

    def append(self, value: object) -> None:
        pass

    def extend(self, values: object) -> None:
        pass


class _Dict(dict):  # type: ignore[type-arg]
    """An OrderedDict as read back (a state_dict carries ``_metadata`` state)."""

    def __setstate__(self, state: object) -> None:
        pass


def _load_numbers_only(data: bytes) -> object:
    """Unpickle running no code: every global resolves to :class:`_Opaque`, except OrderedDict to a dict.

    ``pickle`` is imported here, not at the top: only files are read this way, and
    every start would pay for it.
    """
    import pickle

    class NumbersOnly(pickle.Unpickler):
        def find_class(self, module: str, name: str) -> Any:
            if (module, name) == ("collections", "OrderedDict"):
                return _Dict
            return _Opaque

        def persistent_load(self, pid: object) -> Any:
            return _Opaque()

    return NumbersOnly(io.BytesIO(data)).load()


def pickled_step(path: str | IO[bytes], keys: Iterable[str]) -> int | None:
    """The first of ``keys`` that the top-level dict in a ``torch.save`` zip holds as an int.

    ``path`` is a path, or an open binary file (an object store's), closed here.
    """
    import zipfile  # with pathlib and more: only when a file is read

    try:
        with _closing(path), zipfile.ZipFile(path) as archive:
            infos = [i for i in archive.infolist() if i.filename == "data.pkl" or i.filename.endswith("/data.pkl")]
            if not infos:
                return None
            info = min(infos, key=lambda i: i.filename.count("/"))
            if info.file_size > MAX_PICKLE:
                return None
            data = archive.read(info)
        obj = _load_numbers_only(data)
    except Exception:  # noqa: BLE001 - any unreadable content simply has no step
        return None
    if isinstance(obj, dict):
        for key in keys:
            value = obj.get(key)
            if isinstance(value, int) and not isinstance(value, bool) and value >= 0:
                return value
    return None


class _closing:
    """Close an open file handed in (not a path) when done with it."""

    def __init__(self, source: object) -> None:
        self.source = source

    def __enter__(self) -> None:
        return None

    def __exit__(self, *exc: object) -> None:
        close = getattr(self.source, "close", None)
        if close is not None:
            close()


def temp_target(name: str) -> str | None:
    """For a temporary name, the final name it stands for (``''`` when unknown); None for a final name.

    Temporary: ``*.tmp*``, ``*.tempstate*``, ``*.part``, and names starting with a dot.
    """
    stripped = _TEMP_SUFFIX.sub("", name)
    if stripped == name and not name.startswith("."):
        return None
    stripped = stripped.lstrip(".")
    return "" if stripped.startswith("tmp") else stripped


# The layout ---------------------------------------------------------------------


@dataclass
class _Seen:
    """One version (mtime, size) of a file, as the looks saw it."""

    key: tuple[int, int]
    since: float  # when this version was first seen whole (monotonic)
    whole: bool
    verified: bool  # an end marker (zip, HDF5) was checked, not only "not empty"
    step: int | None = None  # a step not in the name, worked out once per version


class FileLayout(EntryLayout):
    """A layout whose saves are single files; subclasses say which names and steps.

    Hooks: :meth:`paths` (a top-level entry's candidate paths, relative),
    :meth:`owns` (a final name of this layout), :meth:`step_of_name`,
    :meth:`step_of_content`, :meth:`kind` (the format a name must have),
    :meth:`check` (is this content whole), :meth:`path_of` (what listeners
    get), :meth:`keep` (drop a committed file that is not a save of its own)
    and :meth:`watch_of` (subdirectories to watch).
    """

    #: The names (a temp name: the name it stands for) that can be this layout's; None: any.
    name_pattern: ClassVar[re.Pattern[str] | None] = None
    #: Seconds a whole version must stay unchanged; longer when no end marker speaks for it.
    settle: ClassVar[float] = 0.1
    settle_unverified: ClassVar[float] = 0.2

    def __init__(self, root: str, argument: str | None = None, fs: Access | None = None) -> None:
        super().__init__(root, argument, fs)
        self._seen: dict[str, _Seen] = {}
        self.newest_step: int | None = None  # of the files with a step in their name
        self._waits: list[float] = []  # this look's files waiting for their second look

    @classmethod
    def interesting(cls, name: str, is_dir: bool) -> bool:
        if cls.name_pattern is None:
            return True
        target = temp_target(name)
        return not is_dir and bool(cls.name_pattern.search(name if target is None else target))

    # hooks ----------------------------------------------------------------------

    def paths(self, name: str, is_dir: bool, obs: Observation) -> Iterable[str]:
        """The candidate files of top-level entry ``name`` (relative to DIR): the file itself."""
        return () if is_dir else (name,)

    def watch_of(self, name: str, committed: list[Checkpoint]) -> tuple[str, ...]:
        """Subdirectories of entry ``name`` to watch; none by default."""
        return ()

    def owns(self, rel: str) -> bool:
        raise NotImplementedError

    def step_of_name(self, rel: str) -> int | None:
        return name_step(os.path.splitext(os.path.basename(rel))[0])

    def step_of_content(self, rel: str) -> int | None:
        return None

    def kind(self, rel: str) -> str | None:
        """``"zip"`` or ``"hdf5"`` when the name says what the content must be."""
        return None

    def check(self, rel: str, size: int) -> tuple[bool, bool]:
        """``(whole, verified)``: verified when an end marker was checked, not only "not empty".

        On an object store a file is visible only once whole (a PUT, a
        completed multipart upload): whole as soon as it is listed.
        """
        if self.fs.atomic_objects:
            return size > 0, True
        is_whole, kind = whole(self.join(rel), size, self.kind(rel))
        return is_whole, kind is not None

    def path_of(self, rel: str) -> str:
        return rel

    def keep(self, checkpoint: Checkpoint, listing: Listing, obs: Observation) -> bool:
        return True

    # the scan ---------------------------------------------------------------------

    def scan(self, listing: Listing) -> Observation:
        obs = Observation()
        self._waits = []
        self.look_at_entries(listing, obs)
        obs.committed.sort(key=lambda c: (c.step, c.path))
        if self._waits:
            obs.recheck = min(self._waits) + 0.01
        return obs

    def look_order(self, name: str) -> object:
        return (self.step_of_name(name) is None, name)  # stepless files (last.pt) after the numbered ones

    def look_at(self, name: str, is_dir: bool, listing: Listing, obs: Observation) -> Found | None:
        committed: list[Checkpoint] = []
        starting: list[SaveInProgress] = []
        mine = waiting = False
        for rel in self.paths(name, is_dir, obs):
            target = temp_target(os.path.basename(rel))
            if target is not None:
                final = os.path.join(os.path.dirname(rel), target)
                if target and self.owns(final):
                    mine = True
                    step = self.step_of_name(final)
                    if step is not None:
                        starting.append(SaveInProgress(step, final))
                continue
            if not self.owns(rel):
                continue
            st = self.stat(rel)
            if st is None or not stat.S_ISREG(st.st_mode):
                continue  # gone, or a link (never a save of its own)
            mine = True
            seen = self._seen[rel] = self.look(rel, st)
            checkpoint, save, wait = self.classify(rel, st, seen, listing, obs)
            committed += [checkpoint] if checkpoint else []
            starting += [save] if save else []
            if wait:
                self._waits.append(wait)
                waiting = True
        watch = self.watch_of(name, committed)
        if not (mine or watch):
            return None
        return Found(tuple(committed), tuple(starting), watch, again=waiting)

    def entry_changed(self, name: str, before: Found | None, after: Found | None) -> None:
        if after is None:
            for rel in [r for r in self._seen if r == name or r.startswith(name + "/")]:
                del self._seen[rel]

    def look(self, rel: str, st: StatLike) -> _Seen:
        """This look at a file: a new version is checked for wholeness, a known whole one is not."""
        key = (st.st_mtime_ns, st.st_size)
        seen = self._seen.get(rel)
        if seen is not None and seen.key == key and seen.whole:
            return seen
        return _Seen(key, time.monotonic(), *self.check(rel, st.st_size))

    def wait_for(self, seen: _Seen) -> float:
        """Seconds until a whole version has settled (0: settled; at once for an object, whole when seen)."""
        if self.fs.atomic_objects:
            return 0.0
        need = self.settle if seen.verified else self.settle_unverified
        return max(0.0, need - (time.monotonic() - seen.since))

    def classify(
        self, rel: str, st: StatLike, seen: _Seen, listing: Listing, obs: Observation
    ) -> tuple[Checkpoint | None, SaveInProgress | None, float | None]:
        """A settled file becomes a checkpoint; ``(checkpoint, save under way, seconds to its second look)``."""
        step = self.step_of_name(rel)
        wait = self.wait_for(seen) if seen.whole else None
        if wait != 0:
            # Still being written: a save in progress. Whole and waiting for its
            # second look: nothing yet (announcing it would interleave the
            # before/after pairs of saves that did not overlap).
            return None, SaveInProgress(step, rel) if step is not None and wait is None else None, wait
        if step is None:
            if seen.step is None:
                seen.step = self.step_of_content(rel)
                if seen.step is None:
                    seen.step = self.newest_step or 0
            step = seen.step
        elif self.newest_step is None or step > self.newest_step:
            self.newest_step = step
        checkpoint = Checkpoint(self.name, step, self.path_of(rel), rel, st.st_mtime_ns, st.st_size)
        return (checkpoint if self.keep(checkpoint, listing, obs) else None), None, None
