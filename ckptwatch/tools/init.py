"""``ckptwatch init [DIR]``: a starting point to copy from, commented line by line.

Writes ``DIR/listeners.d/10-log-event`` (a script listener, executable),
``DIR/listeners.d/20-example.py`` (a Python class listener, kept warm) and
``DIR/ckptwatch.toml`` (every setting, commented out where it has a good
default). An existing file is never overwritten: it is kept and named.
``ckptwatch check`` passes on the result, and ``ckptwatch simulate`` runs it.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field

__all__ = ["FILES", "Created", "init"]

SCRIPT = r"""#!/bin/sh
# ckptwatch: events=begin,after_save,end
#
# A script listener: any executable in listeners.d/ is one, in any language.
# ckptwatch runs it once per event it subscribes to (the line above; without
# it: begin, before_save, after_save and end). Policy words may follow on
# that line: every_n_steps=1000, every_n_secs=600, on_failure=retry:3,
# coalesce=true, timeout=600 (or set them in ckptwatch.toml).
#
# What it gets:
#   $1                      the event: begin, before_save, after_save or end
#   CKPTWATCH_STEP          the step (empty for begin)
#   CKPTWATCH_CHECKPOINT    the checkpoint, as the framework would load it
#   CKPTWATCH_DIR, CKPTWATCH_LAYOUT, CKPTWATCH_RUN_ID, CKPTWATCH_STOP_FILE
#   CKPTWATCH_LAST_STEP_HANDLED  (end) 1 when this listener's after_save
#                           handled the last checkpoint, else 0
#   stdin                   the same event as one JSON object
#
# Exit 0: fine. Exit 3 from after_save: ask training to stop. Anything else:
# this run failed (logged; the other listeners and events go on).
# What it prints goes to ckptwatch's log, prefixed with its name.

case "$1" in
  begin)      echo "watching $CKPTWATCH_DIR (layout ${CKPTWATCH_LAYOUT:-not known yet})" ;;
  after_save) echo "step $CKPTWATCH_STEP committed: $CKPTWATCH_CHECKPOINT" ;;
  end)        echo "end at step ${CKPTWATCH_STEP:-none} (handled by me: $CKPTWATCH_LAST_STEP_HANDLED)" ;;
esac
exit 0
"""

CLASS = '''# ckptwatch: class=Example events=begin,after_save,end
"""A Python class listener: TensorFlow's CheckpointSaverListener, kept warm by ckptwatch.

The `ckptwatch:` line above makes this file a class listener (no executable
bit needed): ckptwatch starts ONE process for it, with its own Python, on its
first event; the class is built once, begin() is called once, and every later
event calls a method of the same object, so state on `self` lives on (load a
model or an eval set once, in begin). A method that raises fails that run and
keeps the object; if the process dies, the next event starts a new one, which
calls begin() again first.

TensorFlow's own tf.compat.v1.train.CheckpointSaverListener subclasses run
unchanged too (session is None out of process). Arguments for __init__ come
from ckptwatch.toml: [listener."20-example.py"] args = { stop_at_step = 1000 }.
"""

from ckptwatch import CheckpointSaverListener


class Example(CheckpointSaverListener):
    def __init__(self, stop_at_step=None):
        self.stop_at_step = stop_at_step

    def begin(self, event):
        """Called once, before any other method: set up what later calls share."""
        self.seen = []
        print(f"begin: watching {event.dir}")

    def after_save(self, event):
        """Called once per committed checkpoint, in commit order. Return True to ask training to stop."""
        self.seen.append(event.step)
        print(f"after_save: step {event.step} at {event.checkpoint} ({len(self.seen)} seen so far)")
        return self.stop_at_step is not None and event.step >= self.stop_at_step

    def end(self, event):
        """Called once, last. If you act on your own schedule, handle event.step here when
        event.last_step_handled is False, and do not act twice."""
        print(f"end: step {event.step}, last step handled here: {event.last_step_handled}")
'''

TOML = '''# ckptwatch.toml: settings for `ckptwatch run` (and check, fire, simulate) started in this
# directory. Flags win over CKPTWATCH_* variables, which win over this file.
# `ckptwatch check` reads it as `run` would and says what is wrong.

[run]
# listeners = ["listeners.d"]   # the default when ./listeners.d exists
# layout = "auto"               # or tf, hf, dcp, orbax, ... (`ckptwatch layouts`)
# listener-timeout = 600        # seconds; a run that takes longer is killed (its whole process group)
# start-from = "all"            # first start: all, latest, now, or a step

# One table per listener, by its name in the log (a file's name, or a name you choose).
[listener."20-example.py"]
args = { stop_at_step = 1000 }  # keyword arguments for the class's __init__
# events = ["begin", "after_save", "end"]  # overrides the file's `ckptwatch:` line
# every_n_steps = 1000          # act only every N steps (or every_n_secs = 600), as TensorFlow's timer
# on_failure = "retry:3"        # continue (default), retry:N, stop-training or stop-watcher
# coalesce = true               # fallen behind? skip to the newest checkpoint
# timeout = 600

# A Python class from an importable module or a file, by a name of your choice:
# [listener.evaluate]
# class = "mypkg.hooks:Evaluate"   # or "path/to/file.py:Evaluate", or an installed listener's name
# args = { batch_size = 64 }
# events = ["after_save", "end"]
'''

#: Relative path -> (text, mode).
FILES: dict[str, tuple[str, int]] = {
    os.path.join("listeners.d", "10-log-event"): (SCRIPT, 0o755),
    os.path.join("listeners.d", "20-example.py"): (CLASS, 0o644),
    "ckptwatch.toml": (TOML, 0o644),
}


@dataclass
class Created:
    created: list[str] = field(default_factory=list)
    kept: list[str] = field(default_factory=list)


def init(directory: str) -> Created:
    """Write the starting files into ``directory``; never overwrite one. Raises OSError."""
    result = Created()
    for rel, (text, mode) in FILES.items():
        path = os.path.join(directory, rel)
        os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
        except FileExistsError:
            result.kept.append(path)
            continue
        with os.fdopen(fd, "w") as out:
            out.write(text)
        os.chmod(path, mode & ~_umask())
        result.created.append(path)
    return result


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask
