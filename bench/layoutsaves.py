"""Each layout's saves as its framework makes them, for bench/scancost.py.

One class per layout (the names of ``ckptwatch.layouts.REGISTRY``). Each
``bulk(n)`` fills DIR with committed checkpoints quickly (the older
saves), and one new save comes in two phases, in the framework's order
(/work/shared/traces, /work/shared/LAYOUTS.md; tests/dirwriters.py does the
same for the tests):

- ``start(step)``: everything up to the commit (for a file written in place,
  its first half);
- ``commit(step)``: the commit itself (a rename, a tag file, a marker removed,
  the rest of the file).

Both return the top-level names they touched, directly or inside a
subdirectory: the hints a watcher with watches on the saves under way would
get. Content is small, except what the layouts read (state files, tags, JSON
snapshots, zip end records, HDF5 superblocks), which is what the framework
writes there.
"""

from __future__ import annotations

import json
import os
import random
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))

import samplefiles  # noqa: E402  (tests/samplefiles.py: bytes shaped like the frameworks' files)

__all__ = ["SAVES", "Saves"]


class Saves:
    """The saves of one layout in DIR; ``spec`` is the ``--layout`` value."""

    spec = "?"

    def __init__(self, root: Path) -> None:
        self.root = root
        self.steps: list[int] = []
        self._touched: set[str] = set()

    # file operations that remember the top-level name they touch ----------------

    def _top(self, rel: str) -> str:
        name = rel.split("/", 1)[0]
        self._touched.add(name)
        return name

    def write(self, rel: str, data: bytes, mode: str = "wb") -> None:
        self._top(rel)
        path = self.root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(path, mode) as out:
            out.write(data)

    def mkdir(self, rel: str) -> None:
        self._top(rel)
        (self.root / rel).mkdir(parents=True, exist_ok=True)

    def rename(self, src: str, dst: str) -> None:
        self._top(src)
        self._top(dst)
        os.replace(self.root / src, self.root / dst)

    def remove(self, rel: str) -> None:
        self._top(rel)
        os.remove(self.root / rel)

    def touched(self) -> set[str]:
        out, self._touched = self._touched, set()
        return out

    # what scancost calls -------------------------------------------------------

    def bulk(self, count: int) -> None:
        """Committed checkpoints until ``count`` are there (steps continue from the last)."""
        while len(self.steps) < count:
            step = self.next_step()
            self.start(step)
            self.commit(step, bulk=True)
        self.finish_bulk()
        self.touched()

    def next_step(self) -> int:
        return (self.steps[-1] if self.steps else 0) + 1

    def start(self, step: int) -> set[str]:
        raise NotImplementedError

    def commit(self, step: int, bulk: bool = False) -> set[str]:
        """The commit; ``bulk``: one of many older saves (a marker rewritten once, at the end)."""
        raise NotImplementedError

    def finish_bulk(self) -> None:
        """After ``bulk``: write what a bulk commit left for the end (a tag naming the newest)."""


class TF(Saves):
    """TF2 ``CheckpointManager`` (traces/tf2_manager.trace.txt); older prefixes stay on disk
    (as ``keep_checkpoint_every_n_hours`` keeps them); the state file lists the newest 5."""

    spec = "tf"
    DATA = ".data-00000-of-00001"

    def start(self, step: int) -> set[str]:
        prefix = f"ckpt-{step}"
        part = f"{prefix}_temp/part-00000-of-00001"
        self.mkdir(f"{prefix}_temp")
        for suffix in (self.DATA, ".index"):
            temp = f"{part}{suffix}.tempstate{random.getrandbits(63)}"
            self.write(temp, b"tensor bytes")
            self.rename(temp, f"{part}{suffix}")
        self.rename(f"{part}{self.DATA}", f"{prefix}{self.DATA}")
        self.write(f"{prefix}.index", b"merged index")
        self.remove(f"{part}.index")
        os.rmdir(self.root / f"{prefix}_temp")
        return self.touched()

    def commit(self, step: int, bulk: bool = False) -> set[str]:
        self.steps.append(step)
        if not bulk:
            self._state()
            self._state()  # CheckpointManager writes it twice (rotation between)
        return self.touched()

    def finish_bulk(self) -> None:
        self._state()

    def _state(self) -> None:
        kept = self.steps[-5:]
        text = f'model_checkpoint_path: "ckpt-{kept[-1]}"\n'
        text += "".join(f'all_model_checkpoint_paths: "ckpt-{s}"\n' for s in kept)
        temp = f"checkpoint.tmp{random.getrandbits(128):032x}"
        self.write(temp, text.encode())
        self.rename(temp, "checkpoint")


class HF(Saves):
    """Transformers ``Trainer`` (traces/hf_trainer.trace.txt): ``checkpoint-N/`` filled in place,
    the weights through a temp name, ``trainer_state.json`` last, in place."""

    spec = "hf"

    def start(self, step: int) -> set[str]:
        d = f"checkpoint-{step}"
        self.mkdir(d)
        self.write(f"{d}/config.json", b'{"model_type": "gpt2"}')
        self.write(f"{d}/.tmpweights", b"safetensors")
        self.rename(f"{d}/.tmpweights", f"{d}/model.safetensors")
        self.write(f"{d}/optimizer.pt", b"optimizer")
        return self.touched()

    def commit(self, step: int, bulk: bool = False) -> set[str]:
        self.write(f"checkpoint-{step}/trainer_state.json", json.dumps({"global_step": step}).encode())
        self.steps.append(step)
        return self.touched()


class DCP(Saves):
    """``torch.distributed.checkpoint.save`` into ``step-N/``: shards in place, ``.metadata.tmp``
    renamed onto ``.metadata`` (traces/torch_dcp.trace.txt)."""

    spec = "dcp"

    def start(self, step: int) -> set[str]:
        self.mkdir(f"step-{step}")
        self.write(f"step-{step}/__0_0.distcp", b"shard")
        return self.touched()

    def commit(self, step: int, bulk: bool = False) -> set[str]:
        self.write(f"step-{step}/.metadata.tmp", b"\x80\x04metadata")
        self.rename(f"step-{step}/.metadata.tmp", f"step-{step}/.metadata")
        self.steps.append(step)
        return self.touched()


class Orbax(Saves):
    """Orbax ``CheckpointManager`` (traces/orbax_manager.trace.txt): ``N.orbax-checkpoint-tmp/``
    filled, ``commit_success.txt`` in it, then renamed to ``N/``."""

    spec = "orbax"

    def start(self, step: int) -> set[str]:
        tmp = f"{step}.orbax-checkpoint-tmp"
        self.mkdir(tmp)
        self.write(f"{tmp}/_CHECKPOINT_METADATA", b'{"init_timestamp_nsecs": 1}')
        self.write(f"{tmp}/default/manifest.ocdbt", b"manifest")
        self.write(f"{tmp}/default/_METADATA", b"{}")
        self.write(f"{tmp}/commit_success.txt", b"Checkpoint commit was successful")
        return self.touched()

    def commit(self, step: int, bulk: bool = False) -> set[str]:
        self.rename(f"{step}.orbax-checkpoint-tmp", f"{step}")
        self.steps.append(step)
        return self.touched()


class DeepSpeed(Saves):
    """DeepSpeed ``save_checkpoint`` (tests/dirwriters.py DeepSpeed): ``global_stepN/`` files,
    ``zero_to_fp32.py`` copied to the top, then ``latest`` written in place."""

    spec = "deepspeed"

    def start(self, step: int) -> set[str]:
        d = f"global_step{step}"
        self.mkdir(d)
        self.write(f"{d}/mp_rank_00_model_states.pt", b"PK model")
        self.write(f"{d}/zero_pp_rank_0_mp_rank_00_optim_states.pt", b"PK optim")
        self.write("zero_to_fp32.py", b"# recovery script\n")
        return self.touched()

    def commit(self, step: int, bulk: bool = False) -> set[str]:
        self.steps.append(step)
        if not bulk:
            self.write("latest", f"global_step{step}".encode())
        return self.touched()

    def finish_bulk(self) -> None:
        self.write("latest", f"global_step{self.steps[-1]}".encode())


class Megatron(Saves):
    """Megatron-LM ``--ckpt-format torch_dist`` (tests/dirwriters.py Megatron): ``iter_%07d/``
    (DCP files, ``metadata.json`` last), then the tracker file written in place."""

    spec = "megatron"

    def start(self, step: int) -> set[str]:
        d = f"iter_{step:07d}"
        self.mkdir(d)
        self.write(f"{d}/__0_0.distcp", b"shard")
        self.write(f"{d}/.metadata.tmp", b"meta")
        self.rename(f"{d}/.metadata.tmp", f"{d}/.metadata")
        self.write(f"{d}/metadata.json", b'{"sharded_backend": "torch_dist", "sharded_backend_version": 1}')
        return self.touched()

    def commit(self, step: int, bulk: bool = False) -> set[str]:
        self.steps.append(step)
        if not bulk:
            self.write("latest_checkpointed_iteration.txt", str(step).encode())
        return self.touched()

    def finish_bulk(self) -> None:
        self.write("latest_checkpointed_iteration.txt", str(self.steps[-1]).encode())


class NeMo(Saves):
    """NeMo 2 ``ModelCheckpoint`` (tests/dirwriters.py NeMo): ``<name>-unfinished`` touched,
    ``<name>/weights`` and ``<name>/context`` written, the marker removed."""

    spec = "nemo"

    @staticmethod
    def name(step: int) -> str:
        return f"megatron_gpt--val_loss=2.{step % 100:02d}-epoch=0-step={step}-consumed_samples={step * 8}.0"

    def start(self, step: int) -> set[str]:
        name = self.name(step)
        self.write(f"{name}-unfinished", b"")
        self.write(f"{name}/weights/__0_0.distcp", b"shard")
        self.write(f"{name}/weights/.metadata", b"meta")
        self.write(f"{name}/weights/common.pt", b"common")
        self.write(f"{name}/context/io.json", b"{}")
        return self.touched()

    def commit(self, step: int, bulk: bool = False) -> set[str]:
        self.remove(f"{self.name(step)}-unfinished")
        self.steps.append(step)
        return self.touched()


class Ray(Saves):
    """Ray Train v2 (tests/dirwriters.py Ray): ``checkpoint_<timestamp>/`` copied in, then the
    snapshot rewritten in place listing every kept result (``num_to_keep=None``: all)."""

    spec = "ray"

    def __init__(self, root: Path) -> None:
        super().__init__(root)
        self.results: list[dict] = []

    @staticmethod
    def name(step: int) -> str:
        seconds = 7 * step
        return (f"checkpoint_2026-05-{1 + seconds // 86400:02d}_{seconds // 3600 % 24:02d}-"
                f"{seconds // 60 % 60:02d}-{seconds % 60:02d}.{step % 1000000:06d}")

    def start(self, step: int) -> set[str]:
        d = self.name(step)
        self.mkdir(d)
        self.write(f"{d}/model.pt", b"PK model")
        self.write(f"{d}/extra_state.json", b"{}")
        return self.touched()

    def commit(self, step: int, bulk: bool = False) -> set[str]:
        self.results.append({"version": 0, "checkpoint_dir_name": self.name(step),
                             "metrics": {"loss": 1.0 / step, "step": step}})
        self.steps.append(step)
        if not bulk:
            self._snapshot()
        return self.touched()

    def finish_bulk(self) -> None:
        self._snapshot()

    def _snapshot(self) -> None:
        snapshot = {"version": 0, "checkpoint_results": self.results, "latest_checkpoint_result": self.results[-1]}
        self.write("checkpoint_manager_snapshot.json", json.dumps(snapshot).encode())


class Marker(Saves):
    """``marker:DONE``, a user's own loop (tests/dirwriters.py MarkerConvention): ``step-N/``
    filled, then ``DONE`` touched (empty)."""

    spec = "marker:DONE"

    def start(self, step: int) -> set[str]:
        self.mkdir(f"step-{step}")
        self.write(f"step-{step}/model.pt", b"PK model")
        return self.touched()

    def commit(self, step: int, bulk: bool = False) -> set[str]:
        self.write(f"step-{step}/DONE", b"")
        self.steps.append(step)
        return self.touched()


class _InPlace(Saves):
    """A single file written in place under its final name: the first half, then the rest."""

    content = b""

    def rel(self, step: int) -> str:
        raise NotImplementedError

    def start(self, step: int) -> set[str]:
        self.write(self.rel(step), self.content[: len(self.content) // 2])
        return self.touched()

    def commit(self, step: int, bulk: bool = False) -> set[str]:
        self.write(self.rel(step), self.content[len(self.content) // 2:], mode="ab")
        self.steps.append(step)
        return self.touched()


class Keras(_InPlace):
    """Keras 3 ``ModelCheckpoint("epoch-{epoch:05d}.weights.h5", save_weights_only=True)``:
    h5py writes the file in place (traces/keras_ckpt.trace.txt)."""

    spec = "keras"
    content = samplefiles.hdf5(4096)

    def rel(self, step: int) -> str:
        return f"epoch-{step:05d}.weights.h5"


class Torch(_InPlace):
    """``torch.save(state, f"model_{step}.pt")``: a zip written in place."""

    spec = "torch"
    content = samplefiles.torch_zip({"step": 1}, name="model", payload=1024)

    def rel(self, step: int) -> str:
        return f"model_{step}.pt"


class Glob(_InPlace):
    """``glob:model_{step}.pt`` (the README's example): a ``torch.save`` zip written in place."""

    spec = "glob:model_{step}.pt"
    content = samplefiles.torch_zip({"step": 1}, name="model", payload=1024)

    def rel(self, step: int) -> str:
        return f"model_{step}.pt"


class Lightning(Saves):
    """Lightning ``ModelCheckpoint(every_n_train_steps=..., save_top_k=-1)``
    (traces/lightning_ckpt.trace.txt): written to a temp file outside DIR, renamed in."""

    spec = "lightning"
    content = samplefiles.lightning_ckpt(1)

    def start(self, step: int) -> set[str]:
        tmp = self.root.parent / f"{self.root.name}-tmp"
        tmp.mkdir(exist_ok=True)
        (tmp / "ckpt").write_bytes(self.content)
        return self.touched()  # nothing in DIR: a rename shows no start

    def commit(self, step: int, bulk: bool = False) -> set[str]:
        tmp = self.root.parent / f"{self.root.name}-tmp" / "ckpt"
        rel = f"epoch=0-step={step}.ckpt"
        os.replace(tmp, self.root / rel)
        self._top(rel)
        self.steps.append(step)
        return self.touched()


#: layout name -> its saves, in the order of ckptwatch.layouts.REGISTRY.
SAVES: dict[str, type[Saves]] = {
    "tf": TF, "hf": HF, "dcp": DCP, "orbax": Orbax, "deepspeed": DeepSpeed, "megatron": Megatron,
    "nemo": NeMo, "ray": Ray, "marker": Marker, "keras": Keras, "torch": Torch, "lightning": Lightning,
    "glob": Glob,
}
