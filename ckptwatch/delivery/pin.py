"""``--pin``: keep a checkpoint readable while its listeners run, whatever rotation does.

Frameworks delete old checkpoints right after the next save (``max_to_keep``,
``save_total_limit``, top-k). A pinned checkpoint is a copy of its files
inside the state directory, made when the first listener of a save starts and
removed when the last one finishes; listeners get the pinned path.

The copy is a hard link per file where the file system allows it (no data
copied, so it is cheap), and a real copy where it does not: across file
systems (EXDEV), on a read-only source mount, and for another user's files
under ``fs.protected_hardlinks`` (EPERM). A hard link shares the file's
data: it survives a delete or a rename, not a rewrite in place (Keras
``save_best_only``, ``last.pt``, a re-save into an existing directory).
That case is detected (size or mtime moved while pinned) and logged.
"""

from __future__ import annotations

import errno
import logging
import os
import shutil
from dataclasses import dataclass, field

from ..report.console import emit

__all__ = ["Pin", "PinError", "pin_checkpoint"]

_LINK_REFUSED = (errno.EXDEV, errno.EPERM, errno.EACCES, errno.EROFS, errno.EMLINK, errno.ENOTSUP)


class PinError(OSError):
    """The checkpoint could not be pinned (gone, or no room)."""


@dataclass
class Pin:
    """A pinned checkpoint: the path to hand listeners, and what to check at release."""

    root: str
    path: str
    copied: int = 0
    linked: int = 0
    seen: dict[str, tuple[int, int]] = field(default_factory=dict)

    def release(self, original: str) -> None:
        """Remove the pin; warn when a file was rewritten in place while it was held."""
        moved = []
        for pinned, (size, mtime) in self.seen.items():
            try:
                st = os.stat(pinned)
            except OSError:
                continue
            if (st.st_size, st.st_mtime_ns) != (size, mtime):
                moved.append(os.path.relpath(pinned, self.root))
        if moved and self.linked:
            emit("info", f"pin of {original}: {len(moved)} file(s) were rewritten in place while listeners "
                 "ran; a hard-link pin cannot protect that", logging.WARNING)
        shutil.rmtree(self.root, ignore_errors=True)


def _files(checkpoint: str) -> list[tuple[str, str]]:
    """``(source, relative name)`` of the files that make the checkpoint.

    A directory: everything under it. A TensorFlow prefix (no such file, but
    ``PREFIX.index`` and ``PREFIX.data-*``): the files named ``PREFIX.*``.
    """
    if os.path.isdir(checkpoint):
        found = []
        for top, _dirs, names in os.walk(checkpoint):
            for name in names:
                source = os.path.join(top, name)
                found.append((source, os.path.relpath(source, os.path.dirname(checkpoint))))
        return found
    if os.path.lexists(checkpoint):
        return [(checkpoint, os.path.basename(checkpoint))]
    folder, base = os.path.split(checkpoint)
    try:
        names = os.listdir(folder)
    except OSError:
        return []
    return [(os.path.join(folder, n), n) for n in names if n.startswith(base + ".")]


def pin_checkpoint(checkpoint: str, pins_dir: str, key: str) -> Pin:
    """Pin ``checkpoint`` under ``pins_dir/key``; raises PinError when nothing is left to pin."""
    root = os.path.join(pins_dir, key)
    shutil.rmtree(root, ignore_errors=True)
    os.makedirs(root)
    pin = Pin(root, os.path.join(root, os.path.basename(checkpoint)))
    files = _files(checkpoint)
    if not files:
        shutil.rmtree(root, ignore_errors=True)
        raise PinError(errno.ENOENT, f"{checkpoint} is gone")
    for source, rel in files:
        target = os.path.join(root, rel)
        os.makedirs(os.path.dirname(target), exist_ok=True)
        try:
            os.link(source, target, follow_symlinks=False)
            pin.linked += 1
        except FileNotFoundError:
            continue  # deleted between listing and linking: pin what is left
        except OSError as exc:
            if exc.errno not in _LINK_REFUSED:
                raise PinError(exc.errno, f"cannot pin {source}: {exc.strerror}") from None
            try:
                shutil.copy2(source, target, follow_symlinks=False)
            except FileNotFoundError:
                continue
            pin.copied += 1
        st = os.stat(target, follow_symlinks=False)
        pin.seen[target] = (st.st_size, st.st_mtime_ns)
    if not pin.seen:
        shutil.rmtree(root, ignore_errors=True)
        raise PinError(errno.ENOENT, f"{checkpoint} is gone")
    return pin
