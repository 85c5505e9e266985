"""Load one checkpoint from an object store with the framework's own reader; exit 1 with the reason if it fails.

python load_s3.py dcp s3://bucket/run/step-5        (dcp.load with FsspecReader)
python load_s3.py lightning s3://bucket/run/epoch=0-step=3.ckpt   (torch.load of the object)
Prints the step the checkpoint holds.
"""
import sys

import _common  # noqa: F401 - environment first

framework, url = sys.argv[1], sys.argv[2]
import torch

if framework == "dcp":
    import torch.distributed.checkpoint as dcp
    from torch.distributed.checkpoint._fsspec_filesystem import FsspecReader

    state = {"model": torch.nn.Linear(8, 4).state_dict(), "step": 0}
    dcp.load(state, storage_reader=FsspecReader(url))
    step = state["step"]
else:
    import fsspec

    with fsspec.open(url, "rb") as handle:
        step = torch.load(handle, map_location="cpu", weights_only=False)["global_step"]
_common._out.write(f"STEP {int(step)}\n")
_common._out.flush()
