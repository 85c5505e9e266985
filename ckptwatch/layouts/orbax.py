"""Orbax ``CheckpointManager``: ``<step>/`` committed by a rename, or by ``commit_success.txt``.

Orbax has two commit protocols (google/orbax
``checkpoint/orbax/checkpoint/_src/path/atomicity.py``):

- ``AtomicRenameTemporaryPath`` (POSIX paths, GCSFuse): the save goes into
  ``<step>.orbax-checkpoint-tmp`` (older versions: ``...-tmp-<timestamp>``);
  ``finalize`` writes ``commit_success.txt`` *into the tmp dir* (recent
  versions only) and renames it to ``<step>``. The rename is the commit; the
  file alone is not.
- ``CommitFileTemporaryPath`` (``gs://`` paths, seen here through an
  object-store mount): the save is written under its final name and
  ``finalize`` writes ``<step>/commit_success.txt`` last. A final-named
  directory without it may still be being written
  (``temporary_paths.is_path_finalized``: "gs://.../<name>/ ... not finalized").

So ``<step>/commit_success.txt`` commits in both. A ``<step>/`` without it is
committed only when this DIR shows the rename protocol without commit files:
no step directory holds ``commit_success.txt``, and DIR is not an object
store (a URL, or a FUSE mount of one) unless a tmp directory has been seen there.
Its completion file is then ``_CHECKPOINT_METADATA``. Rotation (rmtree of the
oldest step right after a commit) deletes those files first, so a step being
deleted is never committed again.
"""

from __future__ import annotations

import re
import stat

from ..sources.fstype import filesystem_type
from .access import Access, StatLike
from .base import Checkpoint, Listing, Observation, SaveInProgress
from .entries import EntryLayout, Found

__all__ = ["OrbaxLayout"]

COMMIT_FILE = "commit_success.txt"
METADATA = "_CHECKPOINT_METADATA"
_FINAL = re.compile(r"^(?:.+_)?(\d+)$")  # <step>, or <step_prefix>_<step>
_TMP = re.compile(r"^((?:.+_)?(\d+))\.orbax-checkpoint-tmp(?:-\d+)?$")
_DETECT_LOOKS = 8


class OrbaxLayout(EntryLayout):
    name = "orbax"
    framework = "Orbax CheckpointManager"
    starts = "<step>.orbax-checkpoint-tmp/ (or <step>/ without commit_success.txt)"
    commits = "rename to <step>/, or <step>/commit_success.txt on object stores"
    object_store = "<step>/commit_success.txt object there (no tmp dir and no rename on object stores)"

    def __init__(self, root: str, argument: str | None = None, fs: Access | None = None) -> None:
        super().__init__(root, argument, fs)
        self._object_store = self.fs.remote or (filesystem_type(root) or "").startswith("fuse")
        self._seen_tmp = False
        self._seen_commit_file = False

    @classmethod
    def interesting(cls, name: str, is_dir: bool) -> bool:
        return is_dir and bool(_FINAL.match(name) or _TMP.match(name))

    @classmethod
    def detect(cls, listing: Listing) -> str | None:
        for name in sorted(listing.dirs):
            if _TMP.match(name):
                return f"Orbax tmp directory {name}/"
        numbered = sorted((n for n in listing.dirs if _FINAL.match(n)), key=lambda n: int(_FINAL.match(n).group(1)))  # type: ignore[union-attr]
        for name in numbered[-_DETECT_LOOKS:]:
            for marker in (COMMIT_FILE, METADATA):
                st = listing.access.stat(f"{name}/{marker}")
                if st is not None and stat.S_ISREG(st.st_mode):
                    return f"step directory {name}/ holds {marker}"
        return None

    def scan(self, listing: Listing) -> Observation:
        flags = (self._seen_tmp, self._seen_commit_file)
        obs = Observation()
        self.look_at_entries(listing, obs)
        if (self._seen_tmp, self._seen_commit_file) != flags:
            # DIR showed which protocol it follows: every step directory is read again by it
            obs = Observation()
            self.look_at_entries(listing, obs, everything=True)
        obs.committed.sort(key=lambda c: (c.step, c.path))
        return obs

    def look_order(self, name: str) -> object:
        return (not _TMP.match(name), name)  # a tmp dir first: it says which protocol DIR follows

    def look_at(self, name: str, is_dir: bool, listing: Listing, obs: Observation) -> Found | None:
        if not is_dir:
            return None
        tmp = _TMP.match(name)
        if tmp:
            self._seen_tmp = True
            return Found(starting=(SaveInProgress(int(tmp.group(2)), tmp.group(1)),))
        final = _FINAL.match(name)
        if not final:
            return None
        step = int(final.group(1))
        marker = f"{name}/{COMMIT_FILE}"
        st = self._file(marker)
        if st is not None:
            self._seen_commit_file = True
        elif not self._seen_commit_file and (self._seen_tmp or not self._object_store):
            marker, st = f"{name}/{METADATA}", self._file(f"{name}/{METADATA}")  # the rename was the commit
        if st is None:
            return Found(starting=(SaveInProgress(step, name),), watch=(name,))  # commit_success.txt appears inside it
        return Found(committed=(Checkpoint(self.name, step, name, marker, st.st_mtime_ns, st.st_size),))

    def _file(self, rel: str) -> StatLike | None:
        """A marker file with content: Orbax writes both with text, in place, so empty is mid-write."""
        st = self.stat(rel)
        return st if st is not None and stat.S_ISREG(st.st_mode) and st.st_size > 0 else None
