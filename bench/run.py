"""ckptwatch benchmark: commit-to-listener latency, bursts, idle cost, start-up.

    python bench/run.py [--quick] [--tools floor,watchmedo,...] [--out PATH] [--repeat K]

Every tool watches a directory where this process saves TensorFlow-style
checkpoints, and starts the same bash listener on each commit. Two row sets,
each with its own floor: `after_save` (Saver-style saves, a listener that
subscribes to after_save only) and `realistic` (TF2 CheckpointManager-style
saves with rotation, a listener that takes all four events). See
bench/README.md for what each column means.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import shlex
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench import machine, procs, scenario, stats, summary  # noqa: E402
from bench.tools import Tool, all_tools, default_ckptwatch_command, env_for_tools  # noqa: E402

HERE = Path(__file__).resolve().parent

WARM_BASE = 1            # warm-up steps in a fresh directory
LAT_BASE = 100_000       # latency phase steps
BURST_BASE = 200_000     # burst phase steps
IDLE_WARM_BASE = 10_000_000  # warm-up steps in the idle directory (above its checkpoints)


def log(msg: str = "") -> None:
    print(msg, file=sys.stderr, flush=True)


class NotMeasured(Exception):
    """A phase could not be measured; the message says why (shown as n/a)."""


@dataclass(frozen=True)
class RowSet:
    """One kind of save and listener; every tool of the set, its floor included, gets the same."""

    name: str
    title: str
    all_events: bool     # the listener takes all four events (ckptwatch runs it for each)
    manager: bool        # saves as TF2's CheckpointManager (else as Saver, with --rotate/--sharded)
    idle_window: bool    # measure idle CPU and RSS (else only ready(big) in the idle directory)

    def writer(self, directory: Path, args, initial: list[int] | None = None) -> scenario.Writer:
        if self.manager:
            return scenario.ManagerWriter(directory, keep=args.keep, lead=args.lead_ms / 1000,
                                          initial=initial)
        return scenario.Writer(directory, keep=args.keep, rotate=args.rotate, sharded=args.sharded,
                               initial=initial)


ROW_SETS = {
    "after_save": RowSet(
        "after_save", "Saver-style saves (data, then `checkpoint` renamed in); "
        "the listener subscribes to after_save only", all_events=False, manager=False, idle_window=True),
    "realistic": RowSet(
        "realistic", "TF2 CheckpointManager-style saves (ckpt-N_temp/ renamed out, data in place "
        "--lead-ms before `checkpoint` is renamed in, rotation); the listener takes all four events",
        all_events=True, manager=True, idle_window=False),
}


class Session:
    """One running tool watching one directory, with its listener and records."""

    def __init__(self, tool: Tool, watch_dir: Path, work: Path, writer: scenario.Writer,
                 all_events: bool = False):
        self.tool = tool
        self.dir = watch_dir
        self.work = work
        self.writer = writer
        work.mkdir(parents=True, exist_ok=True)
        self.records = scenario.Records(work / "records.txt")
        if tool.listener_in_dir:
            listener = tool.write_listener(work / "listeners.d" / "10-bench", watch_dir,
                                           self.records.path, all_events)
            self.listener_arg = listener.parent
        else:
            self.listener_arg = tool.write_listener(work / "listener.sh", watch_dir,
                                                    self.records.path, all_events)
        self.log_path = work / "tool.log"
        self.proc: subprocess.Popen | None = None
        self.t_spawn = 0

    def start(self) -> None:
        argv = self.tool.argv(self.dir, self.listener_arg, self.work)
        (self.work / "argv.json").write_text(json.dumps(argv))
        self._log = open(self.log_path, "wb")
        self.t_spawn = time.time_ns()
        self.proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=self._log,
                                     stderr=subprocess.STDOUT, cwd=self.work,
                                     env=env_for_tools(), start_new_session=True)

    def check_alive(self) -> None:
        if self.proc.poll() is not None:
            raise NotMeasured(f"tool exited with status {self.proc.returncode}: "
                              f"{self.log_tail()}")

    def ready_line_ms(self) -> float | None:
        """ckptwatch only: from spawning it to the time on its own "ready" log line (JSON log)."""
        try:
            with open(self.log_path, errors="replace") as f:
                for line in f:
                    if '"ready"' in line:
                        rec = json.loads(line)
                        if rec.get("kind") == "ready":
                            return (rec["time"] * 1e9 - self.t_spawn) / 1e6
        except (OSError, ValueError, KeyError, TypeError):
            pass
        return None

    def log_tail(self, n: int = 3) -> str:
        try:
            lines = self.log_path.read_text(errors="replace").strip().splitlines()
        except OSError:
            return ""
        return " | ".join(x.strip()[:200] for x in lines[-n:]) or "(no output)"

    def wait_ready(self, base: int, spacing: float = 0.010) -> dict:
        """Warm-up commits until one reaches the listener; the tool is then ready.

        One commit every `spacing` seconds for 2 s, then every 50 ms: the spacing
        bounds the resolution of the figure (a tool ready just after a commit
        waits for the next one).
        """
        deadline = time.monotonic() + self.tool.ready_timeout
        started = time.monotonic()
        step = base
        warm = set()
        while time.monotonic() < deadline:
            self.check_alive()
            self.writer.commit(step, lead=0)
            warm.add(step)
            step += 1
            time.sleep(spacing if time.monotonic() - started < 2 else 0.050)
            self.records.poll()
            hits = [r for r in self.records.all if r.step in warm]
            if hits:
                first = min(hits, key=lambda r: r.t_ns)
                cpu = procs.cpu_ticks(procs.tree(self.proc.pid))
                return {"ready_ms": (first.t_ns - self.t_spawn) / 1e6,
                        "warmup_commits": len(warm),
                        "cpu_s_to_ready": sum(cpu.values()) / procs.CLK_TCK}
        self.check_alive()
        raise NotMeasured(f"no warm-up commit reached the listener within "
                          f"{self.tool.ready_timeout:.0f} s: {self.log_tail()}")

    def settle(self, quiet: float, limit: float) -> None:
        """Wait until no listener record has come for `quiet` seconds (at most `limit`)."""
        end = time.monotonic() + limit
        last = time.monotonic()
        while time.monotonic() < end:
            if self.records.poll():
                last = time.monotonic()
            elif time.monotonic() - last >= quiet:
                return
            time.sleep(0.02)

    def stop(self) -> dict:
        if self.proc is None:
            return {}
        out = procs.stop(self.proc)
        self._log.close()
        return out


def quiet_for(tool: Tool) -> float:
    return 2 * tool.poll_interval + 1.0 if tool.slow else 0.5


# --------------------------------------------------------------------------- phases

def phase_help(tool: Tool, reps: int) -> dict:
    times, codes = [], set()
    for _ in range(reps):
        t0 = time.perf_counter_ns()
        r = subprocess.run(tool.help_argv(), stdin=subprocess.DEVNULL,
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        times.append((time.perf_counter_ns() - t0) / 1e6)
        codes.add(r.returncode)
    return {"help_ms": stats.median(times), "help_ms_all": times,
            "help_exit": sorted(codes), "help_argv": tool.help_argv()}


class Latency:
    """The latency saves of one session: one commit at a time, each waited for alone."""

    def __init__(self, s: Session, args):
        self.s = s
        self.args = args
        self.commits: dict[int, int] = {}
        self.samples: list[float] = []
        self.missed: list[int] = []
        self.replace_ms: list[float] = []  # how long each commit's os.replace appeared to take
        self.first_index = len(s.records.all)

    def save(self, step: int) -> None:
        s, tool, args = self.s, self.s.tool, self.args
        t_c = s.writer.commit(step)
        self.commits[step] = t_c
        self.replace_ms.append(s.writer.last_replace_ns / 1e6)
        if tool.slow:
            time.sleep(args.gap_ms / 1000)
        else:
            time.sleep((args.gap_ms + random.uniform(0, args.jitter_ms)) / 1000)
        deadline = time.monotonic() + tool.latency_timeout
        while True:
            s.records.poll()
            rec = s.records.first(step)
            if rec is not None or time.monotonic() > deadline:
                break
            s.check_alive()
            time.sleep(0.005 if tool.slow else 0.002)
        if rec is None:
            self.missed.append(step)
        else:
            self.samples.append((rec.t_ns - t_c) / 1e6)
        if tool.slow:
            # Commits land at a random point of the tool's polling period.
            time.sleep(random.uniform(0, args.slow_jitter_ms) / 1000)

    def result(self) -> dict:
        s, n = self.s, len(self.commits)
        s.settle(quiet_for(s.tool), 10)
        recs = [r for r in s.records.all[self.first_index:] if r.step in self.commits]
        distinct = {r.step for r in recs}
        out = {"latency_ms": stats.summary(self.samples), "latency_saves": n,
               "latency_missed": len(self.missed), "latency_runs": len(recs),
               "latency_doubled": len(recs) - len(distinct),
               "replace_ms": stats.summary(self.replace_ms),
               "latency_samples_ms": [round(x, 4) for x in self.samples]}
        if not self.samples:
            raise NotMeasured(f"none of {n} commits reached the listener within "
                              f"{s.tool.latency_timeout:.0f} s")
        return out


def phase_latency(s: Session, n: int, args) -> dict:
    lat = Latency(s, args)
    for i in range(n):
        lat.save(LAT_BASE + i)
    return lat.result()


def phase_latency_paired(sessions: list[Session], n: int, args) -> list[dict | NotMeasured]:
    """The same, for two tools alive at once, their saves alternating (ABBA...): load that
    comes and goes in a shared machine falls on both alike, so their difference holds."""
    lats = [Latency(s, args) for s in sessions]
    for i in range(n):
        for lat in (lats if i % 2 == 0 else lats[::-1]):
            lat.save(LAT_BASE + i)
    out: list[dict | NotMeasured] = []
    for lat in lats:
        try:
            out.append(lat.result())
        except NotMeasured as e:
            out.append(e)
    return out


def phase_burst(s: Session, n: int, args) -> dict:
    first_index = len(s.records.all)
    steps = list(range(BURST_BASE, BURST_BASE + n))
    t0 = time.time_ns()
    for step in steps:
        s.writer.commit(step, lead=0)
    t1 = time.time_ns()
    s.settle(max(quiet_for(s.tool), 1.0), args.burst_timeout)
    s.check_alive()
    committed = set(steps)
    recs = sorted(s.records.all[first_index:], key=lambda r: r.t_ns)
    mine = [r for r in recs if r.step in committed]
    distinct = {r.step for r in mine}
    inversions, high = 0, -1
    for r in mine:
        if r.step < high:
            inversions += 1
        high = max(high, r.step)
    out = {
        "burst_commits": n,
        "burst_commit_ms": (t1 - t0) / 1e6,
        "burst_runs": len(recs),
        "burst_runs_unknown_step": len(recs) - len(mine),
        "burst_delivered": len(distinct),
        "burst_missed": n - len(distinct),
        "burst_doubled": len(mine) - len(distinct),
        "burst_inversions": inversions,
        "burst_in_order": inversions == 0,
        "burst_drain_ms": ((recs[-1].t_ns - t0) / 1e6) if recs else None,
        "burst_step_from": sorted({r.src for r in recs}),
    }
    return out


def after_saves_logged(log_path: Path, steps: set[int]) -> tuple[int, dict[str, int]]:
    """From ckptwatch's JSON log: after_save events it dispatched for `steps`, and its runs'
    outcomes ("vanished": rotation deleted the checkpoint before the listener's turn)."""
    dispatched, outcomes = 0, {}
    try:
        lines = log_path.read_text(errors="replace").splitlines()
    except OSError:
        return 0, {}
    for line in lines:
        if '"after_save"' not in line:
            continue
        try:
            rec = json.loads(line)
        except ValueError:
            continue
        if rec.get("event") != "after_save" or rec.get("step") not in steps:
            continue
        if rec.get("kind") == "event":
            dispatched += 1
        elif rec.get("kind") == "run":
            outcome = str(rec.get("outcome"))
            outcomes[outcome] = outcomes.get(outcome, 0) + 1
    return dispatched, outcomes


def open_session(tool: Tool, work: Path, args, rs: RowSet) -> tuple[Session, dict]:
    """A fresh directory and the tool started on it, ready (raises NotMeasured when it never is)."""
    d = work / "ckpt"
    d.mkdir(parents=True)
    s = Session(tool, d, work / "tool", rs.writer(d, args), rs.all_events)
    res: dict = {"notes": [], "warm_listener": getattr(tool, "kind", None) == "class"}
    try:
        s.start()
        res.update(s.wait_ready(WARM_BASE, args.warmup_ms / 1000))
        s.settle(quiet_for(tool), 30)
    except NotMeasured as e:
        res["ready_na"] = str(e)
        stop_session(s, res)
        raise NotReady(res) from None
    return s, res


class NotReady(Exception):
    """The tool never became ready; `res` says why (ready_na) and holds its stop and log tail."""

    def __init__(self, res: dict):
        super().__init__(res.get("ready_na"))
        self.res = res


def close_session(s: Session, res: dict, args, rs: RowSet, work: Path) -> dict:
    """Burst, memory, stop; then more starts for ready alone."""
    tool = s.tool
    try:
        try:
            res.update(phase_burst(s, args.burst, args))
        except NotMeasured as e:
            res["burst_na"] = str(e)
        tree = procs.tree(s.proc.pid)
        res["rss_after_burst"] = procs.memory(tree)
        # A warm listener's own process (ckptwatch-class): a child of the watcher that outlives runs.
        res["listener_memory"] = procs.memory([pid for pid in tree if pid != s.proc.pid])
    except NotMeasured as e:
        res["burst_na"] = str(e)
    finally:
        stop_session(s, res)
    if "ready_ms" in res and not tool.slow and args.ready_reps > 1:
        res.update(phase_ready_reps(tool, work, args, rs, res["ready_ms"]))
    return res


def stop_session(s: Session, res: dict) -> None:
    if "stop" in res:
        return
    res["stop"] = s.stop()
    res["log_tail"] = s.log_tail(5)
    if s.tool.step_from == "ckptwatch":
        res["ready_line_ms"] = s.ready_line_ms()
        if "burst_commits" in res:  # read once ckptwatch has stopped: its log is whole then
            steps = set(range(BURST_BASE, BURST_BASE + res["burst_commits"]))
            res["burst_dispatched"], res["burst_outcomes"] = after_saves_logged(s.log_path, steps)


def run_main_phases(tool: Tool, work: Path, args, rs: RowSet) -> dict:
    """Fresh directory: ready, latency, burst; then more starts for ready alone."""
    try:
        s, res = open_session(tool, work, args, rs)
    except NotReady as e:
        return e.res
    try:
        res.update(phase_latency(s, args.slow_saves if tool.slow else args.saves, args))
    except NotMeasured as e:
        res["latency_na"] = str(e)
    return close_session(s, res, args, rs, work)


def run_pair(tools: list[Tool], work: Path, args, rs: RowSet) -> dict[str, dict]:
    """The floor and ckptwatch, each started alone (ready), then their latency saves interleaved."""
    opened: list[tuple[Tool, Session, dict]] = []
    out: dict[str, dict] = {}
    for tool in tools:
        log(f"{rs.name}: ready: {tool.name} ...")
        try:
            s, res = open_session(tool, work / tool.name, args, rs)
            opened.append((tool, s, res))
        except NotReady as e:
            out[tool.name] = e.res
    try:
        log(f"{rs.name}: latency, {args.saves} saves each, alternating: "
            + ", ".join(t.name for t, _, _ in opened) + " ...")
        results = phase_latency_paired([s for _, s, _ in opened], args.saves, args)
        for (tool, _, res), got in zip(opened, results):
            if isinstance(got, NotMeasured):
                res["latency_na"] = str(got)
            else:
                res.update(got)
            res["latency_paired_with"] = [t.name for t, _, _ in opened if t is not tool]
    finally:
        for tool, s, res in opened:
            log(f"{rs.name}: burst: {tool.name} ...")
            out[tool.name] = close_session(s, res, args, rs, work / tool.name)
    return out


def phase_ready_reps(tool: Tool, work: Path, args, rs: RowSet, first: float) -> dict:
    """Start the tool again in fresh empty directories: `ready ms` is the median of all starts."""
    times = [first]
    lines, cpu = [], []
    for i in range(1, args.ready_reps):
        d = work / f"ready-{i}"
        d.mkdir(parents=True)
        s = Session(tool, d, work / f"ready-{i}-tool", rs.writer(d, args), rs.all_events)
        try:
            s.start()
            r = s.wait_ready(WARM_BASE, args.warmup_ms / 1000)
            times.append(r["ready_ms"])
            cpu.append(r["cpu_s_to_ready"])
        except NotMeasured:
            pass
        finally:
            s.stop()
            if tool.step_from == "ckptwatch":
                lines.append(s.ready_line_ms())
    out = {"ready_ms": stats.median(times), "ready_ms_all": times, "ready_ms_first": first,
           "cpu_s_to_ready_reps": cpu}
    if lines:
        out["ready_line_ms_reps"] = lines
    return out


def run_idle_phase(tool: Tool, idle_dir: Path, work: Path, args, rs: RowSet) -> dict:
    n = args.idle_checkpoints
    # The idle directory holds Saver-style prefixes; a CheckpointManager writer starts its own list.
    writer = rs.writer(idle_dir, args, initial=None if rs.manager else list(range(max(1, n - 4), n + 1)))
    s = Session(tool, idle_dir, work / "idle", writer, rs.all_events)
    res: dict = {}
    try:
        s.start()
        r = s.wait_ready(IDLE_WARM_BASE)
        res["ready_big_ms"] = r["ready_ms"]
        res["cpu_s_to_ready_big"] = r["cpu_s_to_ready"]
        if not rs.idle_window:
            return res
        s.settle(quiet_for(tool), 60)
        n_before = len(s.records.all)
        pids = procs.tree(s.proc.pid)
        before = procs.cpu_ticks(pids)
        t0 = time.monotonic()
        time.sleep(args.idle_seconds)
        pids_after = procs.tree(s.proc.pid)
        after = procs.cpu_ticks(pids_after)
        wall = time.monotonic() - t0
        s.check_alive()
        cpu = procs.cpu_seconds_between(before, after)
        res["idle_cpu_pct"] = 100.0 * cpu / wall
        res["idle_seconds"] = wall
        res["idle_memory"] = procs.memory(pids_after)
        res["idle_rss_mib"] = res["idle_memory"]["rss_mib"]
        s.records.poll()
        res["idle_listener_runs"] = len(s.records.all) - n_before
    except NotMeasured as e:
        res["idle_na"] = str(e)
    finally:
        res["idle_stop"] = s.stop()
        scenario.restore_idle_dir(idle_dir, writer, n)
    return res


# --------------------------------------------------------------------------- output

def fmt(v, nd=1) -> str:
    if v is None:
        return "n/a"
    if isinstance(v, bool):
        return "yes" if v else "no"
    if isinstance(v, float):
        return f"{v:.{nd}f}"
    return str(v)


def ratio(a, b) -> str:
    if a is None or b is None:
        return "n/a"
    if b <= 0:
        return "-"
    return f"{a / b:.2f}x"


def row_values(r: dict) -> dict:
    lat = r.get("latency_ms", {})
    order = None
    from_file = r.get("burst_step_from") == ["file"]
    if from_file:
        order = "n/a*"  # the step was read from `checkpoint` after the start: no order to judge
    elif "burst_inversions" in r:
        order = "yes" if r["burst_inversions"] == 0 else f"no ({r['burst_inversions']})"
    star = (lambda v: None if v is None else f"{v}*") if from_file else (lambda v: v)
    return {
        "p50": lat.get("p50"), "p90": lat.get("p90"), "p99": lat.get("p99"),
        "n": (f"{lat.get('n', 0)}/{r['latency_saves']}" if "latency_saves" in r else None),
        "runs": r.get("burst_runs"), "deliv": star(r.get("burst_delivered")),
        "missed": star(r.get("burst_missed")), "doubled": star(r.get("burst_doubled")),
        "order": order,
        "cpu": r.get("idle_cpu_pct"), "rss": r.get("idle_rss_mib"),
        "warm": (r.get("listener_memory") or {}).get("rss_mib") if r.get("warm_listener") else None,
        "help": r.get("help_ms"), "ready": r.get("ready_ms"), "ready_big": r.get("ready_big_ms"),
    }


COLUMNS = [("p50", "p50 ms", 2), ("p90", "p90 ms", 2), ("p99", "p99 ms", 2), ("n", "n", 0),
           ("runs", "burst runs", 0), ("deliv", "deliv", 0), ("missed", "missed", 0),
           ("doubled", "doubled", 0), ("order", "in order", 0), ("cpu", "idle CPU %", 2),
           ("rss", "RSS MiB", 1), ("warm", "warm RSS MiB", 1), ("help", "--help ms", 1), ("ready", "ready ms", 1),
           ("ready_big", "ready(big) ms", 1)]


def table(results: dict, order: list[str], realistic: bool = False) -> str:
    shown = [name for name in order if results[name].get("available")]
    # A column no tool of this set has (idle CPU in the realistic set) is left out.
    columns = [c for c in COLUMNS if any(row_values(results[n])[c[0]] is not None for n in shown)]
    head = ["tool"] + [c[1] for c in columns]
    rows = []
    for name in shown:
        v = row_values(results[name])
        rows.append([name] + [fmt(v[k], nd) for k, _, nd in columns])
    widths = [max(len(x) for x in col) for col in zip(head, *rows)] if rows else []
    lines = []
    if rows:
        line = lambda cells: "  ".join(c.rjust(w) if i else c.ljust(w)  # noqa: E731
                                       for i, (c, w) in enumerate(zip(cells, widths)))
        lines += [line(head), line(["-" * w for w in widths])] + [line(r) for r in rows]
    floor = results.get("floor", {})
    fv = row_values(floor) if floor.get("available") else None
    if fv and len(rows) > 1:
        keys = [("p50", "p50"), ("p90", "p90"), ("p99", "p99"), ("rss", "RSS"),
                ("help", "--help"), ("ready", "ready"), ("ready_big", "ready(big)")]
        head2 = ["vs floor"] + [k[1] for k in keys]
        rows2 = []
        for name in order:
            r = results[name]
            if not r.get("available") or name == "floor":
                continue
            v = row_values(r)
            rows2.append([name] + [ratio(v[k], fv[k]) for k, _ in keys])
        w2 = [max(len(x) for x in col) for col in zip(head2, *rows2)]
        line2 = lambda cells: "  ".join(c.rjust(w) if i else c.ljust(w)  # noqa: E731
                                        for i, (c, w) in enumerate(zip(cells, w2)))
        lines += ["", line2(head2), line2(["-" * w for w in w2])] + [line2(r) for r in rows2]
    notes = []
    for name in order:
        r = results[name]
        if not r.get("available"):
            notes.append(f"{name}: skipped: {r.get('reason')}")
            continue
        for key in ("ready_na", "latency_na", "burst_na", "idle_na"):
            if key in r:
                notes.append(f"{name}: {key[:-3]} n/a: {r[key]}")
        if r.get("latency_missed"):
            notes.append(f"{name}: {r['latency_missed']} of {r['latency_saves']} latency "
                         f"commits never reached the listener (excluded from percentiles)")
        if r.get("latency_doubled"):
            why = ("TF2 writes `checkpoint` twice per save" if name == "floor" and realistic
                   else "a commit handled twice")
            notes.append(f"{name}: {r['latency_doubled']} extra listener runs in the "
                         f"latency phase ({why})")
        if r.get("burst_missed") and "burst_dispatched" in r:
            never = r["burst_commits"] - r["burst_dispatched"]
            other = {k: v for k, v in r.get("burst_outcomes", {}).items() if k not in ("done", "vanished")}
            notes.append(f"{name}: of the burst's {r['burst_missed']} missed, "
                         f"{r.get('burst_outcomes', {}).get('vanished', 0)} were skipped as vanished (rotation "
                         f"deleted the checkpoint before its listener's turn; journaled, logged), "
                         + "".join(f"{v} ended {k}, " for k, v in sorted(other.items()))
                         + f"{never} never dispatched (rotated away between two looks)")
        if r.get("burst_step_from") == ["file"]:
            notes.append(f"{name}: * the tool gives no step: the listener read it from "
                         f"`checkpoint` after starting, so deliv/missed/doubled count what "
                         f"the runs could see; compare runs ({r['burst_runs']} for "
                         f"{r['burst_commits']} commits)")
        if r.get("idle_listener_runs"):
            notes.append(f"{name}: {r['idle_listener_runs']} listener runs while idle")
        if len(r.get("ready_ms_all", [])) > 1:
            notes.append(f"{name}: ready ms is the median of {len(r['ready_ms_all'])} starts: "
                         + ", ".join(f"{x:.0f}" for x in r["ready_ms_all"]))
    if notes:
        lines += [""] + notes
    if results.get("ckptwatch", {}).get("available"):
        lines += [""] + summary.target_lines(summary.target_figures(results))
    return "\n".join(lines)


# --------------------------------------------------------------------------- main

def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.strip().splitlines()[0])
    p.add_argument("--quick", action="store_true",
                   help="small counts, for a smoke test in under ~2 minutes")
    p.add_argument("--tools", help="tools of the after_save set, comma-separated (the floor always "
                   "runs); known: floor,watchmedo,inotifywait,tf-iterator,ckptwatch,ckptwatch-class,"
                   "ckptwatch-serve,ckptwatch-poll,watchmedo-poll (the last is off unless named)")
    p.add_argument("--sets", default="after_save,realistic",
                   help="row sets to run (default: after_save,realistic)")
    p.add_argument("--realistic-tools", default="floor,ckptwatch",
                   help="tools of the realistic set (default: floor,ckptwatch; any tool of --tools)")
    p.add_argument("--lead-ms", type=float, default=20.0,
                   help="realistic set: how long a save's data is in place before its commit")
    p.add_argument("--warmup-ms", type=float, default=10.0,
                   help="spacing of the warm-up commits that find a tool ready (its resolution)")
    p.add_argument("--ready-reps", type=int,
                   help="starts per fast tool in empty directories; ready ms is their median (5; quick 3)")
    p.add_argument("--no-paired", dest="paired", action="store_false",
                   help="measure the floor's and ckptwatch's latency one after the other, not alternating")
    p.add_argument("--no-compile", dest="compile", action="store_false",
                   help="measure ckptwatch's bytecode as found (default: compile what is missing, as pip does)")
    p.add_argument("--repeat", type=int, default=1,
                   help="full runs; with more than one, also the median and range of every figure")
    p.add_argument("--phases", default="help,main,idle",
                   help="which phases to run (default: help,main,idle; main = ready, "
                        "latency and burst)")
    p.add_argument("--out", default=str(HERE / "results.json"), help="JSON results path")
    p.add_argument("--workdir", default="/tmp/ckptwatch-bench",
                   help="where directories are made (the idle one is kept for reuse)")
    p.add_argument("--keep-work", action="store_true", help="keep this run's directories")
    p.add_argument("--ckptwatch", help="command for ckptwatch (default: `ckptwatch` on PATH, "
                   "else next to this Python, else `python -m ckptwatch`)")
    p.add_argument("--watchmedo", help="path of watchmedo (default: on PATH or next to Python)")
    p.add_argument("--tf-python", help="Python with tensorflow (default: this one)")
    p.add_argument("--saves", type=int, help="latency saves per fast tool (300; quick 60)")
    p.add_argument("--slow-saves", type=int,
                   help="latency saves per polling tool (40; quick 6)")
    p.add_argument("--gap-ms", type=float, default=20.0, help="pause after each commit")
    p.add_argument("--jitter-ms", type=float, default=10.0, help="random extra pause")
    p.add_argument("--slow-jitter-ms", type=float, default=1000.0,
                   help="random pause for polling tools (their period)")
    p.add_argument("--burst", type=int, help="commits in the burst (1000; quick 500)")
    p.add_argument("--burst-timeout", type=float, default=120.0,
                   help="longest wait for a burst to drain, seconds")
    p.add_argument("--idle-seconds", type=float, help="idle CPU window (30; quick 5)")
    p.add_argument("--idle-checkpoints", type=int,
                   help="checkpoints in the idle directory (10000; quick 1000)")
    p.add_argument("--idle-files", type=int,
                   help="empty files in the idle directory (1000000; quick 20000)")
    p.add_argument("--files-subdir", default=None,
                   help="put the empty files in this subdirectory (default: top level)")
    p.add_argument("--keep", type=int, default=5,
                   help="prefixes listed in the state file (Saver's max_to_keep)")
    p.add_argument("--rotate", action="store_true",
                   help="delete prefixes that fall off the list, as TF does")
    p.add_argument("--sharded", action="store_true",
                   help="write each save through model.ckpt-N_temp/, as the sharded saver does")
    p.add_argument("--help-reps", type=int, help="--help runs per tool (5; quick 3)")
    p.add_argument("--seed", type=int, default=None, help="random seed for the jitter")
    args = p.parse_args(argv)
    q = args.quick
    defaults = {"saves": (300, 60), "slow_saves": (40, 6), "burst": (1000, 500),
                "idle_seconds": (30.0, 5.0), "idle_checkpoints": (10_000, 1000),
                "idle_files": (1_000_000, 20_000), "help_reps": (5, 3), "ready_reps": (5, 3)}
    for k, (full, quick) in defaults.items():
        if getattr(args, k) is None:
            setattr(args, k, quick if q else full)
    args.idle_checkpoints = max(5, args.idle_checkpoints)
    args.phases = {x.strip() for x in args.phases.split(",")}
    args.sets = [x.strip() for x in args.sets.split(",") if x.strip()]
    unknown = set(args.sets) - set(ROW_SETS)
    if unknown:
        p.error(f"unknown row set(s): {', '.join(sorted(unknown))}; known: {', '.join(ROW_SETS)}")
    args.repeat = max(1, args.repeat)
    return args


def log_main(name: str, r: dict, args, t0: float) -> None:
    lat = r.get("latency_ms", {})
    log(f"  {name}: ready {fmt(r.get('ready_ms'))} ms, p50 {fmt(lat.get('p50'), 2)} ms,"
        f" burst {r.get('burst_delivered')}/{args.burst} ({time.monotonic() - t0:.1f} s)")


def execution_order(tools: list[Tool]) -> list[Tool]:
    """The floor, then ckptwatch, then the rest: the two the targets compare run back to back."""
    first = [t for t in tools if t.name in ("floor", "ckptwatch")]
    return first + [t for t in tools if t not in first]


def run_once(args, log_prefix: str = "") -> dict:
    """One full run: every row set's tools through help, main and idle phases."""
    t_start = time.monotonic()
    cpu_start = cpu_times()
    workroot = Path(args.workdir)
    run_dir = workroot / f"run-{os.getpid()}"
    run_dir.mkdir(parents=True, exist_ok=True)
    reasons: dict[str, str | None] = {}
    sets: dict[str, dict] = {}
    ready: dict[str, list[Tool]] = {}
    log(f"{log_prefix}checking tools ...")
    for name in args.sets:
        tools = all_tools(args, args.tools if name == "after_save" else args.realistic_tools)
        results: dict[str, dict] = {}
        sets[name] = {"title": ROW_SETS[name].title, "order": [t.name for t in tools], "tools": results}
        ready[name] = []
        for t in tools:
            if t.name not in reasons:
                reasons[t.name] = t.unavailable()
                log(f"  {t.name}: " + ("ok" if reasons[t.name] is None else f"skipped: {reasons[t.name]}"))
            results[t.name] = {"title": t.title, "available": reasons[t.name] is None}
            if reasons[t.name]:
                results[t.name]["reason"] = reasons[t.name]
            else:
                ready[name].append(t)

    if "help" in args.phases:
        log("--help times ...")
        helped: dict[str, dict] = {}
        for name in args.sets:  # --help does not depend on the set: once per tool
            for t in ready[name]:
                if t.name not in helped:
                    helped[t.name] = phase_help(t, args.help_reps)
                sets[name]["tools"][t.name].update(helped[t.name])

    if "main" in args.phases:
        for name in args.sets:
            rs = ROW_SETS[name]
            todo = execution_order(ready[name])
            pair = [t for t in todo if t.name in ("floor", "ckptwatch")]
            if args.paired and len(pair) == 2:
                t0 = time.monotonic()
                for tname, got in run_pair(pair, run_dir / name, args, rs).items():
                    sets[name]["tools"][tname].update(got)
                    log_main(tname, sets[name]["tools"][tname], args, t0)
                todo = [t for t in todo if t not in pair]
            for t in todo:
                log(f"{name}: ready / latency / burst: {t.name} ...")
                t0 = time.monotonic()
                r = sets[name]["tools"][t.name]
                r.update(run_main_phases(t, run_dir / name / t.name, args, rs))
                log_main(t.name, r, args, t0)

    if "idle" in args.phases and any(ready.values()):
        sub = args.files_subdir
        idle_dir = workroot / (f"idle-{args.idle_checkpoints}-{args.idle_files}"
                               + (f"-{sub}" if sub else ""))
        log(f"idle directory {idle_dir} ...")
        scenario.build_idle_dir(idle_dir, args.idle_checkpoints, args.idle_files, sub,
                                log=log)
        for name in args.sets:
            rs = ROW_SETS[name]
            for t in execution_order(ready[name]):
                what = f"idle {args.idle_seconds:.0f} s" if rs.idle_window else "ready(big)"
                log(f"{name}: {what}: {t.name} ...")
                r = sets[name]["tools"][t.name]
                r.update(run_idle_phase(t, idle_dir, run_dir / name / t.name, args, rs))
                log(f"  {t.name}: ready(big) {fmt(r.get('ready_big_ms'))} ms"
                    + (f", CPU {fmt(r.get('idle_cpu_pct'), 3)} %, RSS {fmt(r.get('idle_rss_mib'))} MiB"
                       if rs.idle_window else ""))
    if not args.keep_work:
        shutil.rmtree(run_dir, ignore_errors=True)
    return {"meta": run_meta(args, t_start, cpu_start), "sets": sets}


def cpu_times() -> list[int]:
    """The machine's `cpu` line of /proc/stat: user nice system idle iowait irq softirq steal ..."""
    with open("/proc/stat") as f:
        return [int(x) for x in f.readline().split()[1:]]


def steal_pct(before: list[int], after: list[int]) -> float | None:
    """Time the hypervisor ran something else while this VM wanted the CPU, in % of all CPU time."""
    total = sum(after[:8]) - sum(before[:8])
    return 100.0 * (after[7] - before[7]) / total if total > 0 and len(after) > 7 else None


def run_meta(args, t_start: float, cpu_start: list[int]) -> dict:
    cpu_end = cpu_times()
    busy = sum(cpu_end[:8]) - sum(cpu_start[:8])
    return {
        "time": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "steal_pct": steal_pct(cpu_start, cpu_end),
        "machine_busy_pct": (100.0 * (busy - (cpu_end[3] - cpu_start[3])) / busy) if busy > 0 else None,
        "host": platform.node(), "cpus": os.cpu_count(),
        "kernel": platform.release(), "python": sys.version.split()[0],
        "loadavg": os.getloadavg(),
        "duration_s": round(time.monotonic() - t_start, 1),
        "args": {k: (sorted(v) if isinstance(v, set) else v) for k, v in vars(args).items()},
        "commit": "time.time_ns(), then os.replace(checkpoint.tmp<hex>, checkpoint)",
        "latency": "listener's $EPOCHREALTIME minus commit time",
        "machine": machine.facts(quick=True),
        "ckptwatch_install": ckptwatch_install(args),
    }


def ckptwatch_python(args) -> str | None:
    """The Python that runs the ckptwatch measured: the command itself, or the one beside it."""
    command = shlex.split(args.ckptwatch) if args.ckptwatch else default_ckptwatch_command()
    exe = Path(command[0])
    python = command[0] if "python" in exe.name else str(exe.parent / "python")
    return python if Path(python).exists() else None


def ckptwatch_install(args) -> dict:
    """How the ckptwatch measured is installed (bytecode, editable hook), from the Python beside it."""
    python = ckptwatch_python(args)
    return machine.install_facts(python) if python else {"python": None}


def compile_if_stale(args) -> str:
    """Compile the measured ckptwatch's bytecode where it is missing or stale, as `pip install` does.

    An editable install under PYTHONDONTWRITEBYTECODE (set on these machines) never gets
    any: each start then compiles every module again (about 65 ms of CPU here). Compiled
    with ckptwatch's own Python: bytecode is per version. Returns a line for the output.
    """
    facts = ckptwatch_install(args)
    if not facts.get("found"):
        return "ckptwatch's bytecode: unknown (its Python was not found beside the command)"
    stale = facts["modules"] - facts["bytecode_fresh"]
    note = ""
    if stale and args.compile:
        subprocess.run([ckptwatch_python(args), "-m", "compileall", "-q", facts["package"]],
                       stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        after = ckptwatch_install(args)
        note = f" (the harness compiled {after['bytecode_fresh'] - facts['bytecode_fresh']} that were not)"
        facts = after
    hook = ", an editable install's import hook" if facts.get("editable_hook") else ""
    return (f"ckptwatch measured: {facts['package']}, Python {facts['python']}{hook}; bytecode fresh "
            f"for {facts['bytecode_fresh']} of {facts['modules']} modules{note}")


def render(run: dict) -> str:
    parts = []
    for name, rs in run["sets"].items():
        parts.append(f"== {name}: {rs['title']}")
        parts.append(table(rs["tools"], rs["order"], realistic=ROW_SETS[name].manager))
    return "\n\n".join(parts)


def main(argv=None) -> int:
    args = parse_args(argv)
    random.seed(args.seed)
    t_start = time.monotonic()
    cpu_start = cpu_times()
    bytecode = compile_if_stale(args)
    log(bytecode)
    runs = []
    for i in range(args.repeat):
        prefix = f"run {i + 1} of {args.repeat}: " if args.repeat > 1 else ""
        runs.append(run_once(args, prefix))
        if args.repeat > 1:
            print(f"---- run {i + 1} of {args.repeat} (load average {os.getloadavg()[0]:.2f})\n",
                  flush=True)
            print(render(runs[-1]) + "\n", flush=True)
    if args.repeat == 1:
        out = runs[0]
    else:
        out = {"meta": run_meta(args, t_start, cpu_start), "runs": runs, "summary": summary.aggregate(runs)}
    out_path = Path(args.out)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    out_path.write_text(json.dumps(out, indent=2, default=str) + "\n")
    print(render(runs[0]) if args.repeat == 1 else summary.render_medians(out["summary"]))
    print(f"\n{bytecode}")
    n_tools = len({n for r in runs for rs in r["sets"].values() for n in rs["order"]})
    meta = out["meta"]
    print(f"\n{n_tools} tools, {args.repeat} run(s) in {time.monotonic() - t_start:.0f} s; load average "
          f"now {os.getloadavg()[0]:.2f}; machine busy {fmt(meta['machine_busy_pct'], 0)} %, CPU steal "
          f"{fmt(meta['steal_pct'], 1)} % over the run; JSON: {out_path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
