"""Keras 3: ``ModelCheckpoint`` files, and the backup of ``BackupAndRestore``.

``ModelCheckpoint`` writes ``*.keras`` (a zip) or ``*.weights.h5`` / ``*.h5``
(HDF5, through h5py) in place under the name its ``filepath`` template gives:
no temp name, no rename, no state file. A file commits when it is whole (zip
end record and central directory; HDF5 end-of-file address == size) and
unchanged for a moment (see :mod:`.singlefile`). Step: the number after
``epoch`` in the name, else its last whole number; decimals such as
``{val_loss:.2f}`` are skipped. Keras numbers epochs from 1 in names. A name
with no number (``best.keras``, ``save_best_only``) is a new save at each
complete rewrite; Keras files carry no step, so its step is the newest one a
numbered file showed, else 0.

``BackupAndRestore(backup_dir=DIR)`` writes ``latest.weights.h5``, then
``training_metadata.json`` (``{"epoch": E, "batch": B}``, in place): that JSON,
parsed and settled, is the commit; the checkpoint is ``latest.weights.h5`` and
the step is E, the epochs completed (1-based, like the names). Its start
carries no step, so it gets no early ``before_save``. Keras deletes the
directory at the end of training, which ends the session (DIR gone). The
``*.bkp`` copies of ``double_checkpoint`` are not saves.
"""

from __future__ import annotations

import json
import os
import re
import stat
from collections.abc import Iterable

from .base import Checkpoint, Listing, Observation
from .singlefile import FileLayout, name_step, temp_target

__all__ = ["KerasLayout"]

METADATA = "training_metadata.json"
WEIGHTS = "latest.weights.h5"
_SUFFIX = re.compile(r"(\.weights\.h5|\.keras|\.h5|\.hdf5)$")
_NAMES = re.compile(_SUFFIX.pattern + "|^" + re.escape(METADATA) + "$")


class KerasLayout(FileLayout):
    name = "keras"
    framework = "Keras 3 ModelCheckpoint / BackupAndRestore"
    starts = "NAME.keras / NAME.weights.h5 created in place"
    commits = "the file whole (zip end record / HDF5 end-of-file address) and unchanged for 0.1 s; " \
              "BackupAndRestore: training_metadata.json"
    object_store = "the object is listed (an object is visible only once whole: no content check, no settle time)"
    name_pattern = _NAMES

    @classmethod
    def detect(cls, listing: Listing) -> str | None:
        for name in sorted(listing.files):
            if temp_target(name) is None and (name.endswith((".keras", ".weights.h5")) or name == METADATA):
                return f"Keras file {name}"
        return None

    def related(self, name: str) -> Iterable[str]:
        return (METADATA,) if name == WEIGHTS else ()  # the backup's checkpoint is its weights file

    def owns(self, rel: str) -> bool:
        return rel == METADATA or (rel != WEIGHTS and bool(_SUFFIX.search(rel)))

    def kind(self, rel: str) -> str | None:
        return "zip" if rel.endswith(".keras") else "hdf5"

    def step_of_name(self, rel: str) -> int | None:
        if rel == METADATA:
            return None
        return name_step(_SUFFIX.sub("", os.path.basename(rel)), ("epoch",))

    def check(self, rel: str, size: int) -> tuple[bool, bool]:
        if rel == METADATA:
            return self._epoch() is not None, True
        return super().check(rel, size)

    def step_of_content(self, rel: str) -> int | None:
        return self._epoch() if rel == METADATA else None

    def path_of(self, rel: str) -> str:
        return WEIGHTS if rel == METADATA else rel

    def keep(self, checkpoint: Checkpoint, listing: Listing, obs: Observation) -> bool:
        if checkpoint.marker != METADATA:
            return True
        weights = self.stat(WEIGHTS)
        return weights is not None and stat.S_ISREG(weights.st_mode)

    def _epoch(self) -> int | None:
        """The backup's ``epoch``, or None while the JSON is missing or half written."""
        data = self.read_marker(METADATA, [])
        try:
            epoch = json.loads(data or b"").get("epoch")
        except (ValueError, AttributeError):
            return None
        return epoch if isinstance(epoch, int) and not isinstance(epoch, bool) and epoch >= 0 else None
