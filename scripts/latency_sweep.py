#!/usr/bin/env python3
"""Closed-loop success vs emulated generation latency per chunk-blending mode (issue 11 §2).

Runs one ``genpolicy eval`` per cell (model × latency × mode) over ROS, sequentially, keeps
each cell's JSON in ``--cells`` (an existing cell JSON is reused: a cut-short sweep resumes),
and writes the sweep JSON, a Markdown table and the "success vs latency per mode" plot::

    nice -n 10 .venv/bin/python scripts/latency_sweep.py models/reach_flow models/obstacle_flow \\
        --episodes 15 --out docs/latency_sweep

See :mod:`genpolicy_ros.sim.latency_sweep` for the figures and the time base.
"""
from __future__ import annotations

import argparse
import json
import shlex
import shutil
import subprocess
import sys
import time
from pathlib import Path

from genpolicy_ros.sim.latency_sweep import (
    DEFAULT_LATENCIES_MS,
    MODES,
    cell_summary,
    cells,
    eval_command,
    format_table,
    plot_success,
    sweep_document,
)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("models", nargs="+", help="model directories")
    ap.add_argument("--latencies", type=float, nargs="+", default=list(DEFAULT_LATENCIES_MS),
                    help="emulated latencies in ms (0 = the model's own speed; default %(default)s)")
    ap.add_argument("--modes", nargs="+", default=list(MODES), choices=list(MODES))
    ap.add_argument("--episodes", type=int, default=15, help="episodes per cell (default 15)")
    ap.add_argument("--seed", type=int, default=0, help="sim seed: every cell sees the same episodes")
    ap.add_argument("--out", default="latency_sweep", help="folder for sweep.json, table.md, the PNG")
    ap.add_argument("--cells", default=None, help="folder for the per-cell eval JSONs (default OUT/cells)")
    ap.add_argument("--action-horizon", default="auto",
                    help="T_a per cell: auto (raised with the latency so that 2·L <= T_a·dt; the same for every "
                         "mode), model (the model's), or a number of rows (default auto)")
    ap.add_argument("--aggregate-only", action="store_true", help="only summarise the cell JSONs found")
    args = ap.parse_args(argv)
    if args.episodes < 1:
        ap.error("--episodes must be >= 1")

    out = Path(args.out)
    cell_dir = Path(args.cells) if args.cells else out / "cells"
    cell_dir.mkdir(parents=True, exist_ok=True)
    program = [shutil.which("genpolicy") or "genpolicy"]
    if not Path(program[0]).exists():
        program = [sys.executable, "-m", "genpolicy_ros.cli"]
    summaries = []
    if args.action_horizon not in ("auto", "model") and not args.action_horizon.isdigit():
        ap.error("--action-horizon must be auto, model or a number of rows")
    todo = cells(args.models, args.modes, args.latencies, args.action_horizon)
    for i, cell in enumerate(todo, 1):
        path = cell_dir / f"{cell.name}.json"
        if not path.is_file() and not args.aggregate_only:
            cmd = eval_command(cell, args.episodes, str(path), seed=args.seed, program=program)
            print(f"[{i}/{len(todo)}] {time.strftime('%H:%M:%S')} {shlex.join(cmd)}", flush=True)
            done = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
            if done.returncode != 0:
                print(f"cell {cell.name} failed (exit {done.returncode}):\n{done.stdout[-3000:]}", flush=True)
                continue
        if path.is_file():
            summary = cell_summary(cell, json.loads(path.read_text()))
            summary["eval_command"] = shlex.join(eval_command(cell, summary["episodes"], path.name, seed=args.seed))
            summaries.append(summary)
            print(f"  {cell.name}: success {summary['successes']}/{summary['episodes']}, "
                  f"seam jump ratio {summary['seam_jump_ratio']}, idle ticks {summary['idle_ticks']}, "
                  f"sim real time {summary['real_time']}", flush=True)
    if not summaries:
        print("no cell results", file=sys.stderr)
        return 1
    command = "python scripts/latency_sweep.py " + shlex.join(sys.argv[1:] if argv is None else list(argv))
    doc = sweep_document(summaries, [command], args.seed)
    out.mkdir(parents=True, exist_ok=True)
    (out / "sweep.json").write_text(json.dumps(doc, indent=2, allow_nan=False) + "\n")
    table = format_table(summaries)
    (out / "table.md").write_text(table + "\n")
    plot_success(summaries, str(out / "success_vs_latency.png"),
                 title="closed loop over ROS; 95 % Wilson intervals; hollow: sim behind real time\n"
                       "T_a raised with latency (same for every mode)")
    print(table)
    print(f"wrote {out / 'sweep.json'}, {out / 'table.md'}, {out / 'success_vs_latency.png'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
