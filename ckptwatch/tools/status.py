"""``ckptwatch status``: what a watcher is doing, from its state directory alone.

It reads ``status.json`` (the watcher's), the journal's ``lock`` (held while a
session runs: a dead watcher's leftovers are told from a live one), the stop
file and, when there is one, ``progress.json`` (how far listeners got, for training). It works from
another process or container and after the watcher died, starts fast (it is
a container's health check), and only reads.

Healthy (exit 0): a watcher is running and nothing is stale.
"""

from __future__ import annotations

import os
import time
from typing import Any

from ..integrations.jsonfile import read_object
from ..report.statefile import PROGRESS_NAME, STATUS_NAME, lock_state, start_ticks

__all__ = ["examine", "lines"]


def examine(state_dir: str, now: float | None = None) -> dict[str, Any]:
    """The status report, as the ``--json`` output gives it."""
    now = time.time() if now is None else now
    state_dir = os.path.abspath(state_dir)
    written = read_object(os.path.join(state_dir, STATUS_NAME))
    lock = lock_state(state_dir)
    report: dict[str, Any] = {"state_dir": state_dir, "running": False, "healthy": False, "stale": False}
    if written is None and lock == "missing":
        report["watcher"] = {"state": "none", "text": f"no watcher has used {state_dir}"
                             + ("" if os.path.isdir(state_dir) else " (it does not exist)")}
        return report
    written = written or {}
    watcher = _watcher(written, lock, now)
    report["watcher"] = watcher
    report["running"] = watcher["state"] in ("running", "waiting")
    for key in ("dir", "layout", "run_id", "stop_file", "metrics", "stale_after"):
        report[key] = written.get(key)
    commit = written.get("last_commit")
    if isinstance(commit, dict) and isinstance(commit.get("time"), (int, float)):
        report["last_commit"] = {**commit, "age": round(now - commit["time"], 3)}
    else:
        report["last_commit"] = None
    report["commits_this_session"] = written.get("commits")
    report["listeners"] = [{"name": name, **(progress if isinstance(progress, dict) else {})}
                           for name, progress in (written.get("listeners") or {}).items()]
    report["stop"] = _stop(written)
    report["progress"] = read_object(os.path.join(state_dir, PROGRESS_NAME))
    stale_after = written.get("stale_after")
    if report["running"] and watcher["state"] == "running" and isinstance(stale_after, (int, float)):
        origin = written.get("stale_origin")
        since = now - origin if isinstance(origin, (int, float)) else 0.0
        report["seconds_since_commit"] = round(since, 3)
        report["stale"] = since >= stale_after or bool(written.get("stale"))
    report["healthy"] = report["running"] and not report["stale"]
    return report


def _watcher(written: dict[str, Any], lock: str, now: float) -> dict[str, Any]:
    """Is a watcher running: the lock says so for a session; the pid (same host) for one waiting for DIR."""
    pid = written.get("pid")
    info = {"pid": pid, "host": written.get("host"), "since": written.get("session_started"),
            "updated": written.get("updated"), "version": written.get("ckptwatch")}
    state = written.get("state")
    if lock == "held":
        if state in ("running", "starting"):
            return {**info, "state": "running", "text": f"running, pid {pid}"}
        return {**info, "state": "running", "text": "running (a session holds the lock; its status file is "
                f"{'missing' if not written else 'behind'})"}
    started = written.get("pid_start")
    alive = isinstance(pid, int) and started is not None and start_ticks(pid) == started
    if state in ("waiting", "between-sessions") and alive:
        return {**info, "state": "waiting", "text": f"running, pid {pid}, waiting for {written.get('dir')} to exist"}
    if state == "ended" and isinstance(written.get("ended"), dict):
        ended = written["ended"]
        when = _clock(ended.get("time"), now)
        return {**info, "state": "ended", "ended": ended,
                "text": f"not running: ended {when} ({ended.get('reason')}), exit {ended.get('exit_status')}: "
                        f"{ended.get('exit_reason')}"}
    if not written:
        return {**info, "state": "unknown", "text": "not running (no status file; the lock is free)"}
    last = _clock(written.get("updated"), now)
    return {**info, "state": "dead",
            "text": f"not running: pid {pid} died without ending its session (last update {last})"}


def _stop(written: dict[str, Any]) -> dict[str, Any] | None:
    """This session's stop request, else the stop file on disk (which may be an earlier run's)."""
    from ..delivery.stopfile import read_stop_file

    stop = written.get("stop")
    if isinstance(stop, dict):
        return {**stop, "this_run": True}
    path = written.get("stop_file")
    found = read_stop_file(path) if isinstance(path, str) else None
    if found is None:
        return None
    return {**found, "this_run": found.get("run_id") == written.get("run_id")}


def _clock(when: Any, now: float) -> str:
    if not isinstance(when, (int, float)):
        return "at an unknown time"
    return f"at {time.strftime('%Y-%m-%d %H:%M:%S', time.localtime(when))} ({_ago(now - when)})"


def _ago(seconds: float) -> str:
    seconds = max(0.0, seconds)
    if seconds < 120:
        return f"{seconds:.0f} s ago"
    if seconds < 7200:
        return f"{seconds / 60:.0f} min ago"
    return f"{seconds / 3600:.1f} h ago"


#: progress.json's fields the text shows (``--json`` gives it whole).
_PROGRESS_SHOWN = ("step", "committed_step", "pending", "stop", "stop_step", "role")


def rows(report: dict[str, Any], now: float | None = None) -> list[tuple[str, str]]:
    """``(label, text)`` for each line of the overview."""
    now = time.time() if now is None else now
    watcher = report["watcher"]
    out = [("watcher", watcher["text"])]
    if watcher["state"] == "none":
        return out
    if report.get("dir"):
        layout = report.get("layout") or "not decided yet"
        out.append(("dir", f"{report['dir']} (layout {layout}, run {report.get('run_id')})"))
    commit = report.get("last_commit")
    if commit:
        count = report.get("commits_this_session")
        extra = f"; {count} this session" if isinstance(count, int) and report["running"] else ""
        out.append(("last commit", f"step {commit.get('step')} {_clock(commit.get('time'), now)}{extra}"))
    else:
        out.append(("last commit", "none yet"))
    if report.get("stale_after") is not None and report["running"]:
        since = report.get("seconds_since_commit")
        word = "STALE" if report["stale"] else "no"
        tail = "" if since is None else f", {since:.0f} s since the last commit (or the start)"
        out.append(("stale", f"{word} (stale after {report['stale_after']:g} s{tail})"))
    stop = report.get("stop")
    if stop:
        whose = "" if stop.get("this_run") else " (an earlier run's)"
        who = stop.get("listener") or ", ".join(stop.get("listeners") or [])
        out.append(("stop", f"requested{whose} at step {stop.get('step')} by {who}: {stop.get('reason')}"))
    else:
        out.append(("stop", "not requested"))
    if report.get("progress") is not None:
        body = report["progress"]
        shown = [f"{key} {body[key]}" for key in _PROGRESS_SHOWN if key in body]
        out.append(("progress", ", ".join(shown) or "present (see --json)"))
    if report.get("metrics"):
        out.append(("metrics", str(report["metrics"])))
    out.append(("healthy", "yes" if report["healthy"] else "no"))
    return out


def listener_rows(report: dict[str, Any]) -> list[tuple[str, str, str, str, str]]:
    """``(name, last step handled, runs, failures, last failure)`` per listener."""
    out = []
    for item in report.get("listeners") or []:
        failure = item.get("last_failure")
        said = ""
        if isinstance(failure, dict):
            step = "" if failure.get("step") is None else f" step {failure['step']}"
            code = "" if failure.get("exit_code") is None else f" exit {failure['exit_code']}"
            said = f"{failure.get('event')}{step}: {failure.get('status')}{code}: {failure.get('line') or ''}".rstrip()
        last = item.get("last_step_handled")
        out.append((item["name"], "-" if last is None else str(last), str(item.get("runs", 0)),
                    str(item.get("failures", 0)), said))
    return out


def lines(report: dict[str, Any]) -> list[str]:
    """Plain text, for logs and pipes."""
    out = [f"ckptwatch status of {report['state_dir']}"]
    pairs = rows(report)
    width = max(len(label) for label, _ in pairs) + 1
    out += [f"{label + ':':<{width}} {text}" for label, text in pairs]
    listeners = listener_rows(report)
    if listeners:
        out.append("listeners:")
        name_width = max(len(row[0]) for row in listeners)
        for name, last, runs, failures, said in listeners:
            tail = f"; last failure: {said}" if said else ""
            out.append(f"  {name:<{name_width}}  last step {last}, {runs} run(s), {failures} failure(s){tail}")
    return out


def render_rich(report: dict[str, Any]) -> None:
    """A table for a person at a terminal."""
    from rich.console import Console
    from rich.table import Table

    console = Console(highlight=False)
    overview = Table(title=f"ckptwatch status of {report['state_dir']}", show_header=False, title_justify="left")
    overview.add_column(style="bold")
    overview.add_column()
    for label, text in rows(report):
        style = ""
        if label == "healthy":
            style = "green" if report["healthy"] else "bold red"
        elif label == "stale" and report["stale"]:
            style = "bold red"
        overview.add_row(label, f"[{style}]{_escape(text)}[/{style}]" if style else _escape(text))
    console.print(overview)
    listeners = listener_rows(report)
    if listeners:
        table = Table("listener", "last step handled", "runs", "failures", "last failure", title_justify="left")
        for name, last, runs, failures, said in listeners:
            table.add_row(_escape(name), last, runs, f"[red]{failures}[/red]" if failures != "0" else failures,
                          _escape(said))
        console.print(table)


def _escape(text: str) -> str:
    from rich.markup import escape

    return escape(text)
