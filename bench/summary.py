"""The figures of a run, ckptwatch's targets, and the median of several runs.

A figure counts when it holds on any machine of the kind, and one run on a
shared 2-core machine moves p50 by 15 % and p99 by up to 1.8x: so the targets
are checked against the floor of the same run (and row set), and several full
runs are summarised by the median of each figure, with its range.

    python bench/summary.py RESULTS.json [MORE.json ...]   # medians over every run in the files
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench import stats  # noqa: E402

__all__ = ["FIGURES", "TARGETS", "aggregate", "figures", "render_medians", "runs_of", "target_lines"]

#: ckptwatch's targets (issue 15): against the floor of the same run, and ready in absolute terms.
P50_OVER_FLOOR_MS = 0.3
P99_OVER_FLOOR = 1.25
READY_MS = 150.0

#: figure key -> (label, decimals)
FIGURES = {
    "p50": ("p50 ms", 2), "p90": ("p90 ms", 2), "p99": ("p99 ms", 2),
    "ready": ("ready ms", 1), "ready_big": ("ready(big) ms", 1),
    "cpu": ("idle CPU %", 2), "rss": ("RSS MiB", 1), "help": ("--help ms", 1),
    "burst_delivered": ("burst deliv", 0), "burst_missed": ("burst missed", 0),
    "burst_doubled": ("burst doubled", 0),
}

#: (key, label, limit, how the value is shown): met when the value is at most the limit.
TARGETS = [
    ("p50_over_floor_ms", f"p50 - floor's p50 <= {P50_OVER_FLOOR_MS} ms", P50_OVER_FLOOR_MS, "{:+.2f} ms"),
    ("p99_over_floor", f"p99 / floor's p99 <= {P99_OVER_FLOOR}x", P99_OVER_FLOOR, "{:.2f}x"),
    ("ready_ms", f"ready <= {READY_MS:g} ms (empty directory)", READY_MS, "{:.0f} ms"),
    ("ready_big_ms", f"ready(big) <= {READY_MS:g} ms (the idle directory)", READY_MS, "{:.0f} ms"),
]


def figures(result: dict) -> dict:
    """The numbers of one tool's result (a row of the table), None where not measured."""
    lat = result.get("latency_ms", {})
    return {
        "p50": lat.get("p50"), "p90": lat.get("p90"), "p99": lat.get("p99"),
        "ready": result.get("ready_ms"), "ready_big": result.get("ready_big_ms"),
        "cpu": result.get("idle_cpu_pct"), "rss": result.get("idle_rss_mib"), "help": result.get("help_ms"),
        "burst_delivered": result.get("burst_delivered"), "burst_missed": result.get("burst_missed"),
        "burst_doubled": result.get("burst_doubled"),
    }


def target_figures(tools: dict, name: str = "ckptwatch") -> dict:
    """The values the targets judge, for tool `name` against the floor of the same row set."""
    mine = figures(tools.get(name, {})) if tools.get(name, {}).get("available") else {}
    floor = figures(tools.get("floor", {})) if tools.get("floor", {}).get("available") else {}
    out = {"p50_over_floor_ms": None, "p99_over_floor": None,
           "ready_ms": mine.get("ready"), "ready_big_ms": mine.get("ready_big")}
    if mine.get("p50") is not None and floor.get("p50") is not None:
        out["p50_over_floor_ms"] = mine["p50"] - floor["p50"]
    if mine.get("p99") is not None and floor.get("p99"):
        out["p99_over_floor"] = mine["p99"] / floor["p99"]
    return out


def met(key: str, value: float | None) -> bool | None:
    limit = {k: lim for k, _, lim, _ in TARGETS}[key]
    return None if value is None else value <= limit


def target_lines(values: dict, runs_met: dict | None = None, name: str = "ckptwatch") -> list[str]:
    """One line per target: the value, and "met" / "not met" ("n/a" when not measured).

    runs_met: key -> (runs where met, runs measured), shown after the verdict.
    """
    lines = [f"targets for {name} (same run as the floor):"]
    width = max(len(label) for _, label, _, _ in TARGETS)
    for key, label, _, shown in TARGETS:
        value = values.get(key)
        verdict = {None: "n/a", True: "met", False: "not met"}[met(key, value)]
        text = "-" if value is None else shown.format(value)
        tail = ""
        if runs_met and key in runs_met:
            ok, n = runs_met[key]
            tail = f"  (met in {ok} of {n} runs)"
        lines.append(f"  {label.ljust(width)}  {text:>10}  {verdict}{tail}")
    return lines


# ---------------------------------------------------------------------------- several runs

def runs_of(data: dict) -> list[dict]:
    """The runs in a results file: one (`sets`), or several (`runs`, from --repeat)."""
    if "runs" in data:
        return list(data["runs"])
    if "sets" in data:
        return [data]
    raise ValueError("not a bench/run.py results file (no 'sets' or 'runs')")


def _spread(values: list[float]) -> dict:
    return {"median": stats.median(values), "min": min(values), "max": max(values), "n": len(values)}


def aggregate(runs: list[dict]) -> dict:
    """Per row set and tool, each figure's median, min and max over the runs; the same for the targets."""
    out: dict = {"runs": len(runs), "sets": {}}
    for run in runs:
        for set_name, rs in run["sets"].items():
            agg = out["sets"].setdefault(set_name, {"title": rs.get("title", set_name), "order": [],
                                                    "values": {}, "targets": {}})
            for name in rs["order"]:
                result = rs["tools"].get(name, {})
                if not result.get("available"):
                    continue
                if name not in agg["order"]:
                    agg["order"].append(name)
                for key, value in figures(result).items():
                    if value is not None:
                        agg["values"].setdefault(name, {}).setdefault(key, []).append(value)
            for key, value in target_figures(rs["tools"]).items():
                if value is not None:
                    agg["targets"].setdefault(key, []).append(value)
    for agg in out["sets"].values():
        agg["values"] = {name: {k: _spread(v) for k, v in figs.items()} for name, figs in agg["values"].items()}
        agg["runs_met"] = {k: (sum(1 for x in v if met(k, x)), len(v)) for k, v in agg["targets"].items()}
        agg["targets"] = {k: _spread(v) for k, v in agg["targets"].items()}
    return out


def _cell(spread: dict | None, nd: int) -> str:
    if spread is None:
        return "n/a"
    if spread["n"] == 1:
        return f"{spread['median']:.{nd}f}"
    return f"{spread['median']:.{nd}f} [{spread['min']:.{nd}f}-{spread['max']:.{nd}f}]"


def render_medians(agg: dict) -> str:
    """A table per row set: each figure's median [min-max] over the runs, then the targets on the medians."""
    lines = [f"median [min-max] of {agg['runs']} full runs"]
    for set_name, rs in agg["sets"].items():
        keys = [k for k in FIGURES if any(k in rs["values"].get(n, {}) for n in rs["order"])]
        head = ["tool"] + [FIGURES[k][0] for k in keys]
        rows = [[name] + [_cell(rs["values"].get(name, {}).get(k), FIGURES[k][1]) for k in keys]
                for name in rs["order"]]
        widths = [max(len(x) for x in col) for col in zip(head, *rows)]

        def line(cells: list[str]) -> str:
            return "  ".join(c.rjust(w) if i else c.ljust(w) for i, (c, w) in enumerate(zip(cells, widths)))

        lines += ["", f"== {set_name}: {rs['title']}", line(head), line(["-" * w for w in widths])]
        lines += [line(r) for r in rows]
        medians = {k: v["median"] for k, v in rs["targets"].items()}
        lines += [""] + target_lines(medians, rs["runs_met"])
        lines[-len(TARGETS) - 1] = "targets for ckptwatch, on the medians of the per-run values:"
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.strip().splitlines()[0])
    p.add_argument("files", nargs="+", help="results JSON files of bench/run.py (--out)")
    args = p.parse_args(argv)
    runs: list[dict] = []
    for name in args.files:
        try:
            runs += runs_of(json.loads(Path(name).read_text()))
        except (OSError, ValueError) as exc:
            print(f"{name}: {exc}", file=sys.stderr)
            return 1
    print(render_medians(aggregate(runs)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
