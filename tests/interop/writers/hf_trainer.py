"""HF transformers Trainer writer: tiny GPT-2 from GPT2Config, nothing downloaded.

GPT2LMHeadModel(n_layer=1, n_embd=16, n_head=2, vocab_size=64, n_positions=32) on a
random token dataset; save_steps=2, save_total_limit=2, max_steps=2*N, report_to=[].
Each save writes DIR/checkpoint-N/ (config.json, generation_config.json,
model.safetensors, training_args.bin, optimizer.pt, scheduler.pt, rng_state.pth,
trainer_state.json last) and removes the oldest beyond 2.
Prints `SAVED <step> DIR/checkpoint-N` from TrainerCallback.on_save.
"""
import os

import _common

a = _common.args(__doc__)

import torch
from transformers import GPT2Config, GPT2LMHeadModel, Trainer, TrainerCallback, TrainingArguments

torch.set_num_threads(1)
torch.manual_seed(0)


class Tokens(torch.utils.data.Dataset):
    def __init__(self, n=64, length=16):
        self.ids = torch.randint(0, 64, (n, length))

    def __len__(self):
        return len(self.ids)

    def __getitem__(self, i):
        return {"input_ids": self.ids[i], "labels": self.ids[i]}


class Printer(TrainerCallback):
    def on_save(self, args, state, control, **kwargs):
        step = state.global_step
        _common.saved(step, os.path.join(args.output_dir, f"checkpoint-{step}"), a.pace)


config = GPT2Config(n_layer=1, n_embd=16, n_head=2, vocab_size=64, n_positions=32, bos_token_id=0, eos_token_id=0)
model = GPT2LMHeadModel(config)
args = TrainingArguments(
    output_dir=a.dir,
    max_steps=2 * a.saves,
    save_strategy="steps",
    save_steps=2,
    save_total_limit=2,
    per_device_train_batch_size=4,
    logging_strategy="no",
    report_to=[],
    use_cpu=True,
    disable_tqdm=True,
    dataloader_num_workers=0,
    seed=0,
)
Trainer(model=model, args=args, train_dataset=Tokens(), callbacks=[Printer()]).train()
