"""Synthetic writers that do on disk what DeepSpeed, Megatron-LM, NeMo and Ray Train do, in their order.

Each ``save`` performs the framework's file operations for one save, in the
order its source does them (cited per step), with the same kind of write:
in place (``open(..., 'w')``), temp + rename, mkdir, rmtree. Content is small
bytes, except the markers the layouts read, which carry what the framework
writes there. ``pause(phase)`` is called between phases, so a test can look
at (or act on) a save in progress: ``"started"`` after the save's first
operation, ``"writing"`` after each later one, and ``"commit"`` just before the
commit write.
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Callable
from datetime import datetime, timedelta
from pathlib import Path

Pause = Callable[[str], None]


def _nothing(phase: str) -> None:
    pass


def _write(path: Path, data: bytes) -> None:
    """A file written in place: created or truncated, then written (``open(path, 'wb')``)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "wb") as handle:
        handle.write(data)


def _torch_save(path: Path) -> None:
    """``torch.save(obj, path)``: a zip written in place under its final name."""
    _write(path, b"PK\x03\x04" + os.urandom(256) + b"PK\x05\x06" + bytes(18))


def _dcp_save(directory: Path) -> None:
    """``torch.distributed.checkpoint.save`` (FileSystemWriter): shards in place, then
    ``.metadata.tmp`` renamed onto ``.metadata``."""
    directory.mkdir(parents=True, exist_ok=True)
    _write(directory / "__0_0.distcp", os.urandom(512))
    _write(directory / ".metadata.tmp", b"\x80\x04metadata")
    os.replace(directory / ".metadata.tmp", directory / ".metadata")


class DeepSpeed:
    """microsoft/DeepSpeed ``deepspeed/runtime/engine.py`` ``save_checkpoint`` (ZeRO stage 1/2, one rank)."""

    def __init__(self, root: Path, keep: int | None = None) -> None:
        self.root, self.keep, self.saved = root, keep, []

    def save(self, step: int, pause: Pause = _nothing) -> str:
        tag = f"global_step{step}"  # `tag = f"global_step{self.global_steps}"`
        self.root.mkdir(exist_ok=True)  # rank 0: `checkpoint_engine.makedirs(save_dir, exist_ok=True)`
        (self.root / tag).mkdir(exist_ok=True)  # `_create_checkpoint_file` -> makedirs(dirname(ckpt_name))
        pause("started")
        _torch_save(self.root / tag / "mp_rank_00_model_states.pt")  # `_save_checkpoint` -> checkpoint_engine.save
        pause("writing")
        _torch_save(self.root / tag / "zero_pp_rank_0_mp_rank_00_optim_states.pt")  # `_save_zero_checkpoint`
        pause("writing")
        shutil.copyfile(__file__, self.root / "zero_to_fp32.py")  # `_copy_recovery_script` (rank 0), then chmod
        os.chmod(self.root / "zero_to_fp32.py", 0o755)
        pause("commit")
        # `self.checkpoint_engine.commit(tag)`; then rank 0: `with open(os.path.join(save_dir, 'latest'), 'w') as fd: fd.write(tag)`
        _write(self.root / "latest", tag.encode())
        self.saved.append(tag)
        if self.keep is not None:  # DeepSpeed deletes nothing; a caller's own rotation, after the save
            while len(self.saved) > self.keep:
                shutil.rmtree(self.root / self.saved.pop(0))
        return tag


class Megatron:
    """NVIDIA/Megatron-LM ``megatron/training/checkpointing.py`` ``save_checkpoint``, ``--ckpt-format torch_dist``."""

    def __init__(self, root: Path, retain_interval: int | None = None) -> None:
        self.root, self.retain_interval = root, retain_interval

    def save(self, iteration: int, pause: Pause = _nothing) -> str:
        name = f"iter_{iteration:07d}"  # `get_checkpoint_name`: 'iter_{:07d}'.format(iteration)
        directory = self.root / name
        directory.mkdir(parents=True, exist_ok=True)  # `ensure_directory_exists(checkpoint_name, check_parent=False)`
        pause("started")
        # megatron/core/dist_checkpointing/serialization.py `save`: sharded save (DCP), then step 7:
        _dcp_save(directory)
        pause("writing")
        _write(directory / "metadata.json", json.dumps({"sharded_backend": "torch_dist", "sharded_backend_version": 1}).encode())
        pause("commit")
        tracker = self.root / "latest_checkpointed_iteration.txt"  # `get_checkpoint_tracker_filename`
        previous = int(tracker.read_text().strip()) if tracker.exists() else 0  # save_retain_interval: read first
        _write(tracker, str(iteration).encode())  # `iter_finalize_fn`: open(tracker_filename, 'w'); f.write(str(iteration))
        if self.retain_interval and previous and previous != iteration and previous % self.retain_interval:
            shutil.rmtree(self.root / f"iter_{previous:07d}")  # `_async_delete_checkpoint_impl` of prev_iteration
        return name


class NeMo:
    """NVIDIA/NeMo ``nemo/lightning/pytorch/callbacks/model_checkpoint.py`` ``ModelCheckpoint`` (NeMo 2, sync save)."""

    def __init__(self, root: Path, keep: int | None = None) -> None:
        self.root, self.keep, self.saved = root, keep, []

    @staticmethod
    def name(step: int) -> str:
        return f"megatron_gpt--val_loss=2.{step % 100:02d}-epoch=0-step={step}-consumed_samples={step * 8}.0"

    def _marker(self, name: str) -> Path:
        return self.root / f"{name}-unfinished"  # `format_checkpoint_unfinished_marker_path`

    def save(self, step: int, pause: Pause = _nothing) -> str:
        name = self.name(step)
        self.root.mkdir(exist_ok=True)
        self._marker(name).touch()  # `_save_checkpoint`: set_checkpoint_unfinished_marker(filepath, barrier_after=True)
        pause("started")
        _dcp_save(self.root / name / "weights")  # trainer.save_checkpoint -> MegatronCheckpointIO: <dir>/weights
        pause("writing")
        _write(self.root / name / "weights" / "common.pt", os.urandom(64))
        _write(self.root / name / "weights" / "metadata.json", b'{"sharded_backend": "torch_dist"}')
        pause("writing")
        _write(self.root / name / "context" / "io.json", b"{}")  # always_save_context: TrainerContext.io_dump
        _write(self.root / name / "context" / "model.yaml", b"model: gpt\n")
        pause("commit")
        self._marker(name).unlink()  # finalize_fn(): remove_checkpoint_unfinished_marker(filepath, barrier_before=True)
        self.saved.append(name)
        if self.keep is not None:  # top-k: `_remove_checkpoint`: mark, delete, unmark
            while len(self.saved) > self.keep:
                old = self.saved.pop(0)
                self._marker(old).touch()
                shutil.rmtree(self.root / old)
                self._marker(old).unlink()
        return name


class Ray:
    """ray-project/ray Train v2: ``StorageContext.persist_current_checkpoint`` then
    ``CheckpointManager.register_checkpoint`` (``_write_state_to_storage``, then deletes)."""

    SNAPSHOT = "checkpoint_manager_snapshot.json"

    def __init__(self, root: Path, keep: int | None = None, step_metric: bool = True) -> None:
        self.root, self.keep, self.step_metric = root, keep, step_metric
        self.results: list[dict] = []
        self.clock = datetime(2026, 5, 1, 12, 0, 0)

    def save(self, step: int, pause: Pause = _nothing) -> str:
        self.clock += timedelta(seconds=7, microseconds=123)
        name = f"checkpoint_{self.clock.strftime('%Y-%m-%d_%H-%M-%S.%f')}"  # make_default_checkpoint_dir_name
        self.root.mkdir(exist_ok=True)
        (self.root / name).mkdir()  # storage_filesystem.create_dir(checkpoint_fs_path)
        pause("started")
        _torch_save(self.root / name / "model.pt")  # _pyarrow_fs_copy_files(...): in place, file by file
        pause("writing")
        _write(self.root / name / "extra_state.json", b"{}")
        pause("commit")
        metrics = {"loss": 1.0 / step, **({"step": step} if self.step_metric else {})}
        result = {"version": 0, "checkpoint_dir_name": name, "metrics": metrics}
        self.results.append(result)  # no checkpoint_score_attribute: appended in registration order
        deleted = self.results[: -self.keep] if self.keep else []
        self.results = self.results[-self.keep:] if self.keep else self.results
        snapshot = {"version": 0, "checkpoint_results": self.results, "latest_checkpoint_result": result}
        _write(self.root / self.SNAPSHOT, json.dumps(snapshot).encode())  # open_output_stream(...).write(...)
        for old in deleted:  # "We save the state before deleting the old checkpoints."
            shutil.rmtree(self.root / old["checkpoint_dir_name"])
        return name


class MarkerConvention:
    """A user's own loop: ``step-N/`` filled, then ``DONE`` created in it (empty, as ``touch``)."""

    def __init__(self, root: Path, marker: str = "DONE", keep: int | None = None) -> None:
        self.root, self.marker, self.keep, self.saved = root, marker, keep, []

    def save(self, step: int, pause: Pause = _nothing) -> str:
        name = f"step-{step}"
        (self.root / name).mkdir(parents=True)
        pause("started")
        _torch_save(self.root / name / "model.pt")
        pause("commit")
        (self.root / name / self.marker).touch()
        self.saved.append(name)
        if self.keep is not None:
            while len(self.saved) > self.keep:
                shutil.rmtree(self.root / self.saved.pop(0))
        return name
