"""PyTorch Lightning fit (ModelCheckpoint every 3 steps, all kept) with ckptwatch's StopOnRequest.

--lightning: the import name (lightning.pytorch or pytorch_lightning); --devices 2: DDP over gloo on the
CPU (Lightning starts the second process itself). --plain: no ckptwatch at all (for --on-stop signal:...):
ModelCheckpoint(save_on_exception=True) and a callback that records where a SIGTERM stopped the fit.
Each rank records the request's step, the step it stopped at and its final global step.
"""
import os
import time

import _common

a = _common.args(__doc__, lambda p: (
    p.add_argument("--sync", action="store_true"),
    p.add_argument("--lightning", default="pytorch_lightning"),
    p.add_argument("--devices", type=int, default=1),
    p.add_argument("--plain", action="store_true"),
))

import importlib

import torch

pl = importlib.import_module(a.lightning)
from stop_record import record

torch.set_num_threads(1)


class Tiny(pl.LightningModule):
    def __init__(self):
        super().__init__()
        self.layer = torch.nn.Linear(8, 4)

    def training_step(self, batch, batch_idx):
        time.sleep(a.pace)
        return self.layer(batch).pow(2).mean()

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.1)


class Where(pl.Callback):
    """Records where the fit ended (and why), for --plain."""

    def __init__(self):
        self.exception = None

    def on_exception(self, trainer, pl_module, exception):
        self.exception = type(exception).__name__
        stop_file = os.environ.get("CKPTWATCH_STOP_FILE", "")
        record(trainer.global_rank, asked=None, stopped=trainer.global_step, final=trainer.global_step,
               exception=self.exception, stop_file_there=bool(stop_file) and os.path.exists(stop_file),
               ckptwatch_loaded=any(m.startswith("ckptwatch") for m in __import__("sys").modules))


pl.seed_everything(0, verbose=False)
checkpoint = pl.callbacks.ModelCheckpoint(dirpath=a.dir, every_n_train_steps=3, save_top_k=-1,
                                          save_on_exception=a.plain)
callbacks = [checkpoint]
if a.plain:
    where = Where()
    callbacks.append(where)
else:
    from ckptwatch.integrations.lightning import StopOnRequest

    stop = StopOnRequest(sync=a.sync, timeout=120, lightning=a.lightning)
    callbacks.append(stop)
trainer = pl.Trainer(accelerator="cpu", devices=a.devices, strategy="ddp" if a.devices > 1 else "auto",
                     max_steps=300, logger=False, enable_progress_bar=False, enable_model_summary=False,
                     callbacks=callbacks, default_root_dir=a.dir)
data = torch.utils.data.DataLoader(torch.randn(16 * 300 * a.devices, 8), batch_size=16)
trainer.fit(Tiny(), data)
if not a.plain:
    record(trainer.global_rank, asked=stop.stopped and stop.stopped[0], stopped=stop.stopped and stop.stopped[1],
           final=trainer.global_step, callback=type(stop).__name__)
else:
    record(trainer.global_rank, asked=None, stopped=None, final=trainer.global_step, exception=None)
