"""Which file system DIR is on, and whether native notifications can be trusted there.

inotify reports only what the local kernel sees: on NFS, SMB, FUSE mounts
(s3fs, gcsfuse) and cluster file systems, a save made by another host (or by
the FUSE daemon) sends no event. There ckptwatch scans on a timer instead.
"""

from __future__ import annotations

import os
import re

__all__ = ["NO_NOTIFICATIONS", "filesystem_type", "needs_polling"]

#: File system types whose changes from elsewhere send no inotify event.
NO_NOTIFICATIONS = frozenset(
    {
        "nfs", "nfs4", "cifs", "smb3", "smbfs", "9p", "ceph", "glusterfs", "lustre", "gpfs",
        "beegfs", "afs", "fuse", "fuseblk", "ocfs2", "gfs2", "panfs", "wekafs", "davfs",
    }
)


def _unescape(field: str) -> str:
    """mountinfo escapes space, tab, newline and backslash as three octal digits."""
    return re.sub(r"\\([0-7]{3})", lambda m: chr(int(m.group(1), 8)), field)


def filesystem_type(path: str, mountinfo: str = "/proc/self/mountinfo") -> str | None:
    """The type of the file system ``path`` is on (``ext4``, ``nfs4``, ``fuse.gcsfuse``), or None."""
    target = os.path.realpath(path)
    best: tuple[int, str] | None = None
    try:
        with open(mountinfo, encoding="utf-8", errors="surrogateescape") as handle:
            for line in handle:
                fields = line.split()
                try:
                    mount_point = _unescape(fields[4])
                    fstype = fields[fields.index("-") + 1]
                except (IndexError, ValueError):
                    continue
                inside = target == mount_point or target.startswith(mount_point.rstrip("/") + "/")
                if inside and (best is None or len(mount_point) >= best[0]):
                    best = (len(mount_point), fstype)
    except OSError:
        return None
    return best[1] if best else None


def needs_polling(fstype: str | None) -> bool:
    if not fstype:
        return False
    return fstype in NO_NOTIFICATIONS or fstype.startswith("fuse.")
