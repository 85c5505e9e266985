"""DeepSpeed writer: a tiny Linear model under a real DeepSpeed engine (CPU, gloo, one process, ZeRO stage 0, SGD).

engine.save_checkpoint(DIR) every 5 steps: DeepSpeed writes DIR/global_stepN/mp_rank_00_model_states.pt,
then rank 0 writes the tag file DIR/latest ("global_stepN", in place, no newline).
--mb M: also a zero buffer "pad" of M MiB in the model (so in the model states file), so that each
save takes a while to write.
Prints `SAVED <step> <DIR/global_stepN>` after each save_checkpoint returns.

A single process, no launcher: MASTER_ADDR=127.0.0.1, MASTER_PORT a free port, RANK=0, WORLD_SIZE=1,
LOCAL_RANK=0, then deepspeed.init_distributed(dist_backend="gloo").

DeepSpeed's torch comm backend JIT-compiles its CPU shared-memory all-reduce op (deepspeed_shm_comm,
g++ and ninja, ~45 s on 2 cores, cached in ~/.cache/torch_extensions) at init_distributed, whatever
the world size. DeepSpeed has no environment variable or config key to skip it; its op table
(deepspeed.ops.__compatible_ops__, kept in the module "so edits to it persist") decides, so the op is
marked incompatible here and the comm backend falls back to plain gloo. One process never
all-reduces through it, and checkpointing does not touch it. INTEROP_DS_SHM_OP=1 builds it as usual.
"""
import os
import socket

import _common

a = _common.args(__doc__, lambda p: (
    p.add_argument("--mb", type=float, default=0, help="add a zero buffer of this many MiB to the model"),
))


def free_port():
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(free_port()), RANK="0", WORLD_SIZE="1",
                  LOCAL_RANK="0", LOCAL_SIZE="1")
os.environ.setdefault("DS_ACCELERATOR", "cpu")  # no accelerator probing (and no warning about it)

import torch

import deepspeed

if os.environ.get("INTEROP_DS_SHM_OP") != "1":
    deepspeed.ops.__compatible_ops__["deepspeed_shm_comm"] = False

torch.set_num_threads(1)
torch.manual_seed(0)


class Tiny(torch.nn.Module):
    def __init__(self, pad_mb=0.0):
        super().__init__()
        self.linear = torch.nn.Linear(8, 4)
        if pad_mb:
            self.register_buffer("pad", torch.zeros(int(pad_mb * 2**18)))  # float32: 2**18 per MiB

    def forward(self, x):
        return self.linear(x)


deepspeed.init_distributed(dist_backend="gloo")
model = Tiny(a.mb)
config = {
    "train_batch_size": 16,
    "train_micro_batch_size_per_gpu": 16,
    "gradient_accumulation_steps": 1,
    "optimizer": {"type": "SGD", "params": {"lr": 0.1}},
    "zero_optimization": {"stage": 0},
    "steps_per_print": 10**9,
    "wall_clock_breakdown": False,
}
engine, _, _, _ = deepspeed.initialize(model=model, model_parameters=model.parameters(), config=config)
every = 5
for step in range(1, every * a.saves + 1):
    loss = engine(torch.randn(16, 8)).pow(2).mean()
    engine.backward(loss)
    engine.step()
    if step % every == 0:
        assert engine.global_steps == step, (engine.global_steps, step)
        engine.save_checkpoint(a.dir)  # tag: global_step{engine.global_steps}
        _common.saved(step, os.path.join(a.dir, f"global_step{step}"), a.pace)
torch.distributed.destroy_process_group()
