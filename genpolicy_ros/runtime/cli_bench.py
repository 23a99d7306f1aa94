"""``genpolicy bench MODEL --json FILE [--plot DIR]``: latency, executor jitter, seam smoothness.

Four measurements in one run (see :mod:`genpolicy_ros.runtime.bench`):

1. chunk latency per device × backend × sampler-steps (default DDPM-100, DDIM-10,
   flow-5, flow-10; the other family than the model's runs on a same-architecture twin);
2. the executor (RateLoop + PolicyEngine at ``--rate``) idle, then while a generation
   process runs back-to-back, for ``--executor-seconds`` each;
3. seams: executed-action acceleration at chunk switches vs inside chunks, per blending
   mode, on a simulated clock with the generation latency emulated in rows;
4. the ROS command stream (``--ros-seconds``, when rclpy is installed): ``genpolicy node``
   in a process of its own, commands timed where a controller receives them
   (:mod:`genpolicy_ros.ros.command_stream`, run as a child process so that this module
   stays ROS-free).

``--soak-seconds N`` runs a soak *instead* of these four (:mod:`genpolicy_ros.runtime.bench.soak`):
the node in its own process for N seconds with camera frames and generation running,
per-window lateness, RSS, file descriptors and threads; ``soak`` in the JSON, ``soak.png``.

Prints a table, writes ``--json FILE`` and, with ``--plot DIR``, PNGs.
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import math
import sys
from pathlib import Path

from .bench.latency import DEFAULT_BACKENDS, DEFAULT_DEVICES, DEFAULT_SPECS
from .bench.soak import add_soak_arguments


def _csv(text: str) -> list:
    return [t.strip() for t in str(text).split(",") if t.strip()]


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("model", metavar="MODEL", help="model directory (config.json + model.safetensors)")
    p.add_argument("--json", metavar="FILE", required=True, help="write the report here")
    p.add_argument("--plot", metavar="DIR", default=None, help="write PNG plots into DIR")
    p.add_argument("--backends", default=",".join(DEFAULT_BACKENDS),
                   help="comma-separated backends to time (default: %(default)s; unavailable ones are "
                        "reported as skipped)")
    p.add_argument("--samplers", default=",".join(DEFAULT_SPECS),
                   help="comma-separated sampler-steps cells (default: %(default)s)")
    p.add_argument("--devices", default=",".join(DEFAULT_DEVICES),
                   help="cpu and/or cuda (cuda rows are skipped with a reason when there is no GPU)")
    p.add_argument("--repeats", type=int, default=30, help="timed chunks per cell and backend (default 30)")
    p.add_argument("--warmup", type=int, default=3, help="untimed chunks first (default 3)")
    p.add_argument("--threads", type=int, default=1, help="torch / ONNX Runtime intra-op threads (default 1)")
    p.add_argument("--cache-dir", default=None, help="engine cache (default: the model's engines/ or user cache)")
    p.add_argument("--executor-seconds", type=float, default=60.0,
                   help="seconds of each executor run, idle and generating (default 60)")
    p.add_argument("--rate", type=float, default=100.0, help="executor / control rate in Hz (default 100)")
    p.add_argument("--executor-backend", default="auto", help="generation worker backend (default auto)")
    p.add_argument("--skip-executor", action="store_true", help="do not run the executor measurement")
    p.add_argument("--skip-seams", action="store_true", help="do not run the seam measurement")
    p.add_argument("--skip-latency", action="store_true", help="do not run the latency measurement")
    p.add_argument("--seam-episodes", type=int, default=3, help="simulated episodes per blending mode (default 3)")
    p.add_argument("--seam-seconds", type=float, default=3.0, help="simulated seconds per episode (default 3)")
    p.add_argument("--seam-delay-rows", type=int, default=-1,
                   help="emulated generation latency in chunk rows; -1 = ceil(p99 / dt) of the fastest "
                        "backend for the model's default sampler (default -1)")
    p.add_argument("--seam-plant", default="auto", choices=("auto", "task", "reach", "synthetic"),
                   help="closed loop in the model's task (task; reach is its older name), or a synthetic "
                        "open-loop stream (default auto: the task's when it fits the model)")
    p.add_argument("--seam-grid-delays", default="",
                   help="comma-separated delays in rows (e.g. 1,2,4): also measure the seam ratio of none / "
                        "ensemble / rtc-hard / rtc-guided on every delay × --seam-grid-horizons cell")
    p.add_argument("--seam-grid-horizons", default="",
                   help="comma-separated action horizons T_a for the grid (default: the model's)")
    p.add_argument("--ros-seconds", type=float, default=20.0,
                   help="seconds of the ROS command-stream measurement: the node in its own process at --rate, "
                        "inter-arrival jitter where the commands are received; 0 skips (default 20)")
    p.add_argument("--ros-output-mode", default="forward_command", choices=("forward_command", "joint_trajectory"),
                   help="command message of the ROS measurement (default %(default)s)")
    p.add_argument("--seed", type=int, default=0, help="noise / episode seed (default 0)")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    add_soak_arguments(p)


def inference_defaults(model_dir) -> dict:
    """EngineSettings fields given by the model directory (``inference`` object of
    config.json or of its ``metadata``), unknown keys ignored."""
    from .engine import EngineSettings

    path = Path(model_dir) / "config.json"
    try:
        doc = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    section = doc.get("inference") or (doc.get("metadata") or {}).get("inference") or {}
    fields = {f.name for f in dataclasses.fields(EngineSettings)}
    return {k: v for k, v in section.items() if k in fields} if isinstance(section, dict) else {}


def _check(args) -> None:
    for name in ("repeats", "threads", "seam_episodes"):
        if getattr(args, name) < 1:
            raise ValueError(f"--{name.replace('_', '-')} must be >= 1, got {getattr(args, name)}")
    if args.warmup < 0:
        raise ValueError(f"--warmup must be >= 0, got {args.warmup}")
    if not math.isfinite(args.ros_seconds) or args.ros_seconds < 0:
        raise ValueError(f"--ros-seconds must be >= 0, got {args.ros_seconds}")
    for name in ("executor_seconds", "seam_seconds"):
        v = getattr(args, name)
        if not math.isfinite(v) or v <= 0:
            raise ValueError(f"--{name.replace('_', '-')} must be > 0, got {v}")
    if not 1.0 <= args.rate <= 1000.0:
        raise ValueError(f"--rate must be in [1, 1000] Hz, got {args.rate}")
    for name, low in (("seam_grid_delays", 0), ("seam_grid_horizons", 1)):
        text = getattr(args, name)
        try:
            values = [int(v) for v in _csv(text)]
        except ValueError:
            values = [low - 1]
        if any(v < low for v in values):
            raise ValueError(f"--{name.replace('_', '-')} must be comma-separated ints >= {low}, got {text!r}")


class _Progress:
    """tqdm when wanted and installed, otherwise nothing."""

    def __init__(self, enabled: bool):
        self.enabled = enabled

    def bar(self, total, desc, unit):
        if not self.enabled:
            return None
        try:
            from tqdm import tqdm
        except ImportError:
            return None
        return tqdm(total=total, desc=desc, unit=unit, leave=False, file=sys.stderr)


def run(args) -> int:
    if args.soak_seconds:
        from .bench.soak import run_soak_bench

        return run_soak_bench(args)
    try:
        _check(args)
        specs_text, backends, devices = _csv(args.samplers), _csv(args.backends), _csv(args.devices)
        from .bench.latency import LatencyConfig, SamplerSpec

        lat_cfg = LatencyConfig(specs=tuple(SamplerSpec.parse(s) for s in specs_text), backends=tuple(backends),
                                devices=tuple(devices), repeats=args.repeats, warmup=args.warmup,
                                threads=args.threads, seed=args.seed, cache_dir=args.cache_dir)
    except ValueError as exc:
        print(f"genpolicy bench: {exc}", file=sys.stderr)
        return 2
    return _run(args, lat_cfg)


def _run(args, lat_cfg) -> int:
    import torch

    from ..core.checkpoint import ModelLoadError, load_model_dir
    from .backends.base import SamplerSettings
    from .bench import report as rep
    from .bench.executor import ExecutorConfig, measure_executor
    from .bench.latency import delay_rows, measure_latency, speedup_summary
    from .bench.seams import SeamConfig, measure_seams
    from .engine import EngineSettings

    torch.set_num_threads(args.threads)
    try:
        policy = load_model_dir(args.model)
    except ModelLoadError as exc:
        print(f"genpolicy bench: {exc}", file=sys.stderr)
        return 2
    progress = _Progress(not args.no_progress)
    defaults = inference_defaults(args.model)
    try:
        engine_settings = EngineSettings(**dict(defaults, control_rate_hz=float(args.rate), seed=args.seed))
    except (TypeError, ValueError) as exc:
        print(f"genpolicy bench: invalid inference defaults in {args.model}: {exc}", file=sys.stderr)
        return 2
    settings = {"latency": {**dataclasses.asdict(lat_cfg), "specs": [s.name for s in lat_cfg.specs]},
                "inference_defaults": defaults, "seed": args.seed, "threads": args.threads}
    skipped = {}

    rows = speed = None
    if args.skip_latency:
        skipped["latency"] = "--skip-latency"
    else:
        n_cells = len(lat_cfg.specs) * sum(1 for d in lat_cfg.devices if d == "cpu" or torch.cuda.is_available())
        bar = progress.bar(n_cells * (lat_cfg.warmup + lat_cfg.repeats), "latency", "rep")
        rows = measure_latency(policy, lat_cfg, progress=(lambda: bar.update(1)) if bar else None)
        if bar:
            bar.close()
        speed = speedup_summary(rows)

    executor = None
    if args.skip_executor:
        skipped["executor"] = "--skip-executor"
    else:
        ex_cfg = ExecutorConfig(rate_hz=args.rate, seconds=args.executor_seconds, backend=args.executor_backend,
                                threads=args.threads, settings=engine_settings)
        bar = progress.bar(round(2 * args.executor_seconds, 1), "executor", "s")
        done = {"idle": 0.0, "generating": 0.0}

        def ex_progress(phase, seconds):
            if bar:
                done[phase] = seconds
                bar.n = round(done["idle"] + done["generating"], 1)
                bar.refresh()

        executor = measure_executor(args.model, policy.config, ex_cfg, progress=ex_progress)
        if bar:
            bar.close()
        settings["executor"] = {"rate_hz": args.rate, "seconds": args.executor_seconds,
                                "backend": args.executor_backend, "threads": args.threads}

    seams = None
    if args.skip_seams:
        skipped["seams"] = "--skip-seams"
    else:
        default = SamplerSettings(sampler=engine_settings.sampler, num_steps=engine_settings.num_steps).resolved(policy)
        default_spec = f"{default.sampler}-{default.num_steps}"
        rows_delay = args.seam_delay_rows
        if rows_delay < 0:
            rows_delay = delay_rows(rows or [], default_spec, policy.config.horizon.dt) or 2
        other = "hard" if engine_settings.rtc_prefix_mode == "guided" else "guided"
        seam_cfg = SeamConfig(modes=("none", "ensemble", "rtc", f"rtc-{other}"), episodes=args.seam_episodes,
                              seconds=args.seam_seconds, delay_rows=int(rows_delay),
                              rate_hz=args.rate, seed=args.seed, plant=args.seam_plant, settings=engine_settings)
        bar = progress.bar(len(seam_cfg.modes) * seam_cfg.episodes, "seams", "episode")
        seams = measure_seams(policy, seam_cfg, progress=(lambda: bar.update(1)) if bar else None,
                              task_plant=getattr(args, "task_plant", None))  # given by the CLI wiring
        if bar:
            bar.close()
        settings["seams"] = {"plant": seams["plant"], "delay_rows": seams["delay_rows"], "delay_s": seams["delay_s"],
                             "delay_from": "--seam-delay-rows" if args.seam_delay_rows >= 0
                             else f"p99 of the fastest backend for {default_spec} (2 if not measured)",
                             "rtc_prefix_mode": engine_settings.rtc_prefix_mode, "episodes": seam_cfg.episodes,
                             "seconds": seam_cfg.seconds, "rate_hz": args.rate,
                             "engine_settings": dataclasses.asdict(engine_settings),
                             "safety_filter": "velocity/acceleration/jump limits relaxed to their maxima"}

    seam_grid = None
    if args.seam_grid_delays:
        from .bench.seams import GRID_MODES, format_seam_grid, measure_seam_grid

        horizons = [int(h) for h in _csv(args.seam_grid_horizons)] or [
            engine_settings.action_horizon or policy.config.horizon.T_a]
        grid_cfg = SeamConfig(modes=GRID_MODES, episodes=args.seam_episodes, seconds=args.seam_seconds,
                              rate_hz=args.rate, seed=args.seed, plant=args.seam_plant, settings=engine_settings)
        delays = [int(d) for d in _csv(args.seam_grid_delays)]
        bar = progress.bar(len(delays) * len(horizons) * len(GRID_MODES) * args.seam_episodes, "seam grid", "episode")
        seam_grid = measure_seam_grid(policy, grid_cfg, delays, horizons,
                                      progress=(lambda: bar.update(1)) if bar else None,
                                      task_plant=getattr(args, "task_plant", None))
        if bar:
            bar.close()

    ros_stream = _measure_ros_stream(args, skipped)

    report = rep.build_report(machine=rep.machine_info(), model=rep.model_info(args.model, policy),
                              settings=settings, latency_rows=rows, speedup=speed, executor=executor,
                              seams=seams, skipped=skipped, ros_stream=ros_stream)
    report["soak"] = {"skipped": True, "reason": "no --soak-seconds (a soak runs alone)"}
    if seam_grid is not None:
        report["seam_grid"] = seam_grid
    path = rep.write_json(report, args.json)
    print(rep.format_table(report))
    if seam_grid is not None:
        print("\n" + format_seam_grid(seam_grid))
    print(f"\nreport written to {path}")
    if args.plot:
        from .bench import plots

        out = Path(args.plot)
        out.mkdir(parents=True, exist_ok=True)
        written = []
        if rows:
            written += plots.latency_histograms(rows, out)
        if seams:
            written += plots.seam_traces(seams, out, policy.config.action.joint_names)
        if executor:
            written += plots.executor_lateness(executor, out)
        print(f"plots: {', '.join(str(p) for p in written)}")
    return 0


def _measure_ros_stream(args, skipped: dict):
    """The ROS command-stream report from a child process, or None with the reason in ``skipped``."""
    import importlib.util
    import subprocess
    import tempfile

    key = "ros_command_stream"
    if args.ros_seconds == 0:
        skipped[key] = "--ros-seconds 0"
        return None
    if importlib.util.find_spec("rclpy") is None:
        skipped[key] = "rclpy is not installed (pip extra [ros] or a sourced ROS 2)"
        return None
    with tempfile.TemporaryDirectory(prefix="genpolicy_bench_ros_") as tmp:
        out = Path(tmp) / "stream.json"
        cmd = [sys.executable, "-m", "genpolicy_ros.ros.command_stream", str(args.model),
               "--seconds", str(args.ros_seconds), "--rate", str(args.rate), "--backend", args.executor_backend,
               "--output-mode", args.ros_output_mode, "--json", str(out)]
        print(f"ROS command stream: {args.ros_seconds:g} s at {args.rate:g} Hz (node in its own process) ...",
              file=sys.stderr)
        done = subprocess.run(cmd, capture_output=True, text=True)
        if done.returncode != 0 or not out.is_file():
            tail = (done.stderr or done.stdout).strip().splitlines()[-3:]
            skipped[key] = f"failed (exit {done.returncode}): {' | '.join(tail)}"
            return None
        return json.loads(out.read_text())
