"""The floor: the least a Python watcher can do.

A bare inotify reader (ctypes on libc) that watches DIR for IN_MOVED_TO and,
when `checkpoint` is moved into place, starts LISTENER with subprocess.Popen.

    python bench/floor.py DIR LISTENER
"""

from __future__ import annotations

import ctypes
import os
import struct
import subprocess
import sys

IN_MOVED_TO = 0x00000080
IN_Q_OVERFLOW = 0x00004000
HEADER = struct.Struct("iIII")  # wd, mask, cookie, len


def main(argv: list[str]) -> int:
    if len(argv) != 2 or argv[0] in ("-h", "--help"):
        print(__doc__.strip())
        return 0 if argv[:1] in (["-h"], ["--help"]) else 2
    directory, listener = argv
    libc = ctypes.CDLL(None, use_errno=True)
    fd = libc.inotify_init1(os.O_CLOEXEC)
    if fd < 0:
        raise OSError(ctypes.get_errno(), "inotify_init1")
    if libc.inotify_add_watch(fd, os.fsencode(directory), IN_MOVED_TO) < 0:
        raise OSError(ctypes.get_errno(), "inotify_add_watch", directory)
    running: list[subprocess.Popen] = []
    while True:
        buf = os.read(fd, 65536)
        pos = 0
        while pos < len(buf):
            _wd, mask, _cookie, length = HEADER.unpack_from(buf, pos)
            name = buf[pos + HEADER.size:pos + HEADER.size + length].rstrip(b"\0")
            pos += HEADER.size + length
            if name == b"checkpoint" or mask & IN_Q_OVERFLOW:
                running.append(subprocess.Popen([listener]))
        running = [p for p in running if p.poll() is None]


if __name__ == "__main__":
    try:
        sys.exit(main(sys.argv[1:]))
    except KeyboardInterrupt:
        sys.exit(130)
