"""Object stores: what a poll costs, commit -> listener latency at --poll 1, idle CPU; ckptwatch against a
plain fsspec polling loop (and ``tf.train.checkpoints_iterator`` where TensorFlow reaches the emulated bucket).

Everything runs against moto's S3 server on the loopback (``tests/objservers.py``), through a small
proxy that counts the HTTP requests each tool really makes (not what it says it makes).

- **requests per poll** at 10, 100 and 1,000 committed checkpoints, for a layout whose markers are at
  the top (``tf``: ``checkpoint`` and ``.index`` objects) and one whose markers are inside each checkpoint
  (``hf``: ``checkpoint-N/trainer_state.json``, 5 objects a checkpoint): the first look, then over the
  next ``--polls`` intervals the requests the proxy counted divided by the looks made (ckptwatch's debug
  lines, the loop's rounds), and ckptwatch's largest poll by its own count. The plain loop lists the top and asks for each
  checkpoint's marker at every poll (``fs.ls`` + ``fs.exists`` per checkpoint), which is what a watcher
  that does not keep what it learnt must do; the TF iterator reads the state file only.
- **latency**: Trainer saves (``trainer_state.json`` written last) at random points of the 1 s period; from
  just before the marker's PUT to the listener's first line (bash ``$EPOCHREALTIME``).
- **idle CPU**: each tool watching ``--latency-checkpoints`` (100) committed checkpoints for ``--idle-seconds``,
  polling every 1 s;
  CPU of its process tree in % of one core.

    python bench/objstore.py                       # a few minutes
    python bench/objstore.py --quick               # smaller counts
    python bench/objstore.py --tf-python .venv-interop/bin/python   # add the TF iterator (gs:// emulator)
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "tests"))
sys.path.insert(0, str(HERE))

from objservers import GCSServer, Proxy, S3Server  # noqa: E402
from procs import cpu_seconds_between, cpu_ticks, tree  # noqa: E402

BUCKET = "bench"
LISTENER = r"""#!/bin/bash
# ckptwatch: events=after_save
t=$EPOCHREALTIME
case "${1-}" in ''|after_save) ;; *) exit 0 ;; esac
printf '%s %s\n' "$t" "${CKPTWATCH_STEP:-${BENCH_STEP:-?}}" >> "$BENCH_RECORDS"
"""

FSSPEC_LOOP = r'''
"""A plain fsspec polling loop: list the top, ask for each checkpoint's marker, run the listener for new ones."""
import os, subprocess, sys, time
import fsspec
url, interval, listener = sys.argv[1], float(sys.argv[2]), sys.argv[3]
fs = fsspec.filesystem("s3", skip_instance_cache=True, use_listings_cache=False)
root = url.split("://", 1)[1]
seen = set()
first = True
while True:
    try:
        names = [p.rsplit("/", 1)[-1] for p in fs.ls(root, detail=False)]
    except FileNotFoundError:
        names = []
    for name in sorted(n for n in names if n.startswith("checkpoint-")):
        if name in seen:
            if fs.exists(f"{root}/{name}/trainer_state.json"):  # still there, still committed
                continue
            seen.discard(name)
        elif fs.exists(f"{root}/{name}/trainer_state.json"):
            seen.add(name)
            if not first:
                subprocess.Popen([listener, "after_save"], env=dict(os.environ, BENCH_STEP=name.split("-")[1]))
    first = False
    print("round", flush=True)
    time.sleep(interval)
'''

TF_ITERATOR = r'''
import os, subprocess, sys
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
import tensorflow as tf
url, listener = sys.argv[1], sys.argv[2]
for path in tf.train.checkpoints_iterator(url, min_interval_secs=1):
    subprocess.Popen([listener, "after_save"], env=dict(os.environ, BENCH_STEP=path.rsplit("-", 1)[1]))
'''


def fill(fs, root: str, layout: str, count: int) -> None:
    if layout == "hf":
        fs.pipe({f"{root}/checkpoint-{s}/{name}": (b"{}" if name == "trainer_state.json" else b"x")
                 for s in range(1, count + 1)
                 for name in ("config.json", "model.safetensors", "optimizer.pt", "scheduler.pt", "trainer_state.json")})
    else:
        objects = {}
        for s in range(1, count + 1):
            objects[f"{root}/ckpt-{s}.index"] = b"i"
            objects[f"{root}/ckpt-{s}.data-00000-of-00001"] = b"d"
        kept = range(max(1, count - 4), count + 1)
        body = f'model_checkpoint_path: "ckpt-{count}"\n' + "".join(f'all_model_checkpoint_paths: "ckpt-{s}"\n'
                                                                      for s in kept)
        objects[f"{root}/checkpoint"] = body.encode()
        fs.pipe(objects)


class Tool:
    """One watcher process, its commands and environment."""

    def __init__(self, name: str, argv: list[str], env: dict[str, str], log: Path) -> None:
        self.name, self.argv, self.env, self.log = name, argv, env, log
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        with open(self.log, "wb") as out:
            self.proc = subprocess.Popen(self.argv, env=self.env, stdout=out, stderr=subprocess.STDOUT,
                                         stdin=subprocess.DEVNULL, start_new_session=True)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            os.killpg(self.proc.pid, 15)
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, 9)
                self.proc.wait()


def ckptwatch_tool(url: str, work: Path, env: dict[str, str], interval: float, listener: Path | None,
                   extra: list[str]) -> Tool:
    args = [sys.executable, "-m", "ckptwatch", "run", url, "--poll", str(interval), "--log-format", "json",
            "--state-dir", str(work / "state"), *extra]
    if listener is not None:
        args += ["-l", str(listener)]
    return Tool("ckptwatch", args, {**env, "CKPTWATCH_DEBUG": "1", "PYTHONPATH": str(HERE.parent)}, work / "ckptwatch.log")


def fsspec_tool(url: str, work: Path, env: dict[str, str], interval: float, listener: Path) -> Tool:
    script = work / "fsspec_loop.py"
    script.write_text(FSSPEC_LOOP)
    return Tool("fsspec loop", [sys.executable, str(script), url, str(interval), str(listener)], env,
                work / "fsspec.log")


def wait_ready(tool: Tool, proxy: Proxy, timeout: float = 120) -> None:
    """Ready: ckptwatch says so; the loop has made its first full round (the proxy count moves, then rests)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if tool.name == "ckptwatch" and '"kind": "ready"' in tool.log.read_text(errors="replace"):
            return
        if tool.name != "ckptwatch" and proxy.count() > 0:
            time.sleep(2.0)
            return
        time.sleep(0.05)
    raise RuntimeError(f"{tool.name} not ready:\n{tool.log.read_text(errors='replace')[-2000:]}")


def requests_per_poll(layout: str, count: int, tool_name: str, polls: int, work: Path) -> dict:
    # A server of its own per row (moto keeps the data per process): nothing left of an earlier row
    # (a connection kept alive, a process slow to exit) can reach this row's proxy and count.
    server = S3Server().start()
    proxy = Proxy(server.port)
    fs = server.filesystem()
    root = f"{BUCKET}/{layout}-{count}-{tool_name.replace(' ', '')}"
    fill(fs, root, layout, count)
    env = {**os.environ, **server.env(proxy.endpoint)}
    interval = 0.5
    listener = work / "noop.sh"
    listener.write_text("#!/bin/sh\nexit 0\n")
    listener.chmod(0o755)
    if tool_name == "ckptwatch":
        tool = ckptwatch_tool(f"s3://{root}", work, env, interval, None, ["--start-from", "now", "--layout", layout])
    else:
        tool = fsspec_tool(f"s3://{root}", work, env, interval, listener)
    started = proxy.count()
    tool.start()
    mark = '"kind": "debug"' if tool_name == "ckptwatch" else "round"
    try:
        wait_ready(tool, proxy)
        first = proxy.count() - started
        looks = tool.log.read_text(errors="replace").count(mark)
        before = proxy.count()
        time.sleep(polls * interval)
        requests = proxy.count() - before
        looks = tool.log.read_text(errors="replace").count(mark) - looks
    finally:
        tool.stop()
        proxy.close()
        server.stop()
    steady = [int(line.split('"requests": ')[1].split(",")[0]) for line in tool.log.read_text().splitlines()
              if '"kind": "debug"' in line][1:] if tool_name == "ckptwatch" else []
    return {"tool": tool_name, "layout": layout, "checkpoints": count, "first_look": first,
            "polls": looks, "per_poll_mean": round(requests / max(1, looks), 1),
            "per_poll_max": max(steady) if steady else None}


def latency(server: S3Server, tool_name: str, saves: int, work: Path, idle_seconds: float, checkpoints: int) -> dict:
    fs = server.filesystem()
    root = f"{BUCKET}/latency-{tool_name.replace(' ', '')}-{checkpoints}"
    fill(fs, root, "hf", checkpoints)
    records = work / f"records-{tool_name.replace(' ', '')}.txt"
    records.unlink(missing_ok=True)
    listener = work / "listener.sh"
    listener.write_text(LISTENER)
    listener.chmod(0o755)
    env = {**os.environ, **server.env(), "BENCH_RECORDS": str(records)}
    if tool_name == "ckptwatch":
        tool = ckptwatch_tool(f"s3://{root}", work, env, 1.0, listener, ["--start-from", "now", "--layout", "hf"])
    else:
        tool = fsspec_tool(f"s3://{root}", work, env, 1.0, listener)
    proxy = Proxy(server.port)  # readiness only
    tool.start()
    samples = []
    cpu = None
    try:
        wait_ready(tool, proxy, 300)
        time.sleep(2.0)
        pids = tree(tool.proc.pid)
        before = cpu_ticks(pids)
        t0 = time.monotonic()
        time.sleep(idle_seconds)
        cpu = 100.0 * cpu_seconds_between(before, cpu_ticks(tree(tool.proc.pid))) / (time.monotonic() - t0)
        for i in range(saves):
            step = 100_000 + i
            time.sleep(random.uniform(0.0, 1.0))
            folder = f"{root}/checkpoint-{step}"
            fs.pipe({f"{folder}/config.json": b"{}", f"{folder}/model.safetensors": b"x"})
            t_commit = time.time_ns()
            fs.pipe_file(f"{folder}/trainer_state.json", json.dumps({"global_step": step}).encode())
            deadline = time.monotonic() + 10
            while time.monotonic() < deadline:
                found = [line.split() for line in records.read_text().splitlines()] if records.exists() else []
                hit = [float(t) for t, s in found if s == str(step)]
                if hit:
                    samples.append((hit[0] * 1e9 - t_commit) / 1e6)
                    break
                time.sleep(0.01)
    finally:
        tool.stop()
        proxy.close()
    samples.sort()
    pct = (lambda q: samples[min(len(samples) - 1, int(q * len(samples)))]) if samples else (lambda q: float("nan"))
    return {"tool": tool_name, "n": f"{len(samples)}/{saves}", "p50_ms": round(pct(0.5), 1),
            "p90_ms": round(pct(0.9), 1), "max_ms": round(samples[-1], 1) if samples else None,
            "mean_ms": round(statistics.fmean(samples), 1) if samples else None,
            "idle_cpu_pct": round(cpu, 2) if cpu is not None else None}


def tf_reachable(tf_python: str | None) -> str | None:
    """None when TensorFlow can list a bucket of the GCS emulator; else why not."""
    if not tf_python:
        return "no --tf-python given"
    gcs = GCSServer(BUCKET).start()
    try:
        code = ("import os; os.environ['TF_CPP_MIN_LOG_LEVEL']='3'; import tensorflow as tf; "
                f"tf.io.gfile.makedirs('gs://{BUCKET}/probe'); print(tf.io.gfile.listdir('gs://{BUCKET}/'))")
        env = {**os.environ, **gcs.env(), "GCS_READ_CACHE_MAX_SIZE_MB": "0"}
        try:
            result = subprocess.run([tf_python, "-c", code], capture_output=True, text=True, timeout=120, env=env)
        except subprocess.TimeoutExpired:
            return "TensorFlow's GCS file system did not answer within 120 s against the emulator"
        if result.returncode != 0:
            last = (result.stderr.strip().splitlines() or ["?"])[-1]
            return f"TensorFlow's GCS file system cannot use the emulator (STORAGE_EMULATOR_HOST): {last[:200]}"
        return None
    finally:
        gcs.stop()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--counts", default="10,100,1000")
    parser.add_argument("--polls", type=int, default=12)
    parser.add_argument("--saves", type=int, default=30)
    parser.add_argument("--idle-seconds", type=float, default=20.0)
    parser.add_argument("--tf-python", default=None)
    parser.add_argument("--latency-checkpoints", type=int, default=100,
                        help="committed checkpoints beside the latency saves (and while idle)")
    parser.add_argument("--phases", default="requests,latency", help="requests, latency, or both")
    parser.add_argument("--out", default=str(HERE / "objstore-results.json"))
    args = parser.parse_args()
    if args.quick:
        args.polls, args.saves, args.idle_seconds = 6, 10, 8.0
    work = Path(tempfile.mkdtemp(prefix="ckptwatch-objbench-"))
    server = S3Server().start()
    server.filesystem().mkdir(BUCKET)
    results: dict = {"requests": [], "latency": [], "tf_iterator": None}
    try:
        why = tf_reachable(args.tf_python)
        results["tf_iterator"] = why or "reachable"
        print(f"tf.train.checkpoints_iterator: {why or 'reachable (not yet wired: see README)'}", file=sys.stderr)
        print(f"{'tool':<12} {'layout':<6} {'ckpts':>6} {'first look':>10} {'polls':>6} {'per poll (mean)':>16} "
              f"{'per poll (max)':>15}")
        for layout in ("tf", "hf") if "requests" in args.phases else ():
            for count in (int(c) for c in args.counts.split(",")):
                for tool in ("ckptwatch", "fsspec loop"):
                    if tool == "fsspec loop" and layout == "tf":
                        continue  # the plain loop knows Trainer directories only
                    row = requests_per_poll(layout, count, tool, args.polls, work)
                    results["requests"].append(row)
                    print(f"{tool:<12} {layout:<6} {count:>6} {row['first_look']:>10} {row['polls']:>6} "
                          f"{row['per_poll_mean']:>16} {row['per_poll_max']!s:>15}", flush=True)
        print(f"\n{'tool':<12} {'n':>6} {'p50 ms':>8} {'p90 ms':>8} {'max ms':>8} {'mean ms':>8} {'idle CPU %':>10}")
        for tool in ("ckptwatch", "fsspec loop") if "latency" in args.phases else ():
            row = latency(server, tool, args.saves, work, args.idle_seconds, args.latency_checkpoints)
            results["latency"].append(row)
            print(f"{tool:<12} {row['n']:>6} {row['p50_ms']:>8} {row['p90_ms']:>8} {row['max_ms']!s:>8} "
                  f"{row['mean_ms']!s:>8} {row['idle_cpu_pct']!s:>10}", flush=True)
    finally:
        server.stop()
        shutil.rmtree(work, ignore_errors=True)
    Path(args.out).write_text(json.dumps(results, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
