"""torch.distributed.checkpoint writer: single process, no process group.

Each save is dcp.save({"model": ..., "step": ...}, checkpoint_id=DIR/step-N)
(steps 5, 10, ...): DIR/step-N/__0_0.distcp, then DIR/step-N/.metadata (via
.metadata.tmp + rename, the commit). No rotation.
Prints `SAVED <step> DIR/step-N` after each save.
"""
import os

import _common

a = _common.args(__doc__)

import torch.distributed.checkpoint as dcp

for step, model in _common.tiny_torch_training(a.saves):
    path = os.path.join(a.dir, f"step-{step}")
    dcp.save({"model": model.state_dict(), "step": step}, checkpoint_id=path)
    _common.saved(step, path, a.pace)
