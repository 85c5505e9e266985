"""StopWatcher: the stop check for a hand-written loop, and the core of every callback.

    from ckptwatch.integrations import StopWatcher

    stop = StopWatcher("/ckpt")                 # the checkpoint dir, or the stop file; default: env
    for step in range(1, steps + 1):
        train_step()
        saved = step % 100 == 0
        if saved:
            save(step)
        if stop.should_stop(step, saved=saved):  # a StopRequest (who, why) or None
            break

``should_stop`` costs at most one ``stat`` (of the stop file) per call, and
with ``every_n_steps=N`` nothing at all on other steps. It returns the
request once one counts (see ``stopfile``: newer than this process, this
watcher's run) and keeps returning it.

``sync=True``: out of process, listeners run while training goes on, so a
stop asked at step 100 takes effect some steps later. With ``sync``, a call
with ``saved=True`` (or :meth:`after_save`) first waits until the watcher's
progress file shows that save's ``after_save`` listeners finished, so a
request made there stops training at that very step. The cost: each save
waits for the listeners' time. When no verdict comes within ``timeout``
seconds (the watcher died, or is not there), a warning says so and training
goes on; later saves do not wait again until the progress file moves.
"""

from __future__ import annotations

import logging
import os
import stat as _stat
import time

from ._say import say
from .progress import Progress, locate_progress, read_progress, watcher_gone
from .stopfile import (
    StopLocation,
    StopRequest,
    counts,
    locate,
    look,
    process_start_time,
    read_request,
    stop_file_of,
)

__all__ = ["StopWatcher", "default_path"]

#: How long ``sync`` waits at most for a save's verdict, by default (seconds).
DEFAULT_TIMEOUT = 300.0


def default_path(path: str | os.PathLike[str] | None, fallback_dir: str | None) -> str | os.PathLike[str] | None:
    """``path`` if given; else None when the environment names the stop file; else the framework's own dir.

    The callbacks know where the framework saves (the Trainer's
    ``output_dir``, ModelCheckpoint's ``dirpath``): in the sidecar pattern,
    where nothing sets ``CKPTWATCH_*``, that is where the stop file is.
    """
    if path is not None:
        return path
    if locate(None) is not None:
        return None
    return fallback_dir


class StopWatcher:
    """Whether training should stop, from ckptwatch's stop file (and progress file with ``sync``).

    ``path``: the checkpoint directory or the stop file; default
    ``$CKPTWATCH_STOP_FILE``, else ``$CKPTWATCH_DIR/ckptwatch.stop``.
    ``every_n_steps``: look only when ``step % every_n_steps == 0``.
    ``sync``/``timeout``: wait for each save's verdict (see the module).
    ``state_dir``: where the progress file is, when not ``$CKPTWATCH_STATE_DIR``
    or ``DIR/.ckptwatch``. ``since``: ignore stop files older than this (Unix
    time; default: when this process started). ``run_id``: this run's watcher
    session (default ``$CKPTWATCH_RUN_ID``; requests of other sessions are
    ignored). ``announce``: log the request when first seen (default True).
    """

    __slots__ = ("every_n_steps", "sync", "timeout", "since", "run_id", "announce", "_where", "_state_dir",
                 "_seen", "_request", "_announced", "_stalled", "_warned_nowhere")

    def __init__(
        self,
        path: str | os.PathLike[str] | None = None,
        every_n_steps: int = 1,
        *,
        sync: bool = False,
        timeout: float = DEFAULT_TIMEOUT,
        state_dir: str | os.PathLike[str] | None = None,
        since: float | None = None,
        run_id: str | None = None,
        announce: bool = True,
    ) -> None:
        if every_n_steps < 1:
            raise ValueError(f"every_n_steps must be 1 or more, not {every_n_steps}")
        if timeout < 0:
            raise ValueError(f"timeout must be 0 or more seconds, not {timeout}")
        self.every_n_steps = int(every_n_steps)
        self.sync = bool(sync)
        self.timeout = float(timeout)
        self.since = process_start_time() if since is None else float(since)
        self.run_id = run_id if run_id is not None else os.environ.get("CKPTWATCH_RUN_ID") or None
        #: Log the request once when it is first seen (the callbacks log their own line instead).
        self.announce = announce
        self._where: StopLocation | None = locate(path)
        self._state_dir = state_dir
        #: (inode, size, mtime_ns) of the stop file last read, and what it meant.
        self._seen: tuple[int, int, int] | None = None
        self._request: StopRequest | None = None
        self._announced = False
        #: The progress file as it was when a sync wait timed out ("" when missing); None: not stalled.
        self._stalled: str | None = None
        self._warned_nowhere = False

    def __repr__(self) -> str:
        return (f"StopWatcher(stop_file={self.stop_file!r}, every_n_steps={self.every_n_steps}, "
                f"sync={self.sync}, timeout={self.timeout:g})")

    # Where ----------------------------------------------------------------------

    @property
    def stop_file(self) -> str | None:
        """The stop file's path (None when nothing names it)."""
        return None if self._where is None else stop_file_of(self._where)

    @property
    def directory(self) -> str | None:
        """The checkpoint directory (the stop file's folder when only the file was named)."""
        return None if self._where is None else self._where.directory

    @property
    def progress_file(self) -> str | None:
        return locate_progress(self._state_dir, self.directory)

    @property
    def request(self) -> StopRequest | None:
        """The request seen so far, if any."""
        return self._request

    # Checks ---------------------------------------------------------------------

    def should_stop(self, step: int | None = None, *, saved: bool = False) -> StopRequest | None:
        """The stop request that counts for this run, or None; call it after each step.

        ``saved``: a checkpoint was saved at this step; with ``sync`` its
        verdict is waited for first, and every_n_steps does not apply.
        """
        if saved:
            return self._saved(step)
        if self._request is None and step is not None and step % self.every_n_steps:
            return None
        return self._announce(self.check(), step)

    def after_save(self, step: int | None) -> StopRequest | None:
        """A checkpoint of ``step`` was just saved: with ``sync``, wait for its verdict; the request or None."""
        return self._saved(step)

    def _saved(self, step: int | None) -> StopRequest | None:
        if self.sync and step is not None and self._request is None:
            self.wait_for(step)
        return self._announce(self.check(), step)

    def check(self) -> StopRequest | None:
        """Look at the stop file now (one ``stat``; it is read only when it changed)."""
        if self._request is not None:
            return self._request
        where = self._where
        if where is None:
            if not self._warned_nowhere:
                self._warned_nowhere = True
                say("no stop file known (no path given, and neither CKPTWATCH_STOP_FILE nor CKPTWATCH_DIR set): "
                    "training cannot be stopped; pass the checkpoint directory", logging.WARNING)
            return None
        path = stop_file_of(where)
        if where.is_dir is None:
            # The path did not exist when named: what it is now decides, once.
            try:
                st = os.stat(path)
            except OSError:
                return None
            is_dir = _stat.S_ISDIR(st.st_mode)
            self._where = StopLocation(where.path, is_dir)
            if is_dir:
                return None  # the stop file inside it is looked at from the next call on
        try:
            found = look(path)
            if found is None or found[0] == self._seen:
                return None
            self._seen, mtime = found
            request = read_request(path, mtime)
        except Exception as exc:  # noqa: BLE001 - an object store out of reach must not stop training
            if not self._warned_nowhere:
                self._warned_nowhere = True
                say(f"cannot read the stop file {path}: {type(exc).__name__}: {exc}; training goes on",
                    logging.WARNING)
            return None
        if counts(request, mtime, self.since, self.run_id):
            self._request = request
        return self._request

    def _announce(self, request: StopRequest | None, step: int | None) -> StopRequest | None:
        if request is not None and not self._announced:
            self._announced = True
            if not self.announce:
                return request
            at = f"; stopping at step {step}" if step is not None else ""
            say(f"stop requested: {request.describe()}{at}", logging.WARNING)
        return request

    # sync -------------------------------------------------------------------------

    def wait_for(self, step: int) -> bool:
        """Wait until the watcher has run every ``after_save`` listener of ``step``; False on timeout.

        Waits at most ``timeout`` seconds; returns at once when the watcher
        is known gone. After a timeout, later calls return at once until the
        progress file changes.
        """
        path = self.progress_file
        if path is None:
            return False
        if self._stalled is not None:
            if _fingerprint(path) == self._stalled:
                return False
            self._stalled = None
            say("the watcher's progress file moved again: sync=True waits for verdicts again")
        deadline = time.monotonic() + self.timeout
        delay = 0.002
        progress: Progress | None = None
        while True:
            progress = read_progress(path)
            if progress is not None and self._ours(progress):
                if self._finished(progress, step):
                    return True
                gone = watcher_gone(progress)
                if gone:
                    self._give_up(path, step, f"the watcher will not answer: {gone}")
                    return False
            if time.monotonic() >= deadline:
                if progress is None:
                    why = f"no progress file at {path} (is `ckptwatch run` watching this directory?)"
                elif not self._ours(progress):
                    why = f"{path} is from another watcher session ({progress.run_id})"
                else:
                    last = "none yet" if progress.step is None else f"step {progress.step}"
                    why = f"the watcher's last finished save is {last}"
                self._give_up(path, step, f"no verdict within {self.timeout:g} s; {why}")
                return False
            time.sleep(delay)
            delay = min(delay * 2, 0.05)

    def _ours(self, progress: Progress) -> bool:
        from .stopfile import run_id_matches

        return run_id_matches(progress.run_id, self.run_id)

    def _finished(self, progress: Progress, step: int) -> bool:
        """This process's save of ``step`` (or a later one) has had all its after_save runs."""
        for save in reversed(progress.recent):
            if save.step is None or save.step < step:
                continue
            made = save.saved if save.saved is not None else save.committed
            if made is not None and made >= self.since:
                return True
        return False

    def _give_up(self, path: str, step: int, why: str) -> None:
        self._stalled = _fingerprint(path)
        say(f"sync: step {step}: {why}; training goes on (later saves wait again once the watcher's "
            "progress file moves)", logging.WARNING)


def _fingerprint(path: str) -> str:
    try:
        st = os.stat(path)
    except OSError:
        return ""
    return f"{st.st_ino}:{st.st_size}:{st.st_mtime_ns}"
