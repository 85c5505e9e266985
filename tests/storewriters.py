"""Synthetic writers that save to an object store object by object, in each framework's real order.

Like ``dirwriters.py``, each ``save`` performs the framework's operations for
one save in the order its source does them (cited per step), but against an
fsspec filesystem: there is no rename on an object store, so a framework's
rename is what its file system layer makes of it (TensorFlow's GCS file
system: copy, then delete; fsspec: the same). Every object is written whole
by one PUT. ``pause(phase)`` is called between phases; ``"commit"`` comes
just before the commit object is written.
"""

from __future__ import annotations

import json
import os
import uuid
from collections.abc import Callable
from typing import Any

Pause = Callable[[str], None]


def _nothing(phase: str) -> None:
    pass


def _rename(fs: Any, src: str, dst: str) -> None:
    """A rename on an object store: tsl/platform/cloud/gcs_file_system.cc ``RenameObject`` copies
    the object to its new name ("RewriteObject"), then deletes the old one; fsspec's ``mv`` the same."""
    fs.copy(src, dst)
    fs.rm_file(src)


class TFManager:
    """``tf.train.CheckpointManager(max_to_keep=K).save(checkpoint_number=N)`` to ``gs://...`` (TF 2.21).

    tensorflow/python/checkpoint/functional_saver.py ``MultiDeviceSaver.save`` (sharded: ``{prefix}_temp/part``),
    tensorflow/core/util/tensor_bundle/tensor_bundle.cc ``BundleWriter`` (``.tempstate`` files renamed in) and
    ``MergeV2Checkpoints`` (data renamed out of ``_temp``, the merged ``.index`` written, ``_temp`` deleted),
    tensorflow/python/checkpoint/checkpoint_management.py ``CheckpointManager.save`` -> ``_record_state`` ->
    ``update_checkpoint_state_internal`` -> ``file_io.atomic_write_string_to_file`` (``checkpoint.tmp<hex>``
    renamed onto ``checkpoint``), then ``_sweep`` deletes the prefixes beyond ``max_to_keep`` and the state
    is recorded again (the trace: two state writes per save, rotation between them).
    """

    def __init__(self, fs: Any, root: str, keep: int = 3, absolute: str | None = None) -> None:
        """``absolute``: the URL of ``root``, to write full paths into the state file (TF1 ``Saver`` does)."""
        self.fs, self.root, self.keep, self.absolute = fs, root.rstrip("/"), keep, absolute
        self.kept: list[str] = []

    def _state(self) -> bytes:
        name = (lambda p: f"{self.absolute}/{p}") if self.absolute else (lambda p: p)
        lines = [f'model_checkpoint_path: "{name(self.kept[-1])}"']
        lines += [f'all_model_checkpoint_paths: "{name(p)}"' for p in self.kept]
        return ("\n".join(lines) + "\n").encode()

    def _record_state(self) -> None:
        tmp = f"{self.root}/checkpoint.tmp{uuid.uuid4().hex}"
        self.fs.pipe_file(tmp, self._state())  # atomic_write_string_to_file: the temp object, whole
        _rename(self.fs, tmp, f"{self.root}/checkpoint")  # rename_v2(temp, checkpoint, overwrite=True)

    def save(self, step: int, pause: Pause = _nothing) -> str:
        prefix = f"ckpt-{step}"
        temp = f"{self.root}/{prefix}_temp"
        part = f"{temp}/part-00000-of-00001"
        for suffix in (".data-00000-of-00001", ".index"):  # BundleWriter: TempFilename, then RenameFile
            tempstate = f"{part}{suffix}.tempstate{uuid.uuid4().int % 10**19}"
            self.fs.pipe_file(tempstate, os.urandom(256))
            _rename(self.fs, tempstate, part + suffix)
        pause("started")
        _rename(self.fs, f"{part}.data-00000-of-00001", f"{self.root}/{prefix}.data-00000-of-00001")  # Merge
        self.fs.pipe_file(f"{self.root}/{prefix}.index", os.urandom(128))  # the merged index, written whole
        self.fs.rm_file(f"{part}.index")  # DeleteRecursively(_temp)
        pause("commit")
        self.kept.append(prefix)
        self._record_state()  # first state write: still lists the one about to be swept
        while len(self.kept) > self.keep:  # _sweep: delete the prefix's .index, then its data
            old = self.kept.pop(0)
            self.fs.rm_file(f"{self.root}/{old}.index")
            self.fs.rm_file(f"{self.root}/{old}.data-00000-of-00001")
        self._record_state()
        return prefix


class OrbaxManager:
    """``ocp.CheckpointManager(max_to_keep=K).save(step, args=StandardSave(...))`` to ``gs://...`` (Orbax 0.12.8).

    orbax/checkpoint/_src/path/atomicity_defaults.py ``get_default_temporary_path_class``: a gs:// path gets
    ``CommitFileTemporaryPath`` (atomicity.py), whose tmp path *is* the final path: ``create`` ->
    ``_create_tmp_directory`` (mkdir, ``_CHECKPOINT_METADATA`` written); the item handler writes
    ``default/`` (OCDBT: ``ocdbt.process_0/d/<hash>``, ``manifest.ocdbt``, ``_sharding``,
    ``array_metadatas/process_0``, ``_METADATA``); ``finalize`` updates ``_CHECKPOINT_METADATA``
    (commit timestamp), then writes ``<step>/commit_success.txt``: the commit. Then the manager deletes
    the oldest step beyond ``max_to_keep`` (``path/deleter.py``: rmtree, object by object).
    """

    def __init__(self, fs: Any, root: str, keep: int = 2) -> None:
        self.fs, self.root, self.keep = fs, root.rstrip("/"), keep
        self.kept: list[int] = []

    def save(self, step: int, pause: Pause = _nothing) -> str:
        final = f"{self.root}/{step}"
        self.fs.pipe_file(f"{final}/_CHECKPOINT_METADATA", json.dumps({"init_timestamp_nsecs": 1}).encode())
        pause("started")
        item = f"{final}/default"
        self.fs.pipe_file(f"{item}/ocdbt.process_0/d/{uuid.uuid4().hex}", os.urandom(512))
        self.fs.pipe_file(f"{item}/ocdbt.process_0/manifest.ocdbt", os.urandom(64))
        self.fs.pipe_file(f"{item}/manifest.ocdbt", os.urandom(64))
        self.fs.pipe_file(f"{item}/_sharding", b"{}")
        self.fs.pipe_file(f"{item}/array_metadatas/process_0", b"{}")
        self.fs.pipe_file(f"{item}/_METADATA", b'{"tree_metadata": {}}')
        self.fs.pipe_file(f"{final}/_CHECKPOINT_METADATA",
                          json.dumps({"init_timestamp_nsecs": 1, "commit_timestamp_nsecs": 2}).encode())
        pause("commit")
        self.fs.pipe_file(f"{final}/commit_success.txt", f"Checkpoint commit was successful to {final}".encode())
        self.kept.append(step)
        while len(self.kept) > self.keep:
            self.fs.rm(f"{self.root}/{self.kept.pop(0)}", recursive=True)
        return str(step)


class Trainer:
    """Transformers ``Trainer._save_checkpoint`` synced to a bucket file by file (``checkpoint-N/``,
    ``trainer_state.json`` last: transformers/trainer.py ``_save_checkpoint`` -> ``save_model``,
    ``_save_optimizer_and_scheduler``, ``_save_rng_state``, then ``state.save_to_json``)."""

    def __init__(self, fs: Any, root: str) -> None:
        self.fs, self.root = fs, root.rstrip("/")

    def save(self, step: int, pause: Pause = _nothing) -> str:
        folder = f"{self.root}/checkpoint-{step}"
        self.fs.pipe_file(f"{folder}/config.json", b"{}")
        pause("started")
        self.fs.pipe_file(f"{folder}/model.safetensors", os.urandom(1024))
        self.fs.pipe_file(f"{folder}/optimizer.pt", os.urandom(512))
        pause("commit")
        self.fs.pipe_file(f"{folder}/trainer_state.json", json.dumps({"global_step": step}).encode())
        return f"checkpoint-{step}"
