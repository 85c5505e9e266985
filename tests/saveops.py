"""Saves as lists of file operations, and a look at DIR the way the engine takes one.

A save is the list of operations a framework performs (``tracereplay``'s
``(events, path, count)``, replayed by its :class:`Replayer`): from its real
trace, or made here for the cases no trace holds (a TF1 unsharded ``Saver``,
``torch.save`` in place, a Lightning copy in place, a glob pattern). Each list
holds :class:`tracereplay.Saved` markers where the framework's save returned.

:class:`Looker` is the engine's look without the engine's loop: the real
:class:`DirIndex` refreshed with the names the kernel would have hinted since
the last look (inotify's create, move, delete and close-after-write, at the top
of DIR and in the subdirectories the layout asked to watch), the real layout's
scan and the real :class:`Tracker`. It lets a test stop a save at any operation
and look exactly there.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from tracereplay import Replayer, Saved, operations

from ckptwatch import layouts
from ckptwatch.dirindex import DirIndex
from ckptwatch.events import Event
from ckptwatch.tracker import Tracker

Op = tuple[str, str, int]
Step = Op | Saved

#: The notifications the engine asks inotify for (no MODIFY, no OPEN, no CLOSE_NOWRITE).
_NOTIFIED = {"CREATE", "DELETE", "MOVED_FROM", "MOVED_TO", "CLOSE_WRITE", "DELETE_SELF"}


def trace(name: str) -> list[Step]:
    return list(operations(name))


def copied_in_place(steps: Iterable[Step], pattern: str) -> list[Step]:
    """A file renamed in from outside DIR (``MOVED_TO`` alone) written in place under its
    name instead, as Lightning does when ``$TMPDIR`` is on another file system."""
    out: list[Step] = []
    moving = False
    for step in steps:
        if isinstance(step, Saved):
            out.append(step)
            continue
        events, path, count = step
        kinds = set(events.split(","))
        if "MOVED_TO" in kinds and not moving and re.search(pattern, path):
            out += [("CREATE", path, 1), ("MODIFY", path, 1), ("MODIFY", path, 1), ("CLOSE_WRITE,CLOSE", path, 1)]
        else:
            out.append(step)
        moving = "MOVED_FROM" in kinds
    return out


def _rename(tmp: str, final: str, writes: int = 2) -> list[Step]:
    """A file written under a temp name, then renamed onto its name."""
    return [("CREATE", tmp, 1), ("MODIFY", tmp, writes), ("CLOSE_WRITE,CLOSE", tmp, 1),
            ("MOVED_FROM", tmp, 1), ("MOVED_TO", final, 1)]


def tf1_unsharded(steps: Iterable[int], keep: int = 2) -> list[Step]:
    """``tf.compat.v1.train.Saver(sharded=False)``: TensorFlow's BundleWriter writes
    ``PREFIX.data-00000-of-00001.tempstate<u64>``, renames it, then the ``.index`` the
    same way; ``update_checkpoint_state`` renames ``checkpoint.tmp<hex>`` onto
    ``checkpoint``; old prefixes are deleted; the ``.meta`` comes last."""
    out: list[Step] = []
    kept: list[str] = []
    for n, step in enumerate(steps):
        prefix = f"model.ckpt-{step}"
        out += _rename(f"{prefix}.data-00000-of-00001.tempstate{1000 + n}", f"{prefix}.data-00000-of-00001", 4)
        out += _rename(f"{prefix}.index.tempstate{2000 + n}", f"{prefix}.index", 1)
        out += _rename(f"checkpoint.tmp{n:032x}", "checkpoint", 1)
        kept.append(prefix)
        while len(kept) > keep:
            old = kept.pop(0)
            out += [("DELETE", f"{old}.meta", 1), ("DELETE", f"{old}.index", 1),
                    ("DELETE", f"{old}.data-00000-of-00001", 1)]
        out += _rename(f"{prefix}.meta.tmp{n:032x}", f"{prefix}.meta", 1)
        out.append(Saved(step, prefix))
    return out


def tf2_manager(steps: Iterable[int], keep: int = 3) -> list[Step]:
    """``tf.train.CheckpointManager(max_to_keep=keep).save(checkpoint_number=step)``, as
    the tf2_manager trace shows it: ``ckpt-N_temp/`` with the part files, the data file
    renamed out and the ``.index`` written in place, ``_temp/`` removed, the state file
    renamed in twice, the oldest prefix deleted between the two."""
    out: list[Step] = []
    kept: list[str] = []
    for n, step in enumerate(steps):
        prefix = f"ckpt-{step}"
        temp = f"{prefix}_temp"
        part = f"{temp}/part-00000-of-00001"
        out.append(("CREATE,ISDIR", temp, 1))
        out += _rename(f"{part}.data-00000-of-00001.tempstate{3000 + n}", f"{part}.data-00000-of-00001")
        out += _rename(f"{part}.index.tempstate{4000 + n}", f"{part}.index", 1)
        out += [("MOVED_FROM", f"{part}.data-00000-of-00001", 1), ("MOVED_TO", f"{prefix}.data-00000-of-00001", 1)]
        out += [("CREATE", f"{prefix}.index", 1), ("MODIFY", f"{prefix}.index", 1),
                ("CLOSE_WRITE,CLOSE", f"{prefix}.index", 1)]
        out += [("DELETE", f"{part}.index", 1), ("DELETE_SELF", f"{temp}/", 1), ("DELETE,ISDIR", temp, 1)]
        out += _rename(f"checkpoint.tmp{2 * n:032x}", "checkpoint", 1)
        kept.append(prefix)
        while len(kept) > keep:
            old = kept.pop(0)
            out += [("DELETE", f"{old}.index", 1), ("DELETE", f"{old}.data-00000-of-00001", 1)]
        out += _rename(f"checkpoint.tmp{2 * n + 1:032x}", "checkpoint", 1)
        out.append(Saved(step, prefix))
    return out


def in_place(names: Iterable[tuple[int, str]], writes: int = 6) -> list[Step]:
    """One file per save written in place under its final name (``torch.save``, h5py)."""
    out: list[Step] = []
    for step, name in names:
        out += [("CREATE", name, 1), *[("MODIFY", name, 1)] * writes, ("CLOSE_WRITE,CLOSE", name, 1)]
        out.append(Saved(step, name))
    return out


def saves(steps: Iterable[Step]) -> list[Saved]:
    return [s for s in steps if isinstance(s, Saved)]


def own(name: str, path: str) -> bool:
    """Whether ``path`` (relative to DIR) belongs to the save of checkpoint ``name``."""
    top = path.strip("./").split("/", 1)[0]
    return re.match(rf"{re.escape(name)}(?!\d)", top) is not None


@dataclass
class Looker:
    """The engine's parts on one DIR: the index, one layout (or detection), the tracker.

    ``spec`` is a ``--layout`` value or ``"auto"``: then each look detects as the engine
    does until the first commit (a new choice is a new layout; no choice keeps the last).
    """

    root: Path
    spec: str
    #: TF1 writes absolute paths into its state file (see ``Replayer``).
    absolute: str | None = None
    index: DirIndex = field(init=False)
    watched: set[str] = field(default_factory=set)
    hints: set[str] = field(default_factory=set)

    def __post_init__(self) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        self.auto = self.spec == "auto"
        self.layout: layouts.Layout | None = None  # type: ignore[name-defined]
        if self.auto:
            candidates = [layouts.layout_class(n) for n in layouts.names()]
        else:
            self.layout = layouts.create(self.spec, str(self.root))
            candidates = [type(self.layout)]
        self.index = DirIndex(str(self.root), candidates)
        self.index.relist()
        self.tracker = Tracker()
        self.tracker.begin()
        self.replayer = Replayer(self.root, absolute_state_paths=self.absolute)

    def apply(self, op: Op) -> None:
        """Perform one operation; note the hint the kernel would give for it."""
        events, path, count = op
        self.replayer.apply(events, path, count)
        kinds = set(events.split(","))
        top, _, inner = path.removeprefix("./").rstrip("/").partition("/")
        inside = bool(inner) or "DELETE_SELF" in kinds  # reported by a watch on the subdirectory
        if kinds & _NOTIFIED and (not inside or top in self.watched):
            self.hints.add(top)

    def snapshot(self) -> dict[str, object]:
        """What notifications could tell apart: each top-level entry, and inside watched dirs."""
        found: dict[str, object] = {}
        for entry in os.scandir(self.root):
            st = entry.stat(follow_symlinks=False)
            if entry.is_dir(follow_symlinks=False):
                inner = sorted((p.relative_to(self.root).as_posix(), p.stat().st_mtime_ns, p.stat().st_size)
                               for p in Path(entry.path).rglob("*")) if entry.name in self.watched else None
                found[entry.name] = ("dir", st.st_ino, inner)
            else:
                found[entry.name] = ("file", st.st_ino, st.st_mtime_ns, st.st_size)
        return found

    def hint_changes(self, before: dict[str, object]) -> None:
        """Hint every name whose entry changed since ``before`` (a writer that is not a trace)."""
        after = self.snapshot()
        self.hints |= {name for name in before.keys() | after.keys() if before.get(name) != after.get(name)}

    def look(self) -> list[Event]:
        """One look with the hints since the last (the first look is at everything)."""
        hints, self.hints = self.hints, set()
        self.index.refresh(hints)
        events = self._scan()
        if set(self._watch) - self.watched:  # a watch added late: the engine looks again at once
            self.watched = set(self._watch)
            events += self._scan()
        self.watched = set(self._watch)
        return events

    def _scan(self) -> list[Event]:
        if self.auto:
            found = layouts.detect_all(self.index.peek)
            if found and (self.layout is None or self.layout.name != found[0][0]):
                self.layout = layouts.create(found[0][0], str(self.root))
        if self.layout is None:
            self._watch = self.index.dirs(64)  # undecided: the engine watches new subdirectories
            return []
        observation = self.layout.scan(self.index.view(type(self.layout)))
        self.last_observation = observation
        self._watch = list(observation.watch)
        if observation.committed and self.auto:
            self.auto = False
            self.index.narrow(type(self.layout))
        return self.tracker.observe(observation)

    def close(self) -> None:
        self.replayer.close()


def replay_with_looks(looker: Looker, steps: Iterable[Step]) -> Iterator[list[Event]]:
    """Apply each operation and look after each (an engine that keeps up)."""
    for step in steps:
        if not isinstance(step, Saved):
            looker.apply(step)
            yield looker.look()

