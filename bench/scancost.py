"""Scan cost per layout, as checkpoints and files pile up: ckptwatch's own scan path, in process.

For every layout (``ckptwatch.layouts.REGISTRY``), DIR is filled with N
committed checkpoints made the way its framework makes them
(bench/layoutsaves.py) beside M unrelated empty files, and a watcher's state
is built on it as at a start (a full listing, looks until all of them are
delivered). Then ``--reps`` new saves are made, each in two phases, and
timed as the engine handles them:

- ``start``: the look after the save's first files (re-``lstat`` the hinted
  names, the layout's scan, ``tracker.observe``); whether that look gave the
  save its ``before_save`` (``observed``);
- ``commit``: the looks from the commit until its ``after_save`` (the hinted
  look, plus the second looks a layout asks for with ``recheck``: a file
  written in place must stay unchanged for a moment, as the engine waits;
  ``--recheck`` says how the engine takes that second look: ``hinted``, at
  what asked for it, since f06aa16; ``everything``, every marker, before);
- ``full listing``: listing DIR whole (at the start, after an inotify
  overflow, on a poll tick after DIR changed).

Medians over the reps. A save whose ``after_save`` never came is counted in
``delivered``; its time is still shown.

    python bench/scancost.py                         # every layout at 100/1,000/10,000, beside 0 and 100,000 files
    python bench/scancost.py --layouts tf,hf --reps 10
    python bench/scancost.py --before bench/figures/scancost-before.json   # the earlier figures beside
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.layoutsaves import SAVES, Saves  # noqa: E402
from ckptwatch.dirindex import DirIndex  # noqa: E402
from ckptwatch.layouts import REGISTRY, create  # noqa: E402
from ckptwatch.tracker import Tracker  # noqa: E402

NOISE = "noise-"
#: The most looks one commit may take (a layout that keeps asking for another look).
MAX_LOOKS = 20


class Watcher:
    """The engine's scan path on one directory: index, layout, tracker."""

    def __init__(self, spec: str, root: Path) -> None:
        self.layout = create(spec, str(root))
        self.cls = type(self.layout)
        self.index = DirIndex(str(root), [self.cls])
        self.tracker = Tracker()
        self.tracker.begin()

    def look(self, hints: set[str] | None):
        """One look: at the hinted names (an empty set: none new), or (None) at everything."""
        t0 = time.perf_counter()
        if hints is None:
            self.index.everything_changed()
        else:
            self.index.refresh(hints)
        obs = self.layout.scan(self.index.view(self.cls))
        events = self.tracker.observe(obs)
        return (time.perf_counter() - t0) * 1000, obs, events

    def start(self) -> int:
        """As at a start: list DIR, look until no second look is asked for; the after_saves given."""
        self.index.relist()
        delivered = 0
        for _ in range(MAX_LOOKS):
            _, obs, events = self.look(None)
            delivered += sum(e.name == "after_save" for e in events)
            if obs.recheck is None:
                break
            time.sleep(obs.recheck)
        return delivered


def one_save(w: Watcher, saves: Saves, recheck: str = "hinted") -> dict:
    step = saves.next_step()
    out = {"start_ms": None, "commit_ms": 0.0, "looks": 0, "observed": False, "delivered": False,
           "problems": []}
    hints = saves.start(step)
    if hints:
        out["start_ms"], obs, events = w.look(hints)
        out["problems"] += obs.problems
        out["observed"] = any(e.name == "before_save" and e.step == step and e.observed for e in events)
    hints = saves.commit(step)
    obs = None
    while out["looks"] < MAX_LOOKS:
        if obs is not None:
            if obs.recheck is None:
                break
            time.sleep(obs.recheck)
        second = set() if recheck == "hinted" else None
        ms, obs, events = w.look(hints if out["looks"] == 0 else second)
        out["commit_ms"] += ms
        out["looks"] += 1
        out["problems"] += obs.problems
        for e in events:
            if e.step == step and e.name == "before_save" and e.observed:
                out["observed"] = True
            if e.step == step and e.name == "after_save":
                out["delivered"] = True
        if out["delivered"]:
            break
    return out


def median_ms(fn, reps: int) -> float:
    times = []
    for _ in range(reps):
        t0 = time.perf_counter()
        fn()
        times.append((time.perf_counter() - t0) * 1000)
    return statistics.median(times)


def measure(layout: str, saves: Saves, root: Path, files: int, reps: int, recheck: str = "hinted") -> dict:
    checkpoints = len(saves.steps)
    w = Watcher(saves.spec, root)
    initial = w.start()
    runs = [one_save(w, saves, recheck) for _ in range(reps)]
    starts = [r["start_ms"] for r in runs if r["start_ms"] is not None]
    return {
        "layout": layout, "spec": saves.spec, "checkpoints": checkpoints, "files": files,
        "entries": len(os.listdir(root)), "initial_delivered": initial,
        "start_ms": round(statistics.median(starts), 3) if starts else None,
        "commit_ms": round(statistics.median(r["commit_ms"] for r in runs), 3),
        "looks": statistics.median(r["looks"] for r in runs),
        "observed": sum(r["observed"] for r in runs), "delivered": sum(r["delivered"] for r in runs),
        "reps": reps,
        "relist_ms": round(median_ms(w.index.relist, 5), 3),
        "problems": sorted({p for r in runs for p in r["problems"]})[:3],
    }


def add_noise(root: Path, files: int) -> None:
    flags = os.O_CREAT | os.O_WRONLY | os.O_CLOEXEC
    for i in range(files):
        os.close(os.open(root / f"{NOISE}{i:07d}", flags, 0o644))


def clear_checkpoints(root: Path) -> None:
    """Everything but the unrelated files: the next layout starts from them alone."""
    with os.scandir(root) as entries:
        for entry in entries:
            if entry.name.startswith(NOISE):
                continue
            if entry.is_dir(follow_symlinks=False):
                shutil.rmtree(entry.path)
            else:
                os.remove(entry.path)
    shutil.rmtree(root.parent / f"{root.name}-tmp", ignore_errors=True)


def code_version() -> str:
    """The commit of the ckptwatch measured (and "+changes" when its tree differs from it)."""
    import subprocess

    import ckptwatch

    where = Path(ckptwatch.__file__).resolve().parent
    try:
        head = subprocess.run(["git", "-C", str(where), "rev-parse", "--short", "HEAD"], capture_output=True,
                              text=True, check=True).stdout.strip()
        dirty = subprocess.run(["git", "-C", str(where), "status", "--porcelain", "--", "."], capture_output=True,
                               text=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return str(where)
    return f"{head}{'+changes' if dirty else ''} ({where})"


def fmt(v, nd: int) -> str:
    return "-" if v is None else f"{v:.{nd}f}"


HEAD = (f"{'layout':<10} {'checkpoints':>11} {'other files':>11} {'start ms':>9} {'commit ms':>10} "
        f"{'looks':>5} {'observed':>8} {'delivered':>9} {'listing ms':>10}")


def row_text(row: dict, before: dict | None) -> str:
    text = (f"{row['layout']:<10} {row['checkpoints']:>11} {row['files']:>11} {fmt(row['start_ms'], 3):>9} "
            f"{fmt(row['commit_ms'], 3):>10} {row['looks']:>5g} {row['observed']:>4}/{row['reps']:<3} "
            f"{row['delivered']:>5}/{row['reps']:<3} {fmt(row['relist_ms'], 1):>10}")
    if before is not None:
        text += (f"   before: commit {fmt(before.get('commit_ms'), 3)}, listing {fmt(before.get('relist_ms'), 1)}, "
                 f"observed {before.get('observed', '-')}/{before.get('reps', '-')}")
    return text


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--layouts", default=",".join(REGISTRY), help="comma-separated (default: every layout)")
    parser.add_argument("--checkpoints", default="100,1000,10000")
    parser.add_argument("--files", default="0,100000", help="unrelated empty files beside them")
    parser.add_argument("--reps", type=int, default=20, help="new saves timed per size")
    parser.add_argument("--recheck", choices=("hinted", "everything"), default="hinted",
                        help="a layout's second look, as the engine takes it: at what asked for it "
                             "(since f06aa16), or at every marker (before; the figures of "
                             "bench/figures/scancost-before.json)")
    parser.add_argument("--out", help="write the rows (and the machine) as JSON here")
    parser.add_argument("--before", help="a JSON of an earlier run (--out): its figures beside each row")
    parser.add_argument("--workdir", default=None, help="where DIR is made (default: the temp directory)")
    args = parser.parse_args(argv)
    layouts = [x.strip() for x in args.layouts.split(",") if x.strip()]
    unknown = [x for x in layouts if x not in SAVES]
    if unknown:
        print(f"unknown layout(s): {', '.join(unknown)}; known: {', '.join(SAVES)}", file=sys.stderr)
        return 2
    sizes = sorted(int(x) for x in args.checkpoints.split(","))
    before: dict = {}
    if args.before:
        try:
            for row in json.loads(Path(args.before).read_text())["rows"]:
                before[(row["layout"], row["checkpoints"], row["files"])] = row
        except (OSError, ValueError, KeyError) as exc:
            print(f"{args.before}: not a scancost JSON ({exc})", file=sys.stderr)
            return 2
    meta = {"time": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "host": platform.node(), "cpus": os.cpu_count(),
            "python": sys.version.split()[0], "loadavg_start": os.getloadavg(), "reps": args.reps,
            "code": code_version(), "recheck": args.recheck}
    rows = []
    print(HEAD, flush=True)
    work = Path(tempfile.mkdtemp(prefix="ckptwatch-scancost-", dir=args.workdir))
    try:
        for files in (int(x) for x in args.files.split(",")):
            root = work / f"dir-{files}"
            root.mkdir()
            add_noise(root, files)
            for layout in layouts:
                saves = SAVES[layout](root)
                for n in sizes:
                    saves.bulk(n)
                    row = measure(layout, saves, root, files, args.reps, args.recheck)
                    rows.append(row)
                    print(row_text(row, before.get((layout, row["checkpoints"], files))
                                   if args.before else None), flush=True)
                    if row["delivered"] < row["reps"]:
                        for problem in row["problems"] or ["(no problem reported)"]:
                            print(f"  {layout}: not delivered: {problem[:160]}", flush=True)
                clear_checkpoints(root)
            shutil.rmtree(root)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    meta["loadavg_end"] = os.getloadavg()
    print(f"ckptwatch {meta['code']}; load average {meta['loadavg_start'][0]:.2f} at the start, "
          f"{meta['loadavg_end'][0]:.2f} at the end")
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(json.dumps({"meta": meta, "rows": rows}, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
