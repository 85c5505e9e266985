"""Shared bits of the interop writers: quiet CPU-only env, the CLI, the SAVED line.

Import this module first in every writer: it sets environment variables that
must be in place before TensorFlow, JAX or torch is imported, and it points
file descriptor 1 at stderr, so that only `saved()` lines reach the real stdout
whatever a framework prints.
"""
import argparse
import os
import sys
import time
import warnings

for _k, _v in {
    "CUDA_VISIBLE_DEVICES": "",  # no GPU probing
    "TF_CPP_MIN_LOG_LEVEL": "2",
    "TF_ENABLE_ONEDNN_OPTS": "0",
    "JAX_PLATFORMS": "cpu",
    "KERAS_BACKEND": "tensorflow",
    "OMP_NUM_THREADS": "1",
    "TOKENIZERS_PARALLELISM": "false",
    "HF_HUB_OFFLINE": "1",
    "TRANSFORMERS_OFFLINE": "1",
    "HF_HUB_DISABLE_TELEMETRY": "1",
    "HF_HUB_DISABLE_PROGRESS_BARS": "1",
    "TRANSFORMERS_VERBOSITY": "warning",
    "USE_TF": "0",
    "USE_FLAX": "0",
}.items():
    os.environ.setdefault(_k, _v)
warnings.filterwarnings("ignore")

sys.stdout.flush()
_out = os.fdopen(os.dup(1), "w")
os.dup2(2, 1)
sys.stdout = sys.stderr


def parse_args(doc):
    """Parse `DIR --saves N --pace SECONDS`; create DIR."""
    p = argparse.ArgumentParser(description=doc.splitlines()[0])
    p.add_argument("dir", help="checkpoint directory (created if missing)")
    p.add_argument("--saves", type=int, default=4, help="number of saves (default 4)")
    p.add_argument("--pace", type=float, default=0.2, help="seconds to sleep after each save (default 0.2)")
    return p


def args(doc, extra=None):
    p = parse_args(doc)
    if extra:
        extra(p)
    a = p.parse_args()
    a.dir = os.path.abspath(a.dir)
    _state["saves"] = a.saves
    os.makedirs(a.dir, exist_ok=True)
    return a


_state = {"saves": 0, "done": 0}


def saved(step, path, pace):
    """Print the one stdout line for a finished save, then sleep `pace` seconds
    (not after the last of the --saves saves)."""
    _out.write(f"SAVED {int(step)} {path}\n")
    _out.flush()
    _state["done"] += 1
    if pace > 0 and _state["done"] < _state["saves"]:
        time.sleep(pace)


def tiny_torch_training(saves, every=5):
    """Train a tiny torch Linear model by plain SGD; yield (step, model) at steps every, 2*every, ...

    torch is imported here, after this module has set the environment.
    """
    import torch

    torch.set_num_threads(1)
    torch.manual_seed(0)
    model = torch.nn.Linear(8, 4)
    for step in range(1, every * saves + 1):
        loss = model(torch.randn(16, 8)).pow(2).mean()
        model.zero_grad()
        loss.backward()
        with torch.no_grad():  # plain SGD: torch.optim would import torch._dynamo (+1.2 s)
            for p in model.parameters():
                p -= 0.1 * p.grad
        if step % every == 0:
            yield step, model
