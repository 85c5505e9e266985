"""Transformers Trainer (tiny GPT-2 from a config; save_steps=2) with ckptwatch's StopOnRequest
(--plain: without it, and nothing of ckptwatch imported). Records the request's step, the step the
Trainer stopped at, and the checkpoints on disk."""
import os
import time

import _common

a = _common.args(__doc__, lambda p: (p.add_argument("--sync", action="store_true"),
                                     p.add_argument("--plain", action="store_true", help="no ckptwatch at all")))

import torch
from transformers import GPT2Config, GPT2LMHeadModel, Trainer, TrainerCallback, TrainingArguments

from stop_record import record

torch.set_num_threads(1)
torch.manual_seed(0)


class Tokens(torch.utils.data.Dataset):
    def __init__(self, n=512, length=16):
        self.ids = torch.randint(0, 64, (n, length))

    def __len__(self):
        return len(self.ids)

    def __getitem__(self, i):
        return {"input_ids": self.ids[i], "labels": self.ids[i]}


class Pace(TrainerCallback):
    def on_step_end(self, args, state, control, **kwargs):
        time.sleep(a.pace)


config = GPT2Config(n_layer=1, n_embd=16, n_head=2, vocab_size=64, n_positions=32, bos_token_id=0, eos_token_id=0)
args = TrainingArguments(output_dir=a.dir, max_steps=100, save_strategy="steps", save_steps=2,
                         per_device_train_batch_size=4, logging_strategy="no", report_to=[], use_cpu=True,
                         disable_tqdm=True, dataloader_num_workers=0, seed=0)
callbacks = [Pace()]
if not a.plain:
    from ckptwatch.integrations.transformers import StopOnRequest

    stop = StopOnRequest(sync=a.sync, timeout=120)  # no path: the Trainer's output_dir (or the environment)
    callbacks.append(stop)
trainer = Trainer(model=GPT2LMHeadModel(config), args=args, train_dataset=Tokens(), callbacks=callbacks)
trainer.train()
if a.plain:
    record(asked=None, stopped=None, final=trainer.state.global_step)
    raise SystemExit(0)
saved = sorted(int(n.split("-")[1]) for n in os.listdir(a.dir) if n.startswith("checkpoint-"))
record(asked=stop.stopped and stop.stopped[0], stopped=stop.stopped and stop.stopped[1],
       final=trainer.state.global_step, saved=saved)
