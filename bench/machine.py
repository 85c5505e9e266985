"""Facts about this machine and install that move the benchmark's figures.

Two machines "of the same kind" gave different figures for the same code
(issue 15). These are the candidates, measured here so that two machines can
be compared line by line: the CPU (speed of a fixed loop, steal by the
hypervisor, the idle driver that decides how fast a sleeping vCPU wakes), the
disk under the state directory (ckptwatch's journal fsyncs each finished
run), the harness's own timer (how late `time.sleep` wakes), Python, and how
ckptwatch is installed (bytecode compiled or not, an editable install's
import hook).

    python bench/machine.py [--dir DIR] [--ckptwatch CMD] [--json]

bench/run.py keeps the quick ones (no fsync or start-up timing) in its JSON.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import shlex
import subprocess
import sys
import tempfile
import time
from pathlib import Path

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench import stats  # noqa: E402

__all__ = ["facts", "install_facts"]


def _read(path: str) -> str | None:
    try:
        return Path(path).read_text().strip()
    except OSError:
        return None


def _cpu_line() -> list[int]:
    with open("/proc/stat") as f:
        return [int(x) for x in f.readline().split()[1:]]


def steal_pct(seconds: float = 2.0) -> float | None:
    """CPU time the hypervisor gave to others while this VM wanted it, in %, over a short wait."""
    before = _cpu_line()
    time.sleep(seconds)
    after = _cpu_line()
    total = sum(after[:8]) - sum(before[:8])
    return round(100.0 * (after[7] - before[7]) / total, 2) if total > 0 and len(after) > 7 else None


def cpu_loop_ms(reps: int = 15) -> float:
    """A fixed pure-Python loop (the median of `reps`): the speed of one core, as Python sees it."""
    times = []
    for _ in range(reps):
        t0 = time.perf_counter()
        total = 0
        for i in range(200_000):
            total += i & 7
        times.append((time.perf_counter() - t0) * 1000)
    return round(stats.median(times), 2)


def sleep_late_us(seconds: float, reps: int = 100) -> dict:
    """How much later than asked `time.sleep` returns (the harness's own wake-up), in µs."""
    late = []
    for _ in range(reps):
        t0 = time.perf_counter()
        time.sleep(seconds)
        late.append((time.perf_counter() - t0 - seconds) * 1e6)
    return {"p50": round(stats.percentile(late, 50)), "p99": round(stats.percentile(late, 99)),
            "max": round(max(late))}


def fsync_ms(directory: str, reps: int = 100) -> dict:
    """A small append then fsync, as the journal records a finished run: the disk's answer time."""
    times = []
    with tempfile.NamedTemporaryFile(dir=directory, prefix=".bench-fsync-") as f:
        for _ in range(reps):
            f.write(b'{"r": "run", "status": "done"}\n')
            f.flush()
            t0 = time.perf_counter()
            os.fsync(f.fileno())
            times.append((time.perf_counter() - t0) * 1000)
    return {"p50": round(stats.percentile(times, 50), 3), "p99": round(stats.percentile(times, 99), 3),
            "max": round(max(times), 3)}


def _filesystem(directory: str) -> str | None:
    """The type of the file system holding `directory` (the longest mount point above it)."""
    best, kind = "", None
    real = os.path.realpath(directory)
    for line in (_read("/proc/mounts") or "").splitlines():
        parts = line.split()
        if len(parts) > 2 and (real == parts[1] or real.startswith(parts[1].rstrip("/") + "/")) \
                and len(parts[1]) >= len(best):
            best, kind = parts[1], parts[2]
    return kind


def run_ms(argv: list[str], reps: int = 7) -> dict | None:
    """Median wall time of a command, and its CPU time (user + system), which load moves far less."""
    walls, cpus = [], []
    for _ in range(reps):
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        t0 = time.perf_counter()
        try:
            r = subprocess.run(argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                               stderr=subprocess.DEVNULL)
        except OSError:
            return None
        if r.returncode != 0:
            return None
        walls.append((time.perf_counter() - t0) * 1000)
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        cpus.append((after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime) * 1000)
    return {"wall": round(stats.median(walls), 1), "cpu": round(stats.median(cpus), 1)}


def install_facts(python: str = sys.executable) -> dict:
    """How the ckptwatch that `python` imports is installed: where, editable how, bytecode compiled."""
    probe = r"""
import importlib.util, json, os, sys
spec = importlib.util.find_spec("ckptwatch")
out = {"python": sys.version.split()[0], "dont_write_bytecode": sys.dont_write_bytecode}
if spec is None or not spec.origin:
    out["found"] = False
else:
    pkg = os.path.dirname(spec.origin)
    sources = [os.path.join(d, f) for d, _, fs in os.walk(pkg) for f in fs if f.endswith(".py")]
    fresh = 0
    for src in sources:
        pyc = importlib.util.cache_from_source(src)
        try:
            fresh += os.stat(pyc).st_mtime >= os.stat(src).st_mtime
        except OSError:
            pass
    finders = [getattr(f, "__module__", None) or type(f).__module__ for f in sys.meta_path]
    out.update(found=True, package=pkg, modules=len(sources), bytecode_fresh=fresh,
               editable_hook=any("__editable__" in m for m in finders),
               in_site_packages="site-packages" in pkg)
print(json.dumps(out))
"""
    try:
        # From /: a checkout in the current directory would shadow the installed package.
        r = subprocess.run([python, "-c", probe], capture_output=True, text=True, timeout=60, cwd="/")
        return json.loads(r.stdout)
    except (OSError, ValueError, subprocess.TimeoutExpired) as exc:
        return {"error": str(exc)}


def facts(directory: str | None = None, ckptwatch: list[str] | None = None, quick: bool = False) -> dict:
    """Everything above; `quick` leaves out what takes more than a moment or writes to disk."""
    cpuinfo = _read("/proc/cpuinfo") or ""
    model = next((line.split(":", 1)[1].strip() for line in cpuinfo.splitlines()
                  if line.startswith("model name")), None)
    out: dict = {
        "kernel": platform.release(), "cpu": model, "cpus": os.cpu_count(),
        "cpufreq_governor": _read("/sys/devices/system/cpu/cpu0/cpufreq/scaling_governor") or "not exposed",
        "cpuidle_driver": _read("/sys/devices/system/cpu/cpuidle/current_driver"),
        "haltpoll_guest_poll_ns": _read("/sys/module/haltpoll/parameters/guest_halt_poll_ns"),
        "loadavg": os.getloadavg(), "python": sys.version.split()[0],
        "env": {k: os.environ[k] for k in ("PYTHONDONTWRITEBYTECODE", "PYTHONPYCACHEPREFIX",
                                          "SOURCE_DATE_EPOCH") if k in os.environ},
        "cpu_loop_ms": cpu_loop_ms(5 if quick else 15),
    }
    if quick:
        return out
    out["steal_pct_2s"] = steal_pct()
    out["sleep_10ms_late_us"] = sleep_late_us(0.010)
    out["sleep_2ms_late_us"] = sleep_late_us(0.002)
    d = directory or tempfile.gettempdir()
    out["fsync_dir"] = d
    out["fsync_fs"] = _filesystem(d)
    out["fsync_ms"] = fsync_ms(d)
    out["python_c_pass_ms"] = run_ms([sys.executable, "-c", "pass"])
    if ckptwatch:
        out["ckptwatch_run_help_ms"] = run_ms(ckptwatch + ["run", "--help"])
        exe = Path(ckptwatch[0])
        python = ckptwatch[0] if "python" in exe.name else str(exe.parent / "python")
        if Path(python).exists():
            out["install"] = install_facts(python)
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.strip().splitlines()[0])
    p.add_argument("--dir", help="where the state directory would be (fsync is timed there; default: $TMPDIR)")
    p.add_argument("--ckptwatch", help="the ckptwatch command (default: next to this Python, else on PATH)")
    p.add_argument("--json", action="store_true", help="one JSON object instead of lines")
    args = p.parse_args(argv)
    if args.ckptwatch:
        command = shlex.split(args.ckptwatch)
    else:
        sibling = Path(sys.executable).parent / "ckptwatch"
        command = [str(sibling)] if sibling.exists() else ["ckptwatch"]
    found = facts(args.dir, command)
    if args.json:
        print(json.dumps(found, indent=1))
    else:
        for key, value in found.items():
            print(f"{key:<24} {json.dumps(value) if isinstance(value, (dict, list, tuple)) else value}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
