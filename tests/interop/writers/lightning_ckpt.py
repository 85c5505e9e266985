"""PyTorch Lightning writer: ModelCheckpoint(every_n_train_steps=3, save_top_k=2,
monitor="step", mode="max", save_last=True).

A Linear LightningModule, max_steps=3*N in one epoch, no logger. Each save writes
DIR/epoch=0-step=S.ckpt (serialized to $TMPDIR, then moved in), deletes the
oldest beyond 2, then replaces DIR/last.ckpt.
Prints `SAVED <step> DIR/epoch=0-step=S.ckpt` after the ModelCheckpoint callback
returns (after its top-k delete and last.ckpt).
--mb M: the module also holds a zero buffer of M MiB, so that each save takes a while to write.
"""
import _common

a = _common.args(__doc__, lambda p: p.add_argument(
    "--mb", type=float, default=0, help="add a zero buffer of this many MiB to the module"))

import torch

try:  # the name the README's table names (the venv has both since test_stopping.py needs lightning.pytorch)
    import pytorch_lightning as pl
except ImportError:
    import lightning.pytorch as pl

torch.set_num_threads(1)


class Tiny(pl.LightningModule):
    def __init__(self):
        super().__init__()
        self.layer = torch.nn.Linear(8, 4)
        if a.mb:
            self.register_buffer("pad", torch.zeros(int(a.mb * 2**18)))  # float32: 2**18 per MiB

    def training_step(self, batch, batch_idx):
        return self.layer(batch).pow(2).mean()

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.1)


class Checkpoint(pl.callbacks.ModelCheckpoint):
    """ModelCheckpoint that prints one SAVED line after each of its saves."""

    def on_train_batch_end(self, trainer, *args, **kwargs):
        before = self.best_k_models.copy()
        super().on_train_batch_end(trainer, *args, **kwargs)
        new = [p for p in self.best_k_models if p not in before]
        for path in new:
            _common.saved(self.best_k_models[path], path, a.pace)


pl.seed_everything(0, verbose=False)
every = 3
ckpt = Checkpoint(dirpath=a.dir, every_n_train_steps=every, save_top_k=2, monitor="step", mode="max", save_last=True)
trainer = pl.Trainer(
    accelerator="cpu",
    devices=1,
    max_steps=every * a.saves,
    logger=False,
    enable_progress_bar=False,
    enable_model_summary=False,
    callbacks=[ckpt],
    default_root_dir=a.dir,
)
data = torch.utils.data.DataLoader(torch.randn(16 * every * a.saves, 8), batch_size=16)
trainer.fit(Tiny(), data)
