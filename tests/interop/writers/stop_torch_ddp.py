"""A hand-written torch.distributed loop on two CPU processes (gloo), with DistributedStopWatcher.

Without RANK set, it starts itself twice (RANK 0 and 1, a free port on 127.0.0.1) and exits with the
worse status. Each rank trains a DDP Linear model; rank 0 saves DIR/model_<step>.pt every 5 steps
(torch.save); every rank calls stop.should_stop(step, saved=...) at every step. On a stop, rank 0 saves
the stop step if it was not saved. Each rank records the request's step and the step it stopped at.
"""
import os
import socket
import subprocess
import sys
import time

import _common

a = _common.args(__doc__, lambda p: p.add_argument("--sync", action="store_true"))

if "RANK" not in os.environ:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    procs = [subprocess.Popen([sys.executable, *sys.argv], stdout=_common._out,
                              env=dict(os.environ, RANK=str(r), WORLD_SIZE="2", MASTER_ADDR="127.0.0.1",
                                       MASTER_PORT=str(port)))
             for r in range(2)]
    sys.exit(max(p.wait() for p in procs))

import torch
import torch.distributed as dist

from ckptwatch.integrations.torch import DistributedStopWatcher
from stop_record import record

torch.set_num_threads(1)
dist.init_process_group("gloo")
rank = dist.get_rank()
torch.manual_seed(0)
model = torch.nn.parallel.DistributedDataParallel(torch.nn.Linear(8, 4))
optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
stop = DistributedStopWatcher(a.dir, sync=a.sync, timeout=120)
request, step, last_saved = None, 0, None
for step in range(1, 401):
    loss = model(torch.randn(16, 8)).pow(2).mean()
    optimizer.zero_grad()
    loss.backward()
    optimizer.step()
    time.sleep(a.pace)
    saved = step % 5 == 0
    if saved and rank == 0:
        torch.save({"step": step, "model": model.module.state_dict()}, os.path.join(a.dir, f"model_{step}.pt"))
        last_saved = step
    request = stop.should_stop(step, saved=saved)
    if request is not None:
        break
if request is not None and rank == 0 and last_saved != step:
    torch.save({"step": step, "model": model.module.state_dict()}, os.path.join(a.dir, f"model_{step}.pt"))
record(rank, asked=request and request.step, stopped=step if request else None, final=step)
dist.barrier()
dist.destroy_process_group()
