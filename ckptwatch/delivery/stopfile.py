"""Writing the stop file: how a listener's "stop training" reaches the training job.

The watcher writes it atomically (a temp file in the same directory, fsync,
rename), as JSON that says who asked, at which step and why, and never
deletes it: a request that training has not seen yet must survive a watcher
restart. The format and the reading side (:class:`StopRequest`,
:func:`stop_requested`, which ignores leftovers of earlier runs and requests
of other watcher sessions) live with the training side, in
:mod:`ckptwatch.integrations.stopfile`.

Training usually runs as another user than the watcher (two containers, two
uids), so the file is created as any new file would be: mode 0666 less the
umask (0644 under the usual 022, where mkstemp alone gives 0600), and owned by
the directory's group when the watcher may give it that group (a setgid
directory, a group it belongs to, as Kubernetes' ``fsGroup`` sets up). With
``umask 027`` only that group can read it.
"""

from __future__ import annotations

import json
import os
import re
import time
from typing import Any

from ..dirindex import let_others_run, matching_entries
from ..faults import crash_point
from ..integrations.stopfile import STOP_FILE_NAME, StopRequest, read_stop_file, stop_requested
from ..urls import is_url

__all__ = [
    "STOP_FILE_NAME", "StopRequest", "file_mode", "read_stop_file", "remove_torn_temp_files", "stop_requested",
    "write_stop_file", "write_stop_url",
]


def write_stop_file(path: str, request: StopRequest, storage_options: dict[str, Any] | None = None) -> None:
    """Write ``path`` atomically; a reader sees the old file or the whole new one.

    A URL (``s3://bucket/run/ckptwatch.stop``) is written by one PUT
    (:func:`write_stop_url`); ``storage_options`` are fsspec's for it.
    """
    body = request.to_json()
    if is_url(path):
        write_stop_url(path, (json.dumps(body, ensure_ascii=True, indent=2) + "\n").encode(), storage_options)
        return
    directory = os.path.dirname(os.path.abspath(path))
    os.makedirs(directory, exist_ok=True)
    import tempfile  # rarely needed: not at every start

    fd, tmp = tempfile.mkstemp(prefix=_temp_prefix(path), dir=directory)
    try:
        _share(fd, directory)
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            json.dump(body, handle, ensure_ascii=True, indent=2)
            handle.write("\n")
            handle.flush()
            os.fsync(handle.fileno())
        crash_point("stop-file-rename")
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise


#: Seconds between attempts at a stop file's PUT while the store is unavailable.
URL_RETRIES = (0.5, 1.0, 2.0, 4.0, 8.0)


def _temp_prefix(path: str) -> str:
    return "." + os.path.basename(path) + "."


def remove_torn_temp_files(path: str, older_than_ns: int) -> None:
    """Temp files of the stop file whose rename a crash cut off (the request is journaled as owed).

    Only those older than ``older_than_ns``: a newer one is a write under way.
    The names are matched in C as the directory is read, in constant memory,
    and the reading pauses between slices: the stop file often sits in DIR
    beside a million files, and this runs on a thread beside the engine's.
    """
    folder = os.path.dirname(os.path.abspath(path))
    torn = re.compile(re.escape(_temp_prefix(path)) + ".").match
    try:
        for entries in matching_entries(folder, torn, pause=let_others_run):
            for entry in entries:
                try:
                    if entry.stat(follow_symlinks=False).st_mtime_ns < older_than_ns:
                        os.unlink(entry.path)
                except OSError:
                    pass
    except OSError:
        return


def write_stop_url(url: str, data: bytes, storage_options: dict[str, Any] | None = None) -> None:
    """The one place a stop file at a URL is written: one PUT of the whole body, a few tries.

    An object appears whole or not at all, so the training job, which reads
    the bucket, never sees half a request. Raises OSError when every try failed
    (the journal then keeps the request owed, for the next session).
    """
    from ..urls import MissingProtocol, filesystem, put_bytes

    try:
        fs = filesystem(url, storage_options)
    except MissingProtocol as exc:
        raise OSError(5, str(exc)) from None
    for attempt, pause in enumerate((*URL_RETRIES, None)):
        try:
            put_bytes(url, data, fs=fs)
            return
        except Exception as exc:  # noqa: BLE001 - network, throttling: try again, then give up with the reason
            if pause is None:
                raise OSError(5, f"{type(exc).__name__}: {exc} ({attempt + 1} tries)") from None
            time.sleep(pause)


def file_mode() -> int:
    """The mode ``open()`` gives a new file here: 0o666 less the process's umask."""
    try:
        with open("/proc/self/status", encoding="ascii") as status:
            for line in status:
                if line.startswith("Umask:"):
                    return 0o666 & ~int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    umask = os.umask(0o022)  # no /proc: read it by setting it (and put it back at once)
    os.umask(umask)
    return 0o666 & ~umask


def _share(fd: int, directory: str) -> None:
    """Give the new file the directory's group (where allowed) and a readable mode."""
    try:
        wanted = os.stat(directory).st_gid
        if os.fstat(fd).st_gid != wanted:
            os.fchown(fd, -1, wanted)
    except OSError:  # not a member of that group: the watcher's own group, as any file
        pass
    os.fchmod(fd, file_mode())
