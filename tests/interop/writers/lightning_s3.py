"""PyTorch Lightning to an object store: ModelCheckpoint(dirpath="s3://...", every_n_train_steps=3,
save_top_k=-1 (keep all: a listener loads each one), monitor="step", save_last=True).

On a remote dirpath Lightning writes each checkpoint with fsspec (fs.open(path, "wb"): one object,
visible once the upload completes) and saves last.ckpt
again (lightning/pytorch/callbacks/model_checkpoint.py _save_checkpoint, _remove_checkpoint;
lightning/fabric/plugins/io/torch_io.py save_checkpoint -> _atomic_save). Prints
`SAVED <step> URL/epoch=0-step=S.ckpt` after each save of a step file.
"""
import argparse

import _common  # noqa: F401 - environment first

p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
p.add_argument("url")
p.add_argument("--saves", type=int, default=3)
p.add_argument("--pace", type=float, default=0.2)
a = p.parse_args()
_common._state["saves"] = a.saves

import torch

try:
    import lightning.pytorch as pl
except ImportError:
    import pytorch_lightning as pl

torch.set_num_threads(1)


class Tiny(pl.LightningModule):
    def __init__(self):
        super().__init__()
        self.layer = torch.nn.Linear(8, 4)

    def training_step(self, batch, batch_idx):
        return self.layer(batch).pow(2).mean()

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.1)


class Checkpoint(pl.callbacks.ModelCheckpoint):
    def on_train_batch_end(self, trainer, *args, **kwargs):
        before = self.best_k_models.copy()
        super().on_train_batch_end(trainer, *args, **kwargs)
        for path in [p for p in self.best_k_models if p not in before]:
            _common.saved(self.best_k_models[path], path, a.pace)


pl.seed_everything(0, verbose=False)
every = 3
ckpt = Checkpoint(dirpath=a.url, every_n_train_steps=every, save_top_k=-1, monitor="step", mode="max", save_last=True)
trainer = pl.Trainer(accelerator="cpu", devices=1, max_steps=every * a.saves, logger=False, enable_progress_bar=False,
                     enable_model_summary=False, callbacks=[ckpt], default_root_dir="/tmp")
trainer.fit(Tiny(), torch.utils.data.DataLoader(torch.randn(16 * every * a.saves, 8), batch_size=16))
