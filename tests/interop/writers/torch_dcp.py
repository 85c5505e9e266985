"""torch.distributed.checkpoint writer: single process, no process group.

Each save is dcp.save({"model": ..., "step": ...}, checkpoint_id=DIR/step-N)
(steps 5, 10, ...): DIR/step-N/__0_0.distcp, then DIR/step-N/.metadata (via
.metadata.tmp + rename, the commit). No rotation.
Prints `SAVED <step> DIR/step-N` after each save.
"""
import os

import _common

a = _common.args(__doc__)

import torch
import torch.distributed.checkpoint as dcp

torch.set_num_threads(1)
torch.manual_seed(0)
model = torch.nn.Linear(8, 4)
every = 5
for step in range(1, every * a.saves + 1):
    loss = model(torch.randn(16, 8)).pow(2).mean()
    model.zero_grad()
    loss.backward()
    with torch.no_grad():  # plain SGD: torch.optim would import torch._dynamo (+1.2 s)
        for p in model.parameters():
            p -= 0.1 * p.grad
    if step % every == 0:
        path = os.path.join(a.dir, f"step-{step}")
        dcp.save({"model": model.state_dict(), "step": step}, checkpoint_id=path)
        _common.saved(step, path, a.pace)
