#!/usr/bin/env python3
"""Issue 11 §3: receive-side jitter and executor lateness for each process-placement idea.

Runs ``python -m genpolicy_ros.ros.command_stream`` (the node in its own process, a probe
robot over real DDS) once per variant per round, interleaving the variants so that load
from the rest of the machine falls on all of them alike, and prints the median over rounds:

    python scripts/jitter_ab.py models/reach_flow --seconds 30 --rounds 2 --json /tmp/jitter.json

Generation runs (nearly) back to back: ``action_horizon:=2`` asks for a chunk every 2 rows
(0.1 s for the reach models) and ``num_steps`` (default 60) makes each chunk take about that
long on one core. Variants (node parameters): baseline; worker_niceness 10; cpu_split;
gc_freeze; all three; the node on rclpy's EventsExecutor (``genpolicy node --executor events``)
alone and with all three.
"""
from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

VARIANTS = {
    "baseline": [],
    "worker_niceness 10": ["worker_niceness:=10"],
    "cpu_split": ["cpu_split:=true"],
    "gc_freeze": ["gc_freeze:=true"],
    "all three": ["worker_niceness:=10", "cpu_split:=true", "gc_freeze:=true"],
    # entries starting with "--" are options of `genpolicy node` itself
    "events executor": ["--executor", "events"],
    "events + all three": ["--executor", "events", "worker_niceness:=10", "cpu_split:=true", "gc_freeze:=true"],
}
NODE_ARG_VALUES = ("events", "single")  # values of `genpolicy node --executor`
FIGURES = (("middleware", "jitter_p99_ms", "receive |gap-period| p99"),
           ("middleware", "jitter_max_ms", "receive |gap-period| max"),
           ("node_diagnostics", "executor_lateness_p99_ms", "executor lateness p99"),
           ("node_diagnostics", "executor_lateness_max_ms", "executor lateness max"),
           ("node_diagnostics", "latency_p50_ms", "chunk latency p50"))


def run_one(model: str, seconds: float, params: list, out: Path) -> dict:
    cmd = [sys.executable, "-m", "genpolicy_ros.ros.command_stream", model, "--seconds", str(seconds),
           "--json", str(out)]
    for p in params:
        cmd += [f"--node-arg={p}"] if p.startswith("--") or p in NODE_ARG_VALUES else ["--param", p]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=seconds + 240)
    if done.returncode != 0:
        raise RuntimeError(f"command_stream failed ({done.returncode}): {done.stderr[-2000:]}")
    return json.loads(out.read_text())


def figure(report: dict, section: str, key: str):
    value = (report.get(section) or {}).get(key)
    return None if value is None else float(value)


def summarise(runs: dict) -> dict:
    """``{variant: [report, ...]}`` -> ``{variant: {figure label: median over rounds}}``."""
    table = {}
    for name, reports in runs.items():
        row = {}
        for section, key, label in FIGURES:
            values = [v for v in (figure(r, section, key) for r in reports) if v is not None]
            row[label] = statistics.median(values) if values else None
        row["rounds"] = len(reports)
        table[name] = row
    return table


def format_table(table: dict) -> str:
    labels = [label for _, _, label in FIGURES]
    lines = ["| variant | " + " | ".join(f"{lb} (ms)" for lb in labels) + " |",
             "|---|" + "---|" * len(labels)]
    for name, row in table.items():
        cells = ["—" if row[lb] is None else f"{row[lb]:.2f}" for lb in labels]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("model")
    ap.add_argument("--seconds", type=float, default=30.0)
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--num-steps", type=int, default=60, help="sampler steps per chunk (load of the worker)")
    ap.add_argument("--variants", default=",".join(VARIANTS), help="comma-separated subset of: " + ", ".join(VARIANTS))
    ap.add_argument("--json", default=None)
    args = ap.parse_args(argv)
    names = [v.strip() for v in args.variants.split(",") if v.strip()]
    unknown = [v for v in names if v not in VARIANTS]
    if unknown:
        ap.error(f"unknown variants {unknown}; choose from {list(VARIANTS)}")
    common = ["action_horizon:=2", f"num_steps:={args.num_steps}"]
    runs = {name: [] for name in names}
    with tempfile.TemporaryDirectory() as tmp:
        for rnd in range(args.rounds):
            for name in names:
                report = run_one(args.model, args.seconds, common + VARIANTS[name], Path(tmp) / "r.json")
                runs[name].append(report)
                mid = report.get("middleware") or {}
                print(f"round {rnd + 1} {name:20} receive p99 {mid.get('jitter_p99_ms')} ms, "
                      f"lateness p99 {(report.get('node_diagnostics') or {}).get('executor_lateness_p99_ms')} ms",
                      file=sys.stderr, flush=True)
    table = summarise(runs)
    print(format_table(table))
    if args.json:
        Path(args.json).write_text(json.dumps({"settings": vars(args), "common_params": common, "table": table,
                                               "runs": runs}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
