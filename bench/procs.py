"""A tool's process tree, from /proc: CPU time, RSS, and stopping it."""

from __future__ import annotations

import os
import signal
import subprocess
import time

CLK_TCK = os.sysconf("SC_CLK_TCK")
PAGE = os.sysconf("SC_PAGE_SIZE")


def _stat(pid: int) -> list[str] | None:
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            data = f.read().decode(errors="replace")
    except OSError:
        return None
    # comm is in parentheses and may hold spaces: split after the last ')'.
    return data[data.rfind(")") + 2:].split()


def tree(root: int) -> list[int]:
    """root and all its descendants alive now."""
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        f = _stat(int(entry))
        if f is None:
            continue
        children.setdefault(int(f[1]), []).append(int(entry))
    out, todo = [], [root]
    while todo:
        pid = todo.pop()
        out.append(pid)
        todo.extend(children.get(pid, ()))
    return out


def cpu_ticks(pids: list[int]) -> dict[int, int]:
    """utime+stime+cutime+cstime per pid (children reaped by a pid count in its c-times)."""
    out = {}
    for pid in pids:
        f = _stat(pid)
        if f is not None:
            out[pid] = int(f[11]) + int(f[12]) + int(f[13]) + int(f[14])
    return out


def cpu_seconds_between(before: dict[int, int], after: dict[int, int]) -> float:
    """CPU seconds used by the tree between two cpu_ticks() snapshots.

    A process gone by `after` was reaped by its parent, whose c-times then hold
    all of its time; so its `before` share is subtracted and nothing is lost.
    """
    ticks = sum(after.values()) - sum(before.values())
    return ticks / CLK_TCK


def memory(pids: list[int]) -> dict:
    """Sum over the tree of RSS and PSS (MiB), and the largest peak RSS of one process."""
    rss = pss = hwm = 0
    n = 0
    for pid in pids:
        try:
            with open(f"/proc/{pid}/status") as f:
                for line in f:
                    if line.startswith("VmRSS:"):
                        rss += int(line.split()[1])
                    elif line.startswith("VmHWM:"):
                        hwm = max(hwm, int(line.split()[1]))
            n += 1
        except OSError:
            continue
        try:
            with open(f"/proc/{pid}/smaps_rollup") as f:
                for line in f:
                    if line.startswith("Pss:"):
                        pss += int(line.split()[1])
                        break
        except OSError:
            pass
    return {"rss_mib": rss / 1024, "pss_mib": pss / 1024,
            "max_process_peak_rss_mib": hwm / 1024, "processes": n}


def stop(proc: subprocess.Popen, grace: float = 25.0) -> dict:
    """SIGTERM the tool's process group, wait, then SIGKILL whatever of its tree is left."""
    if proc.poll() is not None:
        return {"exit": proc.returncode, "killed": False, "already_exited": True}
    pids = tree(proc.pid)
    try:
        os.killpg(proc.pid, signal.SIGTERM)
    except ProcessLookupError:
        pass
    killed = False
    try:
        proc.wait(timeout=grace)
    except subprocess.TimeoutExpired:
        killed = True
    leftovers = [p for p in pids if p != proc.pid and _stat(p) is not None]
    for pid in ([proc.pid] if killed else []) + leftovers:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass
    if killed:
        proc.wait(timeout=10)
    time.sleep(0.05)
    return {"exit": proc.returncode, "killed": killed, "already_exited": False}
