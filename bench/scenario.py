"""What the benchmark does to a checkpoint directory, and what it reads back.

- `Writer` saves TensorFlow-style checkpoints: the `.data` and `.index` files
  first, then the commit, an `os.replace` of `checkpoint.tmp<hex>` onto the
  state file `checkpoint` (as `tf.train.Saver` does).
- `ManagerWriter` saves as TF2's `tf.train.CheckpointManager` does (the
  realistic row set): `ckpt-N_temp/`, its files renamed out, the data in place
  a while before the commit, the state file written twice with rotation between.
- `write_listener` writes the bash listener that every tool starts;
  `write_class_listener` and `write_serve_listener` the two Python ones
  ckptwatch can run instead (a warm class, a `serve()` script).
- `Records` reads what the listeners appended.
- `build_idle_dir` fills a directory with many checkpoints and files.
"""

from __future__ import annotations

import json
import os
import random
import shutil
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

STATE_FILE = "checkpoint"
PREFIX = "model.ckpt"
DATA = ".data-00000-of-00001"


def state_text(steps: list[int], prefix: str = PREFIX, timestamps: list[float] | None = None) -> str:
    """The text proto TF writes to `checkpoint`: the newest prefix, then the kept ones.

    With `timestamps` (one per kept step), the lines TF2's CheckpointManager adds.
    """
    lines = [f'model_checkpoint_path: "{prefix}-{steps[-1]}"']
    lines += [f'all_model_checkpoint_paths: "{prefix}-{s}"' for s in steps]
    if timestamps is not None:
        lines += [f"all_model_checkpoint_timestamps: {t:.6f}" for t in timestamps]
        lines.append(f"last_preserved_timestamp: {timestamps[0] - 1:.6f}")
    return "\n".join(lines) + "\n"


class Writer:
    """Saves checkpoints into `directory` the way TensorFlow does.

    keep: how many prefixes the state file lists (Saver's max_to_keep, 5).
    rotate: delete prefixes that fall out of the list right after the commit,
      as TF does (off by default, so a late scan still finds every save).
    sharded: write the data into `model.ckpt-N_temp/` first and move it out,
      as the sharded saver (the default of CheckpointSaverHook) does.
    """

    prefix = PREFIX

    def __init__(self, directory: Path, keep: int = 5, rotate: bool = False,
                 sharded: bool = False, data_bytes: int = 64,
                 initial: list[int] | None = None):
        self.dir = Path(directory)
        self.keep = max(1, keep)
        self.rotate = rotate
        self.sharded = sharded
        self.payload = b"\0" * data_bytes
        self.kept: list[int] = list(initial or [])[-self.keep:]
        self.written: list[int] = []  # prefixes this writer created (for cleanup)
        self.last_replace_ns = 0

    def _write(self, path: str, data: bytes) -> None:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o644)
        try:
            os.write(fd, data)
        finally:
            os.close(fd)

    def prepare(self, step: int) -> None:
        """Everything of a save except its commit."""
        d = str(self.dir)
        prefix = f"{d}/{self.prefix}-{step}"
        if self.sharded:
            tmp = f"{prefix}_temp"
            os.mkdir(tmp)
            part = f"{tmp}/part-00000-of-00001"
            self._write(f"{part}.data-00000-of-00001", self.payload)
            self._write(f"{part}.index", b"index")
            os.rename(f"{part}.data-00000-of-00001", f"{prefix}.data-00000-of-00001")
            self._write(f"{prefix}.index", b"index")
            os.remove(f"{part}.index")
            os.rmdir(tmp)
        else:
            self._write(f"{prefix}.data-00000-of-00001", self.payload)
            self._write(f"{prefix}.index", b"index")
        self.written.append(step)

    def commit(self, step: int, lead: float | None = None) -> int:
        """Save `step` and commit it; return time.time_ns() just before the replace.

        `lead`: seconds between the data in place and the commit (this writer: none).

        Not after it: the watcher the rename wakes may run first on this CPU
        (wake-up preemption), and a clock read after the call would then be
        late by as long as the watcher ran, flattering whichever tool wakes
        fastest. `last_replace_ns` keeps how long the call appeared to take.
        """
        self.prepare(step)
        self.kept.append(step)
        dropped = self.kept[:-self.keep]
        self.kept = self.kept[-self.keep:]
        t = self._replace_state(state_text(self.kept, self.prefix))
        if self.rotate:
            self._delete(dropped)
        return t

    def _replace_state(self, text: str) -> int:
        """Write the state file to a temp name and rename it onto `checkpoint`; the time just before."""
        tmp = f"{self.dir}/{STATE_FILE}.tmp{uuid.uuid4().hex}"
        self._write(tmp, text.encode())
        t = time.time_ns()
        os.replace(tmp, f"{self.dir}/{STATE_FILE}")
        self.last_replace_ns = time.time_ns() - t
        return t

    def _delete(self, steps: list[int]) -> None:
        for s in steps:
            for suffix in (".index", DATA):
                try:
                    os.remove(f"{self.dir}/{self.prefix}-{s}{suffix}")
                except FileNotFoundError:
                    pass

    def remove_written(self) -> None:
        """Delete the prefixes this writer saved (used to restore the idle directory)."""
        self._delete(self.written)
        self.written.clear()


class ManagerWriter(Writer):
    """Saves as TF2's `tf.train.CheckpointManager(max_to_keep=keep)` does.

    The order is the traced one (/work/shared/traces/tf2_manager.trace.txt):
    `ckpt-N_temp/` is made, `part-00000-of-00001.{data-00000-of-00001,index}`
    are written under `.tempstate<u64>` names and renamed, the data file is
    renamed out to `ckpt-N.data-00000-of-00001`, `ckpt-N.index` is written in
    place, the part index deleted and `_temp/` removed. `lead` seconds later
    (a small model in a CI smoke run: about 20 ms) the state file is renamed
    in, still listing the prefix rotation is about to drop; the dropped
    prefix's `.index` and `.data` are deleted, and the state file is
    written again without it (TF writes it twice even when nothing is
    dropped). The commit time is the first rename's.
    """

    prefix = "ckpt"

    def __init__(self, directory: Path, keep: int = 5, lead: float = 0.020, data_bytes: int = 64,
                 initial: list[int] | None = None):
        super().__init__(directory, keep=keep, rotate=True, data_bytes=data_bytes, initial=initial)
        self.lead = lead
        self.stamps: dict[int, float] = {}

    def prepare(self, step: int) -> None:
        prefix = f"{self.dir}/{self.prefix}-{step}"
        tmp = f"{prefix}_temp"
        part = f"{tmp}/part-00000-of-00001"
        os.mkdir(tmp)
        for suffix, data in ((DATA, self.payload), (".index", b"part index")):
            temp = f"{part}{suffix}.tempstate{random.getrandbits(63)}"
            self._write(temp, data)
            os.rename(temp, f"{part}{suffix}")
        os.rename(f"{part}{DATA}", f"{prefix}{DATA}")
        self._write(f"{prefix}.index", b"merged index")
        os.remove(f"{part}.index")
        os.rmdir(tmp)
        self.written.append(step)

    def commit(self, step: int, lead: float | None = None) -> int:
        self.prepare(step)
        lead = self.lead if lead is None else lead
        if lead > 0:
            time.sleep(lead)
        self.stamps[step] = time.time()
        self.kept.append(step)
        dropped = self.kept[:-self.keep]
        t = self._replace_state(self._state(self.kept))
        self.kept = self.kept[-self.keep:]
        self._delete(dropped)
        self._replace_state(self._state(self.kept))
        return t

    def _state(self, steps: list[int]) -> str:
        now = time.time()
        return state_text(steps, self.prefix, [self.stamps.get(s, now) for s in steps])


LISTENER = r"""#!/bin/bash
__SUBSCRIBE__
t=$EPOCHREALTIME
# Above: the start time, before anything else (no fork anywhere in this script).
# ckptwatch passes the event as argv[1] (and CKPTWATCH_EVENT); record after_save only.
case "${1-}" in ''|after_save) ;; *) exit 0 ;; esac
case "${CKPTWATCH_EVENT-}" in ''|after_save) ;; *) exit 0 ;; esac
if [[ -n ${CKPTWATCH_STEP-} ]]; then
  s=$CKPTWATCH_STEP; src=ckptwatch
elif [[ -n ${BENCH_STEP-} ]]; then
  s=$BENCH_STEP; src=tool
else
  # The tool said only that `checkpoint` changed: read the step it names now.
  l=
  { IFS= read -r l; } < __STATE__ 2>/dev/null
  s=${l##*ckpt-}; s=${s%%\"*}; src=file
fi
printf '%s %s %s\n' "$t" "${s:-?}" "$src" >> __RECORDS__
"""


def _bash_quote(s: str) -> str:
    return "'" + s.replace("'", "'\\''") + "'"


#: The first line of a listener that ckptwatch runs for after_save only; without it, for all four events.
SUBSCRIBE = "# ckptwatch: events=after_save"
ALL_EVENTS = "# takes all four events (no events= line), as listeners.d/10-log-event does"


def write_listener(path: Path, watch_dir: Path, records: Path, all_events: bool = False) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    text = (LISTENER.replace("__SUBSCRIBE__", ALL_EVENTS if all_events else SUBSCRIBE)
            .replace("__STATE__", _bash_quote(str(Path(watch_dir) / STATE_FILE)))
            .replace("__RECORDS__", _bash_quote(str(records))))
    path.write_text(text)
    path.chmod(0o755)
    return path


PY_CLASS_LISTENER = """# ckptwatch: class=Bench__EVENTS__
# A warm Python class listener: one process for the session; its first line takes the time.
import time

from ckptwatch import CheckpointSaverListener


class Bench(CheckpointSaverListener):
    def after_save(self, event):
        t = time.time_ns()
        with open(__RECORDS__, "a") as out:
            out.write(f"{t // 1_000_000_000}.{t % 1_000_000_000:09d} {event.step} ckptwatch\\n")
"""

PY_SERVE_LISTENER = """#!__PYTHON__
__SUBSCRIBE__
# A serve()-style Python listener: a new interpreter per event; after_save's first line takes the time.
import time

from ckptwatch import CheckpointSaverListener
from ckptwatch.listener import serve


class Bench(CheckpointSaverListener):
    def after_save(self, event):
        t = time.time_ns()
        with open(__RECORDS__, "a") as out:
            out.write(f"{t // 1_000_000_000}.{t % 1_000_000_000:09d} {event.step} ckptwatch\\n")


serve(Bench())
"""


def write_class_listener(path: Path, records: Path, all_events: bool = False) -> Path:
    """`path`.py: the warm class listener (no executable bit needed)."""
    path = path.with_suffix(".py")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(PY_CLASS_LISTENER.replace("__RECORDS__", repr(str(records)))
                    .replace("__EVENTS__", "" if all_events else " events=after_save"))
    return path


def write_serve_listener(path: Path, records: Path, python: str, all_events: bool = False) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(PY_SERVE_LISTENER.replace("__RECORDS__", repr(str(records))).replace("__PYTHON__", python)
                    .replace("__SUBSCRIBE__", ALL_EVENTS if all_events else SUBSCRIBE))
    path.chmod(0o755)
    return path


@dataclass
class Record:
    t_ns: int      # listener start, from $EPOCHREALTIME
    step: int | None
    src: str       # where the step came from: ckptwatch | tool | file


def _epoch_ns(text: str) -> int:
    text = text.replace(",", ".")  # $EPOCHREALTIME follows the locale's radix
    sec, _, frac = text.partition(".")
    return int(sec) * 1_000_000_000 + int((frac + "000000000")[:9])


class Records:
    """Incremental reader of the listener's results file."""

    def __init__(self, path: Path):
        self.path = Path(path)
        self.path.write_text("")
        self._offset = 0
        self._partial = b""
        self.all: list[Record] = []
        self.steps: dict[int, int] = {}  # step -> index of its first record

    def poll(self) -> int:
        """Read new complete lines; return how many records were added."""
        with open(self.path, "rb") as f:
            f.seek(self._offset)
            data = f.read()
        if not data:
            return 0
        self._offset += len(data)
        data = self._partial + data
        lines = data.split(b"\n")
        self._partial = lines.pop()
        added = 0
        for line in lines:
            parts = line.decode(errors="replace").split()
            if len(parts) < 3:
                continue
            try:
                t = _epoch_ns(parts[0])
            except ValueError:
                continue
            try:
                step = int(parts[1])
            except ValueError:
                step = None
            self.all.append(Record(t, step, parts[2]))
            if step is not None and step not in self.steps:
                self.steps[step] = len(self.all) - 1
            added += 1
        return added

    def first(self, step: int) -> Record | None:
        i = self.steps.get(step)
        return None if i is None else self.all[i]


def build_idle_dir(path: Path, n_ckpt: int, n_files: int, files_subdir: str | None,
                   log=print) -> Path:
    """A directory with n_ckpt checkpoints (steps 1..n_ckpt) and n_files empty files.

    Kept between runs (a marker records what it holds), since a million files
    take a while to create.
    """
    path = Path(path)
    marker = path / ".bench-idle.json"
    want = {"checkpoints": n_ckpt, "files": n_files, "files_subdir": files_subdir}
    if marker.exists():
        try:
            if json.loads(marker.read_text()) == want:
                return path
        except ValueError:
            pass
    if path.exists():
        log(f"  removing old idle directory {path}")
        shutil.rmtree(path)
    path.mkdir(parents=True)
    log(f"  creating {n_ckpt} checkpoints and {n_files} empty files in {path} ...")
    t0 = time.monotonic()
    flags = os.O_WRONLY | os.O_CREAT | os.O_CLOEXEC
    d = str(path)
    for s in range(1, n_ckpt + 1):
        for suffix, data in ((".data-00000-of-00001", b"\0" * 64), (".index", b"index")):
            fd = os.open(f"{d}/{PREFIX}-{s}{suffix}", flags, 0o644)
            os.write(fd, data)
            os.close(fd)
    fdir = path / files_subdir if files_subdir else path
    fdir.mkdir(exist_ok=True)
    fd_s = str(fdir)
    for i in range(n_files):
        os.close(os.open(f"{fd_s}/file-{i:07d}", flags, 0o644))
    (path / STATE_FILE).write_text(state_text(list(range(max(1, n_ckpt - 4), n_ckpt + 1))))
    marker.write_text(json.dumps(want))
    log(f"  ... done in {time.monotonic() - t0:.1f} s")
    return path


def restore_idle_dir(path: Path, writer: Writer, n_ckpt: int) -> None:
    """Undo what one tool's run did to the shared idle directory."""
    writer.remove_written()
    (path / STATE_FILE).write_text(state_text(list(range(max(1, n_ckpt - 4), n_ckpt + 1))))
    for p in path.glob(f"{STATE_FILE}.tmp*"):
        p.unlink()
    for name in ("ckptwatch.stop",):
        try:
            (path / name).unlink()
        except FileNotFoundError:
            pass
