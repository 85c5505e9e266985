"""torch.save writer: a tiny Linear model, saves {"step": int, "model": state_dict} with torch.save.

Writes DIR/model_{step}.pt (steps 5, 10, ...) written in place by torch.save (a zip).
--last: writes DIR/last.pt over and over instead (same path, new step each time).
--atomic: write to `<name>.tmp` and os.replace it onto the final name.
--mb M: also save a zero tensor "pad" of M MiB, so that each save takes a while to write.
Prints `SAVED <step> <file>` after each save.
"""
import os

import _common

a = _common.args(__doc__, lambda p: (
    p.add_argument("--last", action="store_true", help="overwrite DIR/last.pt at every save"),
    p.add_argument("--atomic", action="store_true", help="write a temp file, then os.replace"),
    p.add_argument("--mb", type=float, default=0, help="add a zero tensor of this many MiB to each save"),
))

import torch

for step, model in _common.tiny_torch_training(a.saves):
    path = os.path.join(a.dir, "last.pt" if a.last else f"model_{step}.pt")
    obj = {"step": step, "model": model.state_dict()}
    if a.mb:
        obj["pad"] = torch.zeros(int(a.mb * 2**18))  # float32: 2**18 per MiB
    if a.atomic:
        torch.save(obj, path + ".tmp")
        os.replace(path + ".tmp", path)
    else:
        torch.save(obj, path)
    _common.saved(step, path, a.pace)
