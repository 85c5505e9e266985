"""Replay a real framework's save, operation by operation, from an inotify trace.

``tests/traces/*.trace.txt`` (copied from the team's shared traces) hold what
TensorFlow, Transformers, DCP and others really did on disk: create, write in
place, close, rename, delete, in that order. :func:`replay` performs the same
operations in a directory, so the watcher under test sees what it would see
next to the real framework.

inotify does not record what was written, so the content of the marker files
is made here the way the framework makes it: TensorFlow's ``checkpoint``
state file names the newest ``.index`` prefix and the ones kept; the Trainer's
``trainer_state.json`` carries its ``global_step``; other files get bytes.
``inotifywait -r`` misses the first event in a new subdirectory; an operation
on a file never created is taken as its creation. After a directory is renamed
it keeps reporting paths inside it under the old name (Orbax renames
``N.orbax-checkpoint-tmp`` to ``N``, then rotation's deletes inside ``N`` show up
as ``N.orbax-checkpoint-tmp/...``): a path under a renamed directory's old
name, while that name does not exist, is taken under its new name.

Single-file checkpoints (``.h5``, ``.keras``, ``.pt``, ``.ckpt``) get real
content (:mod:`samplefiles`) written progressively: each MODIFY line writes
half of what is left, the CLOSE_WRITE the rest, so the file fails the
layouts' content checks until it is closed, as the framework's does. A
MOVED_TO with no MOVED_FROM came from outside DIR (Lightning's ``$TMPDIR``):
such a file is written whole beside DIR and renamed in.
"""

from __future__ import annotations

import json
import os
import re
import shutil
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import samplefiles

TRACES = Path(__file__).parent / "traces"
_LINE = re.compile(r"^\s*\d+\s+\S+\s+([A-Z_,]+)\s+\./(.*?)(?: x(\d+))?$")
_SAVED = re.compile(r"^\s*\d+\s+>>> SAVED (\d+) \./(.*)$")
_INDEX = re.compile(r"^(.+-(\d+))\.index$")


@dataclass(frozen=True)
class Saved:
    """A ``>>> SAVED`` line: the framework's own word that a save returned."""

    step: int
    path: str


def operations(name: str) -> Iterator[tuple[str, str, int] | Saved]:
    """``(events, path, count)`` per trace line, and :class:`Saved` markers."""
    for line in (TRACES / f"{name}.trace.txt").read_text().splitlines():
        saved = _SAVED.match(line)
        if saved:
            yield Saved(int(saved.group(1)), saved.group(2))
            continue
        match = _LINE.match(line)
        if match:
            yield match.group(1), match.group(2), int(match.group(3) or 1)


class Replayer:
    def __init__(self, root: Path, *, absolute_state_paths: str | None = None) -> None:
        """``absolute_state_paths``: write TF state files with absolute paths under
        this directory (TF1 does; a sidecar sees the volume under another path)."""
        self.root = root
        self.absolute = absolute_state_paths
        self._open: dict[str, object] = {}
        self._moving_from: str | None = None
        self._renamed: dict[str, str] = {}  # a renamed directory's old path -> its new one
        self._rest: dict[str, bytes] = {}  # a single-file checkpoint's bytes not written yet

    def _path(self, rel: str) -> Path:
        return self.root / rel.rstrip("/")

    def _handle(self, rel: str):
        if rel not in self._open:
            path = self._path(rel)
            path.parent.mkdir(parents=True, exist_ok=True)
            self._open[rel] = open(path, "ab")  # noqa: SIM115
        return self._open[rel]

    def _close(self, rel: str) -> None:
        handle = self._open.pop(rel, None)
        if handle is not None:
            handle.close()

    def _content(self, rel: str) -> bytes | None:
        name = os.path.basename(rel)
        if name.startswith("checkpoint.tmp"):
            return self._state_file()
        if name == "trainer_state.json":
            step = int(re.search(r"checkpoint-(\d+)", rel).group(1))
            return json.dumps({"global_step": step, "log_history": []}).encode()
        return None

    def _single_file(self, rel: str) -> bytes | None:
        """The whole content of a single-file checkpoint, or None for other files."""
        if rel.endswith((".h5", ".hdf5")):
            return samplefiles.hdf5()
        if rel.endswith(".keras"):
            return samplefiles.keras_zip()
        if rel.endswith((".pt", ".pth")):
            return samplefiles.torch_zip({"step": int((re.findall(r"\d+", rel) or [0])[-1])})
        if rel.endswith(".ckpt"):  # last.ckpt: the same step as the newest step file
            steps = [int(m) for e in os.listdir(self.root) for m in re.findall(r"step=(\d+)", e)]
            named = re.search(r"step=(\d+)", rel)
            return samplefiles.lightning_ckpt(int(named.group(1)) if named else max(steps, default=0))
        return None

    def _state_file(self) -> bytes:
        prefixes = []
        for entry in os.listdir(self.root):
            match = _INDEX.match(entry)
            if match:
                prefixes.append((os.stat(self.root / entry).st_mtime_ns, int(match.group(2)), match.group(1)))
        if not prefixes:
            return b""
        newest = max(prefixes)[2]
        kept = [p for _, _, p in sorted(prefixes, key=lambda t: t[1])]

        def show(prefix: str) -> str:
            return f"{self.absolute}/{prefix}" if self.absolute else prefix

        lines = [f'model_checkpoint_path: "{show(newest)}"']
        lines += [f'all_model_checkpoint_paths: "{show(p)}"' for p in kept]
        return ("\n".join(lines) + "\n").encode()

    def _current(self, rel: str) -> str:
        """``rel`` under the new names of renamed directories whose old name is gone."""
        rel = rel.rstrip("/")
        for _ in range(8):
            for old, new in self._renamed.items():
                if (rel == old or rel.startswith(old + "/")) and not self._path(old).exists():
                    rel = new + rel[len(old):]
                    break
            else:
                return rel
        return rel

    def _record_rename(self, old: str, new: str) -> None:
        for key, value in list(self._renamed.items()):
            if value.startswith(old + "/"):
                self._renamed[key] = value = new + value[len(old):]
            if key.startswith(old + "/"):
                self._renamed[new + key[len(old):]] = value  # the watcher may mix old and new parts
        self._renamed[old] = new

    def apply(self, events: str, rel: str, count: int) -> None:
        kinds = set(events.split(","))
        rel = self._current(rel)
        path = self._path(rel)
        if "MOVED_FROM" in kinds:
            self._close(rel)
            self._moving_from = rel
            return
        if "MOVED_TO" in kinds:
            source, self._moving_from = self._moving_from, None
            if source is not None and self._path(source).exists():
                os.replace(self._path(source), path)
                if "ISDIR" in kinds:
                    self._record_rename(source, rel)
            elif source is None and (content := self._single_file(rel)) is not None:
                outside = self.root.parent / f".replay-{path.name}"
                outside.write_bytes(content)
                os.replace(outside, path)
            return
        if "ISDIR" in kinds:
            if "CREATE" in kinds:
                path.mkdir(parents=True, exist_ok=True)
            elif "DELETE" in kinds:
                shutil.rmtree(path, ignore_errors=True)
            return
        if "DELETE_SELF" in kinds:
            return
        if "DELETE" in kinds:
            self._close(rel)
            try:
                path.unlink()
            except FileNotFoundError:
                pass
            return
        if "CREATE" in kinds:
            self._handle(rel)
        if "MODIFY" in kinds and rel not in self._rest and (whole := self._single_file(rel)) is not None:
            self._rest[rel] = whole
        if "MODIFY" in kinds and rel in self._rest:
            rest = self._rest[rel]
            part = len(rest) // 2
            self._handle(rel).write(rest[:part])
            self._handle(rel).flush()
            self._rest[rel] = rest[part:]
        elif "MODIFY" in kinds:
            content = self._content(rel)
            handle = self._handle(rel)
            if content is not None:
                handle.truncate(0)
                handle.write(content)
            else:
                handle.write(os.urandom(64) * count)
            handle.flush()
        if "CLOSE_WRITE" in kinds:
            self._handle(rel).write(self._rest.pop(rel, b""))
            self._close(rel)

    def close(self) -> None:
        for rel in list(self._open):
            self._close(rel)


def replay(
    name: str,
    root: Path,
    on_saved: Callable[[Saved], None] | None = None,
    *,
    absolute_state_paths: str | None = None,
) -> list[Saved]:
    """Replay trace ``name`` into ``root``; call ``on_saved`` at each save the writer reported."""
    replayer = Replayer(root, absolute_state_paths=absolute_state_paths)
    saved: list[Saved] = []
    try:
        for op in operations(name):
            if isinstance(op, Saved):
                saved.append(op)
                if on_saved:
                    on_saved(op)
            else:
                replayer.apply(*op)
    finally:
        replayer.close()
    return saved
