#!/usr/bin/env python3
"""A small training loop in plain Python that saves like the Transformers Trainer.

It fits y = 3x + 1 by gradient descent and, every --save-every steps, writes
``DIR/checkpoint-N/`` (model.json, optimizer.json, then trainer_state.json
last, as the Trainer does), keeping the newest --keep checkpoints. It checks
ckptwatch's stop file after each step and, when a listener asked, saves a
last checkpoint and stops; with --sync it waits after each save for that
save's listeners, so it stops at the very step whose listener asked.

    ckptwatch run runs/demo -- python examples/train.py runs/demo
    ckptwatch run runs/demo -- python examples/train.py runs/demo --sync
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import sys
import time

from ckptwatch.integrations import StopWatcher


def save(directory: str, step: int, weights: dict, loss: float, keep: int) -> None:
    target = os.path.join(directory, f"checkpoint-{step}")
    os.makedirs(target, exist_ok=True)
    with open(os.path.join(target, "model.json"), "w") as out:
        json.dump(weights, out)
    with open(os.path.join(target, "optimizer.json"), "w") as out:
        json.dump({"lr": 0.05, "step": step}, out)
    with open(os.path.join(target, "trainer_state.json"), "w") as out:  # last: the commit
        json.dump({"global_step": step, "log_history": [{"step": step, "loss": loss}]}, out)
    saved = sorted(
        (int(n.split("-")[1]) for n in os.listdir(directory) if n.startswith("checkpoint-")),
    )
    for old in saved[:-keep]:
        shutil.rmtree(os.path.join(directory, f"checkpoint-{old}"), ignore_errors=True)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("dir")
    parser.add_argument("--steps", type=int, default=200)
    parser.add_argument("--save-every", type=int, default=20)
    parser.add_argument("--keep", type=int, default=3)
    parser.add_argument("--step-time", type=float, default=0.02, help="seconds a step takes (simulated)")
    parser.add_argument("--sync", action="store_true", help="after each save, wait for its listeners' verdict")
    parser.add_argument("--sync-timeout", type=float, default=300, help="seconds --sync waits at most for a verdict")
    args = parser.parse_args()
    os.makedirs(args.dir, exist_ok=True)
    stop = StopWatcher(args.dir, sync=args.sync, timeout=args.sync_timeout)
    rng = random.Random(0)
    weights = {"w": 0.0, "b": 0.0}
    for step in range(1, args.steps + 1):
        xs = [rng.uniform(-1, 1) for _ in range(32)]
        errors = [(weights["w"] * x + weights["b"]) - (3 * x + 1) for x in xs]
        loss = sum(e * e for e in errors) / len(errors)
        weights["w"] -= 0.05 * 2 * sum(e * x for e, x in zip(errors, xs)) / len(xs)
        weights["b"] -= 0.05 * 2 * sum(errors) / len(xs)
        time.sleep(args.step_time)
        saved = step % args.save_every == 0
        if saved:
            save(args.dir, step, weights, loss, args.keep)
            print(f"train: step {step} loss {loss:.4f} saved checkpoint-{step}", flush=True)
        request = stop.should_stop(step, saved=saved)
        if request is not None:
            if not saved:  # a last checkpoint at the step where training stops
                save(args.dir, step, weights, loss, args.keep)
            print(f"train: stop requested at step {request.step} ({request.reason}); stopping at step {step}",
                  flush=True)
            return 0
    print(f"train: done, {args.steps} steps", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
