"""Scan cost as a function of checkpoints and files: ckptwatch's own scan path, in process.

For each size, a directory is made with N checkpoints (TensorFlow: ``.index``
and ``.data`` per prefix, a ``checkpoint`` state file; Transformers:
``checkpoint-N/`` with ``trainer_state.json``) and M unrelated zero-length
files beside them. Then it times, median of several runs:

- ``commit``: what one notification costs: re-``lstat`` the hinted name, the
  layout's scan, the tracker (the path from a commit to a listener start);
- ``relist``: listing DIR whole (at start, after an inotify overflow, and on a
  poll tick after DIR changed).

    python bench/scancost.py                  # sizes up to 10,000 checkpoints and 100,000 files
    python bench/scancost.py --files 1000000  # the million-file case (creating it takes a while)
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from ckptwatch.dirindex import DirIndex  # noqa: E402
from ckptwatch.layouts import layout_class  # noqa: E402
from ckptwatch.tracker import Tracker  # noqa: E402


def make_tf(root: Path, checkpoints: int, keep: int = 5) -> None:
    for step in range(1, checkpoints + 1):
        (root / f"model.ckpt-{step}.index").write_bytes(b"i")
        (root / f"model.ckpt-{step}.data-00000-of-00001").write_bytes(b"d")
    kept = range(max(1, checkpoints - keep + 1), checkpoints + 1)
    body = f'model_checkpoint_path: "model.ckpt-{checkpoints}"\n'
    body += "".join(f'all_model_checkpoint_paths: "model.ckpt-{s}"\n' for s in kept)
    (root / "checkpoint").write_text(body)


def make_hf(root: Path, checkpoints: int) -> None:
    for step in range(1, checkpoints + 1):
        folder = root / f"checkpoint-{step}"
        folder.mkdir()
        (folder / "model.safetensors").write_bytes(b"w")
        (folder / "trainer_state.json").write_text(json.dumps({"global_step": step}))


def add_files(root: Path, files: int) -> None:
    for i in range(files):
        os.close(os.open(root / f"noise-{i:07d}", os.O_CREAT | os.O_WRONLY, 0o644))


def median_ms(fn, reps: int) -> float:
    times = []
    for _ in range(reps):
        start = time.perf_counter()
        fn()
        times.append((time.perf_counter() - start) * 1000)
    return statistics.median(times)


def measure(layout: str, checkpoints: int, files: int, reps: int) -> dict:
    root = Path(tempfile.mkdtemp(prefix="ckptwatch-scancost-"))
    try:
        (make_tf if layout == "tf" else make_hf)(root, checkpoints)
        add_files(root, files)
        cls = layout_class(layout)
        index = DirIndex(str(root), [cls])
        index.relist()
        scanner = cls(str(root))
        tracker = Tracker()
        tracker.begin()
        tracker.observe(scanner.scan(index.view(cls)))  # everything already delivered
        hint = {"checkpoint"} if layout == "tf" else {f"checkpoint-{checkpoints}"}

        def commit() -> None:
            index.refresh(hint)
            tracker.observe(scanner.scan(index.view(cls)))

        return {
            "layout": layout, "checkpoints": checkpoints, "files": files,
            "entries": len(os.listdir(root)),
            "commit_ms": round(median_ms(commit, reps), 3),
            "relist_ms": round(median_ms(index.relist, max(3, reps // 10)), 3),
        }
    finally:
        shutil.rmtree(root, ignore_errors=True)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--checkpoints", default="100,1000,10000")
    parser.add_argument("--files", default="0,100000", help="unrelated files beside them")
    parser.add_argument("--reps", type=int, default=50)
    parser.add_argument("--out", help="write the rows as JSON here")
    args = parser.parse_args()
    rows = []
    print(f"{'layout':<7} {'checkpoints':>11} {'other files':>11} {'entries':>9} {'commit ms':>10} {'relist ms':>10}")
    for layout in ("tf", "hf"):
        for files in (int(x) for x in args.files.split(",")):
            for checkpoints in (int(x) for x in args.checkpoints.split(",")):
                row = measure(layout, checkpoints, files, args.reps)
                rows.append(row)
                print(f"{layout:<7} {checkpoints:>11} {files:>11} {row['entries']:>9} "
                      f"{row['commit_ms']:>10.3f} {row['relist_ms']:>10.1f}", flush=True)
    if args.out:
        Path(args.out).write_text(json.dumps(rows, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
