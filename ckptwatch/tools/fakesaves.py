"""A fake training run for ``ckptwatch simulate``: real-looking saves of one layout, one every S seconds.

Run as the command ``ckptwatch simulate`` wraps::

    python -m ckptwatch.tools.fakesaves DIR LAYOUT SAVES EVERY STEP_SIZE

Each save follows the framework's own order (data first, the commit last:
TensorFlow's ``checkpoint`` renamed in, the Trainer's ``trainer_state.json``
written last, DCP's ``.metadata`` renamed in, Orbax's temp directory renamed,
DeepSpeed's ``latest`` rewritten, a zip written whole for ``torch`` and
``lightning``). Before each save it looks for ckptwatch's stop file, as a
training loop would (``stop_requested()``), and stops when asked.
"""

from __future__ import annotations

import io
import json
import os
import pickle
import sys
import time
import zipfile
from collections.abc import Callable

__all__ = ["LAYOUTS", "main", "save"]


def _write(path: str, data: bytes) -> None:
    with open(path, "wb") as out:
        out.write(data)


def _replace(path: str, data: bytes) -> None:
    _write(path + ".tmp", data)
    os.replace(path + ".tmp", path)


def _tf(root: str, step: int, kept: list[int]) -> str:
    prefix = f"model.ckpt-{step}"
    _write(os.path.join(root, prefix + ".data-00000-of-00001"), os.urandom(4096))
    _write(os.path.join(root, prefix + ".index"), b"index")
    state = f'model_checkpoint_path: "{prefix}"\n' + "".join(
        f'all_model_checkpoint_paths: "model.ckpt-{s}"\n' for s in kept + [step])
    _replace(os.path.join(root, "checkpoint"), state.encode())  # the commit
    return prefix


def _hf(root: str, step: int, kept: list[int]) -> str:
    folder = os.path.join(root, f"checkpoint-{step}")
    os.makedirs(folder)
    _write(os.path.join(folder, "model.safetensors"), os.urandom(4096))
    _write(os.path.join(folder, "optimizer.pt"), os.urandom(1024))
    loss = round(2.0 / (1 + step / 100), 4)
    _write(os.path.join(folder, "trainer_state.json"),  # the commit: written last
           json.dumps({"global_step": step, "log_history": [{"step": step, "loss": loss}]}).encode())
    return f"checkpoint-{step}"


def _dcp(root: str, step: int, kept: list[int]) -> str:
    folder = os.path.join(root, f"step-{step}")
    os.makedirs(folder)
    _write(os.path.join(folder, "__0_0.distcp"), os.urandom(4096))
    _replace(os.path.join(folder, ".metadata"), b"metadata")  # the commit
    return f"step-{step}"


def _orbax(root: str, step: int, kept: list[int]) -> str:
    tmp = os.path.join(root, f"{step}.orbax-checkpoint-tmp-{time.time_ns()}")
    os.makedirs(os.path.join(tmp, "default"))
    _write(os.path.join(tmp, "default", "array_metadatas"), os.urandom(1024))
    _write(os.path.join(tmp, "_CHECKPOINT_METADATA"), json.dumps({"step": step}).encode())
    os.rename(tmp, os.path.join(root, str(step)))  # the commit
    return str(step)


def _deepspeed(root: str, step: int, kept: list[int]) -> str:
    folder = os.path.join(root, f"global_step{step}")
    os.makedirs(folder)
    _write(os.path.join(folder, "mp_rank_00_model_states.pt"), _zip({"step": step}))
    _write(os.path.join(root, "latest"), f"global_step{step}".encode())  # the commit, in place
    return f"global_step{step}"


def _zip(obj: object) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_STORED) as archive:
        archive.writestr("archive/data.pkl", pickle.dumps(obj, protocol=2))
        archive.writestr("archive/byteorder", "little")
        archive.writestr("archive/data/0", os.urandom(4096))
        archive.writestr("archive/version", "3\n")
    return buffer.getvalue()


def _torch(root: str, step: int, kept: list[int]) -> str:
    _write(os.path.join(root, f"model_{step}.pt"), _zip({"step": step}))  # whole: the commit
    return f"model_{step}.pt"


def _lightning(root: str, step: int, kept: list[int]) -> str:
    name = f"epoch=0-step={step}.ckpt"
    _write(os.path.join(root, name), _zip({"epoch": 0, "global_step": step, "state_dict": {}}))
    return name


#: Layout name -> how one save of it is written.
LAYOUTS: dict[str, Callable[[str, int, list[int]], str]] = {
    "tf": _tf, "hf": _hf, "dcp": _dcp, "orbax": _orbax, "deepspeed": _deepspeed, "torch": _torch,
    "lightning": _lightning,
}


def save(root: str, layout: str, step: int, kept: list[int]) -> str:
    """Write one committed save of ``layout`` at ``step``; its path, relative to ``root``."""
    return LAYOUTS[layout](root, step, kept)


def main(argv: list[str]) -> int:
    from ..integrations.stopfile import stop_requested

    root, layout, saves, every, step_size = argv[0], argv[1], int(argv[2]), float(argv[3]), int(argv[4])
    os.makedirs(root, exist_ok=True)
    kept: list[int] = []
    for number in range(1, saves + 1):
        if number > 1:
            time.sleep(every)
        if stop_requested():
            print(f"simulate: the stop file is there ({os.environ.get('CKPTWATCH_STOP_FILE')}): "
                  f"training stops after {number - 1} save(s)", flush=True)
            return 0
        step = number * step_size
        path = save(root, layout, step, kept)
        kept = (kept + [step])[-4:]
        print(f"simulate: saved step {step} ({path})", flush=True)
    print(f"simulate: done, {saves} save(s)", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
