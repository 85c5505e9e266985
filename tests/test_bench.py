"""The benchmark's own parts: its writers save as the frameworks do, and its summary counts right.

bench/ times ckptwatch; a writer that saved differently from the framework
(or that ckptwatch never took as a commit) would time the wrong thing, and a
wrong median would misreport a target. These tests check both on real
directories, with ckptwatch's own layouts and a real inotify watch.
"""

from __future__ import annotations

import ctypes
import os
import re
import struct
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from bench import scenario, summary  # noqa: E402
from bench.layoutsaves import SAVES  # noqa: E402
from bench.scancost import Watcher, one_save  # noqa: E402
from ckptwatch.layouts import REGISTRY  # noqa: E402
from ckptwatch.layouts.base import Listing  # noqa: E402
from ckptwatch.layouts.tf import TFLayout  # noqa: E402

TRACE = Path(__file__).parent / "traces" / "tf2_manager.trace.txt"
IN_MOVED_FROM, IN_MOVED_TO, IN_CREATE, IN_DELETE, IN_ISDIR = 0x40, 0x80, 0x100, 0x200, 0x40000000
KINDS = {IN_MOVED_FROM: "MOVED_FROM", IN_MOVED_TO: "MOVED_TO", IN_CREATE: "CREATE", IN_DELETE: "DELETE"}


def _normal(name: str, step: int, old: int | None) -> str:
    name = re.sub(r"^checkpoint\.tmp[0-9a-f]+$", "checkpoint.tmpX", name)
    name = re.sub(rf"^ckpt-{step}(?=[._])", "ckpt-NEW", name)
    return name if old is None else re.sub(rf"^ckpt-{old}(?=[._])", "ckpt-OLD", name)


def _trace_ops(step: int, old: int) -> list[tuple[str, str]]:
    """The top-level creates, deletes and renames of one save in the real TF2 trace."""
    ops, inside = [], False
    for line in TRACE.read_text().splitlines():
        parts = line.split()
        if len(parts) < 4 or parts[0].startswith("#"):
            continue
        if parts[1] == ">>>":
            inside = inside and not parts[2] == "SAVED"
            continue
        path = parts[3]
        if path == f"./ckpt-{step}_temp" and parts[2].startswith("CREATE"):
            inside = True
        if not inside or "/" in path[2:]:
            continue
        kinds = parts[2].split(",")
        kind = next((k for k in kinds if k in KINDS.values()), None)
        if kind:
            ops.append((kind + (",ISDIR" if "ISDIR" in kinds else ""), _normal(path[2:], step, old)))
    return ops


def test_manager_writer_does_at_the_top_what_tf2s_checkpointmanager_did(tmp_path):
    """Result: the same creates, renames and deletes, in the same order, as the traced 4th save."""
    libc = ctypes.CDLL(None, use_errno=True)
    fd = libc.inotify_init1(os.O_NONBLOCK | os.O_CLOEXEC)
    assert fd >= 0
    try:
        writer = scenario.ManagerWriter(tmp_path, keep=3, lead=0)
        for step in (5, 10, 15):
            writer.commit(step)
        assert libc.inotify_add_watch(fd, os.fsencode(tmp_path), IN_MOVED_FROM | IN_MOVED_TO | IN_CREATE | IN_DELETE) >= 0
        writer.commit(20)
        data = os.read(fd, 65536)
    finally:
        os.close(fd)
    ops, pos = [], 0
    while pos < len(data):
        _wd, mask, _cookie, length = struct.unpack_from("iIII", data, pos)
        name = data[pos + 16:pos + 16 + length].rstrip(b"\0").decode()
        pos += 16 + length
        kind = KINDS[mask & 0x3C0]
        ops.append((kind + (",ISDIR" if mask & IN_ISDIR else ""), _normal(name, 20, 5)))
    expected = _trace_ops(20, 5)
    assert len(expected) >= 10, "the trace's 4th save was not found"
    assert ops == expected


def test_manager_writer_leaves_what_the_tf_layout_commits(tmp_path):
    """Result: the newest `keep` prefixes committed, the older ones deleted, nothing temporary left."""
    writer = scenario.ManagerWriter(tmp_path, keep=5, lead=0)
    for step in range(1, 9):
        writer.commit(step)
    names = sorted(os.listdir(tmp_path))
    assert names == sorted(["checkpoint"] + [f"ckpt-{s}{x}" for s in range(4, 9)
                                             for x in (".index", ".data-00000-of-00001")])
    observation = TFLayout(str(tmp_path)).scan(Listing.read(str(tmp_path)))
    assert [c.step for c in observation.committed] == [4, 5, 6, 7, 8]
    assert observation.in_progress == []


def test_the_realistic_listener_takes_every_event_and_the_other_subscribes_to_after_save(tmp_path):
    from ckptwatch.delivery.header import read_header

    subscribed = scenario.write_listener(tmp_path / "a", tmp_path, tmp_path / "records")
    everything = scenario.write_listener(tmp_path / "b", tmp_path, tmp_path / "records", all_events=True)
    assert read_header(subscribed).words == {"events": "after_save"}
    assert read_header(everything) is None or "events" not in read_header(everything).words
    assert everything.read_text().splitlines()[2] == "t=$EPOCHREALTIME"


def test_scancost_has_saves_for_every_layout():
    assert list(SAVES) == list(REGISTRY)


@pytest.mark.parametrize("layout", list(SAVES))
def test_each_layouts_bench_save_is_delivered(tmp_path, layout):
    """Result: older saves are delivered at the start, and a new save gets its after_save."""
    root = tmp_path / "dir"
    root.mkdir()
    saves = SAVES[layout](root)
    saves.bulk(3)
    watcher = Watcher(saves.spec, root)
    assert watcher.start() >= 1
    result = one_save(watcher, saves)
    assert result["delivered"], result["problems"]
    assert result["looks"] >= 1


def _run(p50: float, p99: float, floor_p50: float, floor_p99: float, ready: float) -> dict:
    tools = {
        "floor": {"available": True, "latency_ms": {"p50": floor_p50, "p99": floor_p99}, "ready_ms": 40.0},
        "ckptwatch": {"available": True, "latency_ms": {"p50": p50, "p99": p99}, "ready_ms": ready},
    }
    return {"sets": {"after_save": {"title": "t", "order": ["floor", "ckptwatch"], "tools": tools}}}


def test_summary_takes_medians_per_run_and_checks_targets_on_them():
    runs = [_run(2.5, 3.0, 2.0, 2.6, 140.0), _run(2.2, 4.0, 2.0, 3.0, 160.0), _run(3.0, 3.2, 2.9, 3.0, 120.0)]
    agg = summary.aggregate(runs)["sets"]["after_save"]
    assert agg["values"]["ckptwatch"]["p50"] == {"median": 2.5, "min": 2.2, "max": 3.0, "n": 3}
    # Deltas are taken per run against that run's floor: +0.5, +0.2, +0.1 -> median +0.2.
    assert agg["targets"]["p50_over_floor_ms"]["median"] == pytest.approx(0.2)
    assert agg["runs_met"]["p50_over_floor_ms"] == (2, 3)
    assert agg["runs_met"]["ready_ms"] == (2, 3)
    text = summary.render_medians(summary.aggregate(runs))
    assert re.search(r"p50 - floor's p50 <= 0\.3 ms\s+\+0\.20 ms\s+met\s+\(met in 2 of 3 runs\)", text)
    assert re.search(r"p99 / floor's p99 <= 1\.25x\s+1\.15x\s+met", text)
