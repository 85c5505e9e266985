"""tf.train.checkpoints_iterator as a watcher: for each checkpoint it yields,
start LISTENER with BENCH_STEP set to the step parsed from the prefix.

    python bench/tf_iter.py DIR LISTENER [MIN_INTERVAL_SECS]

TensorFlow is imported first, as a CLI that uses it would (so `--help` costs
the import too).
"""

from __future__ import annotations

import os
import subprocess
import sys

import tensorflow as tf  # noqa: E402  (the import is part of what is measured)


def main(argv: list[str]) -> int:
    if not argv or argv[0] in ("-h", "--help"):
        print(__doc__.strip())
        return 0 if argv else 2
    directory, listener = argv[0], argv[1]
    interval = float(argv[2]) if len(argv) > 2 else 1.0
    running: list[subprocess.Popen] = []
    for path in tf.train.checkpoints_iterator(directory, min_interval_secs=interval):
        step = path.rsplit("-", 1)[-1]
        env = dict(os.environ, BENCH_STEP=step)
        running.append(subprocess.Popen([listener], env=env))
        running = [p for p in running if p.poll() is None]
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main(sys.argv[1:]))
    except KeyboardInterrupt:
        sys.exit(130)
