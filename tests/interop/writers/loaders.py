"""Load a checkpoint written by the interop writers with the framework's own loader.

    python loaders.py <framework> <path>     (or: python -m loaders ... from this dir)

exits 0 when the load worked, or prints one line to stderr and exits 1.
Frameworks: tf1, tf2, keras, torch, dcp, hf, lightning, orbax, deepspeed (the writer
names tf1_saver, torch_save, ... are accepted too). Each load_<name>(path)
returns what it loaded and raises if the checkpoint cannot be read.
"""
import os
import sys
import warnings

warnings.filterwarnings("ignore")
os.environ.setdefault("CUDA_VISIBLE_DEVICES", "")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "0")
os.environ.setdefault("JAX_PLATFORMS", "cpu")
os.environ.setdefault("KERAS_BACKEND", "tensorflow")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("USE_TF", "0")
os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")


def keras_model():
    """The model keras_ckpt.py trains; load_keras needs the same architecture.

    8 -> 4 Dense; with $INTEROP_KERAS_UNITS=U (writer and loader alike), 8 -> U -> U -> 4,
    so that each .weights.h5 takes a while to write (U=1024: ~4 MiB).
    """
    import keras

    units = int(os.environ.get("INTEROP_KERAS_UNITS") or 0)
    hidden = [keras.layers.Dense(units, name="hidden1"), keras.layers.Dense(units, name="hidden2")] if units else []
    return keras.Sequential([keras.Input((8,)), *hidden, keras.layers.Dense(4, name="dense")])


def _tf_reader(prefix):
    import tensorflow as tf

    reader = tf.train.load_checkpoint(prefix)
    if not reader.get_variable_to_shape_map():
        raise ValueError(f"{prefix}: no variables")
    return reader


def _tf_values(prefix):
    """Every variable of a TF checkpoint prefix, and the step its name ends in."""
    reader = _tf_reader(prefix)
    values = {k: reader.get_tensor(k) for k in reader.get_variable_to_shape_map()}
    return values, int(prefix.rsplit("-", 1)[1])


def load_tf1(prefix):
    """A TF1 Saver prefix DIR/model.ckpt-N: read every variable, check global_step == N."""
    values, step = _tf_values(prefix)
    if int(values["global_step"]) != step:
        raise ValueError(f"global_step {values['global_step']} != {step}")
    return values


def load_tf2(prefix):
    """A tf.train.Checkpoint prefix DIR/ckpt-N: read every variable, check step == N."""
    values, step = _tf_values(prefix)
    got = values.get("step/.ATTRIBUTES/VARIABLE_VALUE")
    if got is not None and int(got) != step:
        raise ValueError(f"step {got} != {step}")
    return values


def load_keras(path):
    """A Keras .weights.h5 file: keras_model().load_weights(path)."""
    model = keras_model()
    model.load_weights(path)
    return model


def load_torch(path):
    """A torch.save file: torch.load(weights_only=True), must hold a state dict."""
    import torch

    obj = torch.load(path, map_location="cpu", weights_only=True)
    if not isinstance(obj, dict) or not obj:
        raise ValueError(f"{path}: not a non-empty dict")
    return obj


def load_dcp(path):
    """A DCP checkpoint dir: build a matching state dict from its .metadata, dcp.load into it."""
    import torch
    import torch.distributed.checkpoint as dcp
    from torch.distributed.checkpoint.metadata import BytesStorageMetadata, TensorStorageMetadata

    meta = dcp.FileSystemReader(path).read_metadata()
    tensors = {
        k: torch.empty(m.size, dtype=m.properties.dtype)
        for k, m in meta.state_dict_metadata.items()
        if isinstance(m, TensorStorageMetadata)
    }
    state = {"model": {k.split(".", 1)[1]: v for k, v in tensors.items() if k.startswith("model.")}}
    if any(isinstance(m, BytesStorageMetadata) for k, m in meta.state_dict_metadata.items() if k == "step"):
        state["step"] = -1
    if not state["model"]:
        raise ValueError(f"{path}: no model tensors")
    dcp.load(state, checkpoint_id=path)
    return state


def load_hf(path):
    """An HF Trainer checkpoint-N dir: GPT2LMHeadModel.from_pretrained, trainer_state step == N."""
    import json

    from transformers import GPT2LMHeadModel

    if not os.path.isdir(path):
        raise FileNotFoundError(f"no directory {path}")
    model = GPT2LMHeadModel.from_pretrained(path)
    with open(os.path.join(path, "trainer_state.json")) as f:
        state = json.load(f)
    step = int(os.path.basename(os.path.normpath(path)).rsplit("-", 1)[1])
    if state["global_step"] != step:
        raise ValueError(f"trainer_state global_step {state['global_step']} != {step}")
    return model


def load_lightning(path):
    """A Lightning .ckpt: torch.load, must have state_dict and global_step."""
    import torch

    ckpt = torch.load(path, map_location="cpu", weights_only=False)
    if "state_dict" not in ckpt or "global_step" not in ckpt:
        raise ValueError(f"{path}: no state_dict/global_step")
    return ckpt


def load_deepspeed(path):
    """A DeepSpeed tag dir DIR/global_stepN (ZeRO 0-2): torch.load its mp_rank_00_model_states.pt, as
    DeepSpeed's own TorchCheckpointEngine.load does (but weights_only=True); global_steps == N; the
    weights load (strict) into the writer's Linear(8, 4)."""
    import torch

    if not os.path.isdir(path):
        raise FileNotFoundError(f"no directory {path}")
    step = int(os.path.basename(os.path.normpath(path))[len("global_step"):])
    states = torch.load(os.path.join(path, "mp_rank_00_model_states.pt"), map_location="cpu", weights_only=True)
    if states.get("global_steps") != step:
        raise ValueError(f"global_steps {states.get('global_steps')} != {step}")
    if states.get("optimizer") is None:
        raise ValueError(f"{path}: no optimizer state")
    module = states["module"]
    linear = torch.nn.Linear(8, 4)
    linear.load_state_dict({k.split(".", 1)[1]: v for k, v in module.items() if k.startswith("linear.")})
    return states


def load_orbax(path):
    """An Orbax step dir DIR/N: restore step N with a read-only manager of DIR."""
    import logging

    import orbax.checkpoint as ocp

    logging.getLogger("absl").setLevel(logging.ERROR)

    path = os.path.abspath(path)
    step = int(os.path.basename(path))
    if not os.path.isdir(path):
        raise FileNotFoundError(f"no directory {path}")
    options = ocp.CheckpointManagerOptions(read_only=True, max_to_keep=None, save_interval_steps=0)
    with ocp.CheckpointManager(os.path.dirname(path), options=options) as mngr:
        restored = mngr.restore(step, args=ocp.args.StandardRestore())
    if not restored or not all(hasattr(x, "shape") for x in jax_leaves(restored)):
        raise ValueError(f"{path}: restored nothing")
    return restored


def jax_leaves(tree):
    import jax

    return jax.tree_util.tree_leaves(tree)


LOADERS = {
    "tf1": load_tf1, "tf1_saver": load_tf1,
    "tf2": load_tf2, "tf2_manager": load_tf2,
    "keras": load_keras, "keras_ckpt": load_keras,
    "torch": load_torch, "torch_save": load_torch,
    "dcp": load_dcp, "torch_dcp": load_dcp,
    "hf": load_hf, "hf_trainer": load_hf,
    "lightning": load_lightning, "lightning_ckpt": load_lightning,
    "orbax": load_orbax, "orbax_manager": load_orbax,
    "deepspeed": load_deepspeed, "deepspeed_ckpt": load_deepspeed,
}


def main(argv=None):
    argv = sys.argv[1:] if argv is None else argv
    if len(argv) != 2 or argv[0] not in LOADERS:
        print(f"usage: loaders.py {{{','.join(sorted(LOADERS))}}} PATH", file=sys.stderr)
        return 2
    try:
        LOADERS[argv[0]](argv[1])
    except Exception as e:  # one line, whatever went wrong
        msg = " ".join(str(e).split())[:300]
        print(f"load failed: {argv[0]} {argv[1]}: {type(e).__name__}: {msg}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
