"""torch.distributed.checkpoint to an object store: dcp.save(..., storage_writer=FsspecWriter(URL/step-N)).

Single process, no process group (steps 5, 10, ...). FsspecWriter writes
URL/step-N/__0_0.distcp, then .metadata.tmp, which it renames onto .metadata
(torch/distributed/checkpoint/filesystem.py FileSystemWriter.finish ->
_fsspec_filesystem.FileSystem.rename -> fsspec mv: a copy, then a delete).
Credentials and the endpoint come from the environment (AWS_*, AWS_ENDPOINT_URL).
Prints `SAVED <step> URL/step-N` after each save.
"""
import argparse

import _common  # noqa: F401 - environment first

p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
p.add_argument("url")
p.add_argument("--saves", type=int, default=3)
p.add_argument("--pace", type=float, default=0.2)
a = p.parse_args()
_common._state["saves"] = a.saves

import torch.distributed.checkpoint as dcp
from torch.distributed.checkpoint._fsspec_filesystem import FsspecWriter

for step, model in _common.tiny_torch_training(a.saves):
    path = f"{a.url.rstrip('/')}/step-{step}"
    dcp.save({"model": model.state_dict(), "step": step}, storage_writer=FsspecWriter(path))
    _common.saved(step, path, a.pace)
