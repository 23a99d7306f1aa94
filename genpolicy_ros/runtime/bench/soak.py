"""``genpolicy bench MODEL --soak-seconds N``: the soak, a section of the bench report.

The soak runs on its own (the other bench sections are skipped, their reason says so):
``python -m genpolicy_ros.ros.soak`` in a child process (so that this module stays
ROS-free) runs ``genpolicy node`` for N seconds at ``--rate`` with the probe robot and
camera frames, and returns one row of numbers per ``--soak-window-s`` window
(runtime/bench/soak_stats.py). Here: the ``soak`` key of the JSON report, a printed table
and, with ``--plot DIR``, ``DIR/soak.png`` — one point per window, joined by lines, so a
healthy 10-minute soak shows flat lines:

* receive-side ``|gap − period|`` p50 / p99 / max and the node's executor lateness p99 /
  max (ms, log scale);
* resident memory of the node and its generation child (MiB);
* open file descriptors and threads of both;
* commands per second, with the machine's 1-minute load average.
"""
from __future__ import annotations

import json
import math
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Optional, Tuple

ROLES_SHOWN = ("node", "generation")
# A crash of the measuring process (the probe robot, not the node under test: its exit is checked
# in the soak itself) is run once more and recorded in the section's ``crashed_attempts``.
SOAK_RETRIES_AFTER_CRASH = 1


def add_soak_arguments(p) -> None:
    p.add_argument("--soak-seconds", type=float, default=0.0,
                   help="run only the soak: the node in its own process for this many seconds at --rate with "
                        "camera frames and generation running; per-window lateness, RSS, file descriptors, "
                        "threads (default 0: no soak)")
    p.add_argument("--soak-window-s", type=float, default=60.0,
                   help="statistics window of the soak in seconds (default 60)")


def check_soak_args(args) -> None:
    if not (math.isfinite(args.soak_seconds) and args.soak_seconds > 0):
        raise ValueError(f"--soak-seconds must be > 0, got {args.soak_seconds}")
    if not (math.isfinite(args.soak_window_s) and args.soak_window_s > 0):
        raise ValueError(f"--soak-window-s must be > 0, got {args.soak_window_s}")
    if not 1.0 <= args.rate <= 1000.0:
        raise ValueError(f"--rate must be in [1, 1000] Hz, got {args.rate}")


def measure_soak(args) -> Tuple[Optional[dict], str]:
    """The soak section from a child process, or ``(None, why)``. Its log goes to stderr."""
    import importlib.util

    if importlib.util.find_spec("rclpy") is None:
        return None, "rclpy is not installed (pip extra [ros] or a sourced ROS 2)"
    with tempfile.TemporaryDirectory(prefix="genpolicy_soak_") as tmp:
        out = Path(tmp) / "soak.json"
        # -X faulthandler: a crash of the child prints every thread's Python stack to the log
        cmd = [sys.executable, "-X", "faulthandler", "-m", "genpolicy_ros.ros.soak", str(args.model),
               "--seconds", str(args.soak_seconds), "--window-s", str(args.soak_window_s), "--rate", str(args.rate),
               "--backend", args.executor_backend, "--output-mode", args.ros_output_mode, "--json", str(out)]
        print(f"soak: {args.soak_seconds:g} s at {args.rate:g} Hz, windows of {args.soak_window_s:g} s "
              "(node in its own process) ...", file=sys.stderr, flush=True)
        crashes = []
        for _ in range(1 + SOAK_RETRIES_AFTER_CRASH):
            done = subprocess.run(cmd, stdout=subprocess.DEVNULL, stderr=None)  # the child's log streams through
            if done.returncode >= 0 or out.is_file():
                break
            crashes.append(_signal_name(-done.returncode))
            print(f"soak: the measuring process died of {crashes[-1]} (its stacks are above); "
                  + ("running the soak again" if len(crashes) <= SOAK_RETRIES_AFTER_CRASH else "giving up"),
                  file=sys.stderr, flush=True)
        if done.returncode != 0 or not out.is_file():
            why = f"died of {crashes[-1]}" if done.returncode < 0 else f"exit {done.returncode}"
            return None, f"the soak failed ({why}; its log is above)"
        section = json.loads(out.read_text())
        section["crashed_attempts"] = crashes  # [] normally; a crashed attempt is never hidden
        return section, ""


def _signal_name(number: int) -> str:
    import signal

    try:
        return signal.Signals(number).name
    except ValueError:
        return f"signal {number}"


def _f(v, fmt="{:.2f}") -> str:
    return "-" if v is None else fmt.format(v)


def _pair(w: dict, key: str, fmt: str) -> str:
    p = w["processes"]
    return "/".join(_f(p.get(role, {}).get(key), fmt) for role in ROLES_SHOWN)


def format_soak_table(section: dict) -> str:
    """The soak, one line per window, then the summary."""
    s, summary = section["settings"], section["summary"]
    lines = [f"soak: {summary['duration_s']:.0f} s of genpolicy node (own process) at {s['rate_hz']:g} Hz, "
             f"model {section['model']}, windows of {s['window_s']:g} s; times in ms; node/generation child",
             f"{'win':>3} {'end s':>6} {'cmd/s':>6} {'nonfin':>6}  {'rx |gap-T| p50/p99/max':>23}  "
             f"{'exec p99/max':>13} {'missed':>6} {'chunk/s':>7} {'gen p95':>7}  {'RSS MiB':>11} {'fds':>7} "
             f"{'threads':>7} {'CPU %':>9} {'load1':>5}"]
    for w in section["windows"]:
        rx = "/".join(_f(w[k], "{:.2f}") for k in ("rx_jitter_p50_ms", "rx_jitter_p99_ms", "rx_jitter_max_ms"))
        ex = "/".join(_f(w[k], "{:.2f}") for k in ("exec_lateness_p99_ms", "exec_lateness_max_ms"))
        lines.append(f"{w['index']:>3} {w['end_s']:>6.0f} {w['commands_per_s']:>6.1f} {w['nonfinite']:>6}  "
                     f"{rx:>23}  {ex:>13} {_f(w['missed_ticks'], '{:.0f}'):>6} {_f(w['chunks_per_s'], '{:.1f}'):>7} "
                     f"{_f(w['generation_p95_ms'], '{:.1f}'):>7}  {_pair(w, 'rss_mib', '{:.1f}'):>11} "
                     f"{_pair(w, 'fds', '{}'):>7} {_pair(w, 'threads', '{}'):>7} "
                     f"{_pair(w, 'cpu_percent', '{:.0f}'):>9} {_f(w['load1'], '{:.1f}'):>5}")
    lines.append(f"summary: {summary['commands']} commands = {_f(summary['commands_per_s'])}/s, "
                 f"{summary['nonfinite_commands']} non-finite; rx |gap-T| p99 median window "
                 f"{_f(summary['rx_jitter_p99_ms_median_window'])} ms, worst "
                 f"{_f(summary['rx_jitter_p99_ms_worst_window'])} ms, max {_f(summary['rx_jitter_max_ms'])} ms;\n"
                 f"  executor lateness p99 worst {_f(summary['exec_lateness_p99_ms_worst_window'])} ms, "
                 f"max {_f(summary['exec_lateness_max_ms'])} ms, "
                 f"missed ticks {_f(summary['missed_ticks'], '{:.0f}')}; generation errors "
                 f"{summary['generation_errors']:.0f}, restarts {summary['generation_restarts']}; "
                 f"load1 {_f(summary['load1_min'], '{:.1f}')}..{_f(summary['load1_max'], '{:.1f}')}")
    for role in ROLES_SHOWN:
        r = summary["processes"].get(role)
        if r:
            lines.append(f"  {role:10} RSS {_f(r['rss_first_mib'], '{:.1f}')} -> {_f(r['rss_last_mib'], '{:.1f}')} MiB "
                         f"(growth {_f(r['rss_growth_mib'], '{:+.2f}')} MiB, slope "
                         f"{_f(r['rss_slope_mib_per_min'], '{:+.3f}')} MiB/min), fds {r['fds_first']} -> "
                         f"{r['fds_last']}, threads {r['threads_first']} -> {r['threads_last']}")
    if section.get("crashed_attempts"):
        lines.append(f"  the measuring process crashed before this run: {', '.join(section['crashed_attempts'])}")
    return "\n".join(lines)


def plot_soak(section: dict, out_dir) -> Path:
    """``out_dir/soak.png`` (see the module docstring)."""
    from .plots import _plt

    plt = _plt()
    windows = section["windows"]
    x = [w["end_s"] / 60.0 for w in windows]  # [W] minutes

    def series(key, role=None):
        if role is None:
            return [math.nan if w.get(key) is None else w[key] for w in windows]
        return [math.nan if w["processes"].get(role, {}).get(key) is None else w["processes"][role][key]
                for w in windows]

    fig, axes = plt.subplots(2, 2, figsize=(12, 7.5), sharex=True)
    ax = axes[0, 0]
    for key, label, style in (("rx_jitter_p50_ms", "rx |gap-T| p50", "-"),
                              ("rx_jitter_p99_ms", "rx |gap-T| p99", "-"), ("rx_jitter_max_ms", "rx |gap-T| max", "-"),
                              ("exec_lateness_p99_ms", "executor lateness p99", "--"),
                              ("exec_lateness_max_ms", "executor lateness max", "--")):
        ax.plot(x, series(key), style, marker="o", label=label)
    ax.set_yscale("log")
    ax.set_ylabel("ms")
    ax.set_title("timing per window")
    ax.legend(fontsize=7)
    ax = axes[0, 1]
    for role in ROLES_SHOWN:
        ax.plot(x, series("rss_mib", role), marker="o", label=f"{role} RSS (median)")
        ax.plot(x, series("rss_max_mib", role), ":", label=f"{role} RSS (max)")
    ax.set_ylabel("MiB")
    ax.set_title("resident memory")
    ax.legend(fontsize=7)
    ax = axes[1, 0]
    for role in ROLES_SHOWN:
        ax.plot(x, series("fds", role), marker="o", label=f"{role} open fds")
        ax.plot(x, series("threads", role), "--", marker="s", label=f"{role} threads")
    ax.set_ylabel("count")
    ax.set_xlabel("minutes")
    ax.set_title("file descriptors and threads")
    ax.legend(fontsize=7)
    ax = axes[1, 1]
    ax.plot(x, series("commands_per_s"), marker="o", label="commands/s")
    ax.set_ylabel("commands / s")
    ax.set_xlabel("minutes")
    ax.set_title("command rate and machine load")
    load = ax.twinx()
    load.plot(x, series("load1"), "--", color="grey", label="load average (1 min)")
    load.set_ylabel("load average")
    ax.legend(loc="lower left", fontsize=7)
    load.legend(loc="lower right", fontsize=7)
    s = section["settings"]
    fig.suptitle(f"soak {section['summary']['duration_s']:.0f} s at {s['rate_hz']:g} Hz, "
                 f"{Path(section['model']).name}, windows of {s['window_s']:g} s")
    fig.tight_layout()
    path = Path(out_dir) / "soak.png"
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return path


def run_soak_bench(args) -> int:
    """``genpolicy bench MODEL --soak-seconds N [--json FILE] [--plot DIR]``: the soak alone."""
    from ...core.checkpoint import ModelLoadError, load_model_dir
    from . import report as rep

    try:
        check_soak_args(args)
        policy = load_model_dir(args.model)
    except (ValueError, ModelLoadError) as exc:
        print(f"genpolicy bench: {exc}", file=sys.stderr)
        return 2
    section, why = measure_soak(args)
    if section is None:
        print(f"genpolicy bench: {why}", file=sys.stderr)
        return 1
    alone = "--soak-seconds: the soak runs alone"
    skipped = {"latency": alone, "executor": alone, "seams": alone, "ros_command_stream": alone}
    report = rep.build_report(machine=rep.machine_info(), model=rep.model_info(args.model, policy),
                              settings={"soak": section["settings"]}, latency_rows=None, speedup=None,
                              executor=None, seams=None, skipped=skipped, ros_stream=None)
    report["soak"] = rep._clean(section)
    path = rep.write_json(report, args.json)
    print(format_soak_table(section))
    print(f"\nreport written to {path}")
    if args.plot:
        out = Path(args.plot)
        out.mkdir(parents=True, exist_ok=True)
        print(f"plots: {plot_soak(section, out)}")
    return 0
