"""A long run of the policy node, measured per window (reliability.md row 18; issue 9 §6).

``genpolicy bench MODEL --soak-seconds N`` (or ``python -m genpolicy_ros.ros.soak [MODEL]``,
default model ``models/reach_image_flow``, so that camera frames flow) runs ``genpolicy node
--autostart`` in a process of its own with the command-stream probe of
:mod:`.command_stream` playing the robot — JointState at 100 Hz tracking the commands, and
camera frames — while the node generates chunks in its generation child. For ``N``
seconds after a warm-up it records every command (middleware receive stamp, finiteness),
the node's /diagnostics, and once per ``sample_period_s`` the resident memory, open file
descriptors, threads and CPU of the node and its generation child (``/proc``) and the
machine's load average. The numbers per window (``window_s``, default 60 s) come from
:mod:`genpolicy_ros.runtime.bench.soak_stats`; a line per closed window goes to the log
while the soak runs.

Everything here is a measurement; nothing asserts a timing.
"""
from __future__ import annotations

import argparse
import json
import math
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Optional, Sequence

import numpy as np

from ..runtime.bench import proc_stats
from ..runtime.bench.soak_stats import SoakRecorder, soak_summary, soak_windows
from .command_stream import OUTPUT_MODES, StreamProbeConfig, _ProbeRobot, node_and_probe

FORMAT = "genpolicy-soak/1"
DEFAULT_MODEL = "reach_image_flow"


def default_model_dir() -> str:
    """The shipped camera model ``reach_image_flow``, next to the shipped default model
    (colcon share/, pip prefix or the source tree's models/, see .model_lookup)."""
    from .model_lookup import resolve_model_path

    return str(Path(resolve_model_path("")).parent / DEFAULT_MODEL)


@dataclass(frozen=True)
class SoakConfig:
    """The soak's own settings on top of the probe's (:class:`.command_stream.StreamProbeConfig`)."""

    window_s: float = 60.0  # statistics window
    sample_period_s: float = 1.0  # /proc sampling period

    def __post_init__(self):
        for name in ("window_s", "sample_period_s"):
            value = getattr(self, name)
            if not (isinstance(value, (int, float)) and math.isfinite(value) and value > 0):
                raise ValueError(f"{name} must be a finite number > 0, got {value!r}")
        if self.sample_period_s > self.window_s:
            raise ValueError(f"sample_period_s ({self.sample_period_s}) must not exceed window_s ({self.window_s})")


class _SoakProbe(_ProbeRobot):
    """The command-stream probe, recording into a :class:`SoakRecorder` while ``recording``."""

    def __init__(self, context, model_cfg, cfg, recorder: SoakRecorder):
        self.recorder = recorder
        super().__init__(context, model_cfg, cfg)

    def _record(self, pos: np.ndarray, info) -> None:
        now = time.monotonic()
        finite = bool(np.all(np.isfinite(pos)))
        with self.lock:
            self.commands += 1
            if finite:
                self.position = pos
            else:
                self.nonfinite += 1
            recording = self.recording
        if recording:
            self.recorder.add_command(now, None if info is None else info["received_timestamp"], finite)

    def _on_diag(self, msg) -> None:
        super()._on_diag(msg)
        with self.lock:
            values, recording = dict(self.diagnostics), self.recording
        if recording and values:
            self.recorder.add_diagnostics(time.monotonic(), values)


def _window_line(w: dict) -> str:
    node = w["processes"].get("node", {})
    gen = w["processes"].get("generation", {})

    def f(v, fmt="{:.2f}"):
        return "-" if v is None else fmt.format(v)

    return (f"window {w['index']} ({w['start_s']:.0f}-{w['end_s']:.0f} s): {w['commands_per_s']:.1f} cmd/s, "
            f"rx |gap-T| p99 {f(w['rx_jitter_p99_ms'])} max {f(w['rx_jitter_max_ms'])} ms, "
            f"exec p99 {f(w['exec_lateness_p99_ms'])} ms, missed {f(w['missed_ticks'], '{:.0f}')}, "
            f"RSS node {f(node.get('rss_mib'), '{:.1f}')} gen {f(gen.get('rss_mib'), '{:.1f}')} MiB, "
            f"load {f(w['load1'])}")


def run_soak(cfg: StreamProbeConfig, soak: SoakConfig, log=print) -> dict:
    """Run the node for ``cfg.seconds`` after ``cfg.warmup_s``; the soak section (see module doc)."""
    from ..runtime.rate_loop import RateLoop

    recorder = SoakRecorder()
    with node_and_probe(cfg, probe_type=_SoakProbe, log=log, recorder=recorder) as (node, probe, domain_id):
        log(f"warm-up {cfg.warmup_s:g} s, then {cfg.seconds:g} s in windows of {soak.window_s:g} s")
        time.sleep(cfg.warmup_s)
        start = time.monotonic()
        end = start + cfg.seconds
        logged = {"windows": 0}

        def sample(tick) -> None:
            now = time.monotonic()
            recorder.add_processes(now, proc_stats.tree_snapshot(node.pid), proc_stats.load_average())
            closed = int((min(now, end) - start) // soak.window_s)
            if closed > logged["windows"]:
                logged["windows"] = closed
                w = soak_windows(recorder, start, start + closed * soak.window_s, soak.window_s, 1.0 / cfg.rate_hz)
                log(_window_line(w[-1]))

        with probe.lock:
            probe.recording = True
        sampler = RateLoop(1.0 / soak.sample_period_s, sample, name="soak-proc-sampler")
        sampler.start()
        try:
            while time.monotonic() < end:
                if not node.alive():
                    raise RuntimeError("the policy node exited during the soak:\n" + node.log_tail())
                time.sleep(min(0.5, max(0.0, end - time.monotonic())))
        finally:
            sampler.stop()
            with probe.lock:
                probe.recording = False
        with probe.lock:
            last_diag = dict(probe.diagnostics)
        message_info = probe.message_info
    windows = soak_windows(recorder, start, end, soak.window_s, 1.0 / cfg.rate_hz)
    return {"format": FORMAT, "model": str(Path(cfg.model_dir).resolve()),
            "settings": dict(asdict(cfg), **asdict(soak)), "domain_id": domain_id, "message_info": message_info,
            "windows": windows, "summary": soak_summary(windows, recorder, start, end),
            "node_diagnostics_last": last_diag}


def main(argv: Optional[Sequence[str]] = None) -> int:
    p = argparse.ArgumentParser(prog="python -m genpolicy_ros.ros.soak",
                                description="Soak the policy node (its own process) and measure it per window.")
    p.add_argument("model", nargs="?", default=None, help=f"model directory (default: models/{DEFAULT_MODEL})")
    p.add_argument("--seconds", type=float, default=600.0, help="measured seconds (default 600)")
    p.add_argument("--window-s", type=float, default=60.0, help="statistics window in seconds (default 60)")
    p.add_argument("--sample-period-s", type=float, default=1.0, help="/proc sampling period (default 1)")
    p.add_argument("--warmup", type=float, default=5.0, help="seconds after the first command (default 5)")
    p.add_argument("--rate", type=float, default=100.0, help="control_rate_hz of the node (default 100)")
    p.add_argument("--camera-rate", type=float, default=None, help="camera frames per second (default 1/dt)")
    p.add_argument("--camera-size", default=None, metavar="HxW", help="frame size (default: the model's)")
    p.add_argument("--output-mode", default="forward_command", choices=OUTPUT_MODES)
    p.add_argument("--backend", default="auto")
    p.add_argument("--domain-id", type=int, default=None)
    p.add_argument("--json", default=None, help="write the soak section here")
    args = p.parse_args(argv)
    try:
        size = None
        if args.camera_size:
            h, _, w = args.camera_size.lower().partition("x")
            size = (int(h), int(w))
        cfg = StreamProbeConfig(model_dir=args.model or default_model_dir(), seconds=args.seconds,
                                warmup_s=args.warmup, rate_hz=args.rate, output_mode=args.output_mode,
                                backend=args.backend, domain_id=args.domain_id, camera_rate_hz=args.camera_rate,
                                camera_size=size)
        soak = SoakConfig(window_s=args.window_s, sample_period_s=args.sample_period_s)
        section = run_soak(cfg, soak, log=lambda m: print(m, file=sys.stderr, flush=True))
    except (ValueError, RuntimeError, OSError) as exc:
        print(f"soak: {exc}", file=sys.stderr)
        return 2
    from ..runtime.bench.soak import format_soak_table

    print(format_soak_table(section))
    if args.json:
        Path(args.json).write_text(json.dumps(section, indent=2, allow_nan=False, default=_json_default) + "\n")
    return 0


def _json_default(value):
    if isinstance(value, (np.floating, np.integer)):
        return value.item()
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")


if __name__ == "__main__":
    sys.exit(main())
