"""The slow-model sweep: closed-loop success vs generation latency per chunk-blending mode.

Each *cell* (model, blending mode, emulated latency) is one ``genpolicy eval`` run over ROS
(the policy node in its own process, ``--emulate-latency-ms``; see
:mod:`genpolicy_ros.sim.evaluation`), written to its own JSON; :func:`cell_summary` reduces
that document to the sweep's figures and :func:`sweep_document`, :func:`format_table` and
:func:`plot_success` build the sweep JSON, the Markdown table and the "success vs latency
per mode" figure. ``scripts/latency_sweep.py`` is the command line.

Time base: ``genpolicy eval`` runs the simulator in real time (``rate_factor`` 1, physics
stepped on the steady clock, stamps on ROS wall time) and the policy node without
``use_sim_time``, so the node's clock, the worker's emulated latency and the robot's time
are the same clock *as long as the simulator keeps real time*. Every cell therefore
records the simulator's real-time factor (episode length in physics time / in wall time)
and late ticks; ``real_time`` is False when the robot's clock drifted from the node's
(then the latency the robot experienced was not the nominal one). Latencies are also given
in control periods and chunk rows (the units the engine plans in).

Action horizon: one generation worker computes one chunk at a time, so a chunk requested
at ``r`` (observation at ``r``) arrives at ``r + L`` and the next one, requested then,
at ``r + 2L``; the first chunk's executable rows end at ``r + T_a·dt``. The robot never
waits only if ``2L ≤ T_a·dt``: with the shipped models (T_a = 8, dt = 50 ms) latencies above
~200 ms starve the plan in *every* blending mode. :func:`action_horizon_for` (the sweep's
``--action-horizon auto``) therefore raises T_a with the latency — the same T_a for every
mode at a latency — as one would for a slow model on a robot.
"""
from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, List, Optional, Sequence

#: Sweep mode -> ``genpolicy eval`` options. ``none`` is naive switching (the new chunk
#: replaces the plan from its first row still in the future).
MODES: Dict[str, tuple] = {
    "none": ("--chunk-blending", "none"),
    "ensemble": ("--chunk-blending", "ensemble"),
    "rtc-hard": ("--chunk-blending", "rtc", "--rtc-mode", "hard"),
    "rtc-guided": ("--chunk-blending", "rtc", "--rtc-mode", "guided"),
}
DEFAULT_LATENCIES_MS = (0.0, 50.0, 150.0, 300.0)
#: A cell's simulator kept real time when physics advanced at least this fraction of wall time
#: in every episode (late ticks, single periods it fell behind, are reported besides).
REAL_TIME_MIN = 0.98


def action_horizon_for(latency_ms: float, dt_s: float, model_t_a: int, t_p: int, margin_rows: int = 3) -> int:
    """The smallest T_a ≥ the model's with ``T_a ≥ 2·L/dt + margin_rows`` (see the module
    docstring; the margin covers the observation's age, transport and jitter), at most T_p."""
    if dt_s <= 0 or model_t_a < 1 or t_p < model_t_a or latency_ms < 0:
        raise ValueError(f"action_horizon_for: bad arguments (latency {latency_ms} ms, dt {dt_s} s, "
                         f"T_a {model_t_a}, T_p {t_p})")
    needed = math.ceil(2.0 * latency_ms / (1e3 * dt_s) - 1e-9) + margin_rows
    return int(min(t_p, max(model_t_a, needed)))


def model_horizon(model_dir: str) -> dict:
    """``{"T_p", "T_a", "dt"}`` of a model directory's ``config.json``."""
    path = Path(model_dir, "config.json")
    try:
        horizon = json.loads(path.read_text())["horizon"]
        return {"T_p": int(horizon["T_p"]), "T_a": int(horizon["T_a"]), "dt": float(horizon["dt"])}
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise ValueError(f"{path}: no readable horizon (T_p, T_a, dt): {exc}") from exc


@dataclass(frozen=True)
class Cell:
    model: str  # model directory
    mode: str  # a MODES key
    latency_ms: float  # emulated generation latency (0 = the model's own speed)
    action_horizon: Optional[int] = None  # T_a for the node (None: the model's)

    def __post_init__(self):
        if self.mode not in MODES:
            raise ValueError(f"mode must be one of {sorted(MODES)}, got {self.mode!r}")
        if not (isinstance(self.latency_ms, (int, float)) and 0.0 <= self.latency_ms <= 10000.0):
            raise ValueError(f"latency_ms must be in [0, 10000], got {self.latency_ms!r}")
        if self.action_horizon is not None and not (isinstance(self.action_horizon, int) and self.action_horizon >= 1):
            raise ValueError(f"action_horizon must be an int >= 1 or None, got {self.action_horizon!r}")

    @property
    def name(self) -> str:
        t_a = "" if self.action_horizon is None else f"_ta{self.action_horizon}"
        return f"{Path(self.model).name}_{self.mode}_{int(round(self.latency_ms))}ms{t_a}"


def cells(models: Sequence[str], modes: Sequence[str], latencies_ms: Sequence[float],
          action_horizon: str = "auto") -> List[Cell]:
    """Every (model, latency, mode) cell, latency-major so that a cut-short sweep still has
    every mode at the latencies it reached. ``action_horizon``: ``auto``
    (:func:`action_horizon_for`), ``model`` (the model's T_a) or a number of rows."""
    out = []
    for m in models:
        for lat in latencies_ms:
            if action_horizon == "model":
                t_a = None
            elif action_horizon == "auto":
                h = model_horizon(m)
                t_a = action_horizon_for(float(lat), h["dt"], h["T_a"], h["T_p"])
            else:
                t_a = int(action_horizon)
            out.extend(Cell(m, mode, float(lat), t_a) for mode in modes)
    return out


def eval_command(cell: Cell, episodes: int, json_path: str, seed: int = 0,
                 program: Sequence[str] = ("genpolicy",)) -> List[str]:
    """The ``genpolicy eval`` command line of one cell."""
    cmd = [*program, "eval", cell.model, "--episodes", str(int(episodes)), "--seed", str(int(seed)),
           *MODES[cell.mode], "--json", str(json_path), "--no-progress"]
    if cell.latency_ms > 0:
        cmd += ["--emulate-latency-ms", f"{cell.latency_ms:g}"]
    if cell.action_horizon is not None:
        cmd += ["--action-horizon", str(cell.action_horizon)]
    return cmd


def wilson_interval(successes: int, n: int, z: float = 1.96) -> tuple:
    """95 % Wilson score interval of a success rate (``(0, 1)`` for n = 0)."""
    if n <= 0:
        return 0.0, 1.0
    p = successes / n
    denom = 1.0 + z * z / n
    centre = (p + z * z / (2 * n)) / denom
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denom
    return max(0.0, centre - half), min(1.0, centre + half)


def cell_summary(cell: Cell, doc: dict) -> dict:
    """The sweep's figures of one cell from its ``genpolicy eval --json`` document."""
    settings = doc.get("settings") or {}
    episodes = list(doc.get("per_episode") or [])
    n = len(episodes)
    wins = sum(bool(e.get("success")) for e in episodes)
    episode_s = float(settings.get("episode_s") or 0.0)
    walls = [float(e["wall_duration_s"]) for e in episodes if e.get("wall_duration_s")]
    factors = [episode_s / w for w in walls] if episode_s > 0 else []  # physics s per wall s, per episode
    rtf = round(min(factors), 4) if factors else None
    late = int((doc.get("sim_stats") or {}).get("late_ticks", 0))
    delay = doc.get("delay") or {}
    seams = doc.get("seams") or {}
    period_ms = 1e3 / float(settings.get("control_rate_hz") or 100.0)
    lo, hi = wilson_interval(wins, n)
    return {
        "cell": cell.name, "model": Path(cell.model).name, "task": settings.get("task"), "mode": cell.mode,
        "latency_ms": cell.latency_ms, "latency_periods": round(cell.latency_ms / period_ms, 2),
        "action_horizon": settings.get("action_horizon_effective"),
        "episodes": n, "successes": wins, "success_rate": round(wins / n, 4) if n else None,
        "success_ci95": [round(lo, 4), round(hi, 4)],
        "seam_jump_ratio": seams.get("seam_jump_ratio"), "seam_jump_mean": seams.get("seam_jump_mean"),
        "seam_jump_max": seams.get("seam_jump_max"),
        "seam_ratio_p50": seams.get("ratio_p50"), "seam_ratio_max": seams.get("ratio_max"),
        "n_seams": seams.get("n_seams"),
        "idle_ticks": delay.get("idle_ticks"),
        "holds_total": (doc.get("policy_diagnostics") or {}).get("holds_total"),
        "generation_latency_ms": doc.get("latency_ms"),
        "measured_delay_ms": delay.get("measured_ms"), "measured_delay_rows": delay.get("measured_rows"),
        "measured_delay_periods": delay.get("measured_periods"),
        "used_delay_rows": delay.get("used_rows"), "used_estimate_ms": delay.get("used_estimate_ms"),
        "sim_real_time_factor_min": rtf, "sim_late_ticks": late,
        "sim_real_time_factor_mean": round(sum(factors) / len(factors), 4) if factors else None,
        "episodes_sim_lagged": sum(f < REAL_TIME_MIN for f in factors),
        "real_time": bool(rtf is not None and rtf >= REAL_TIME_MIN),
        "blending_reported": settings.get("chunk_blending"), "rtc_mode": settings.get("rtc_prefix_mode"),
        "emulate_latency_ms_reported": settings.get("emulate_latency_ms"),
        "wall_s": doc.get("wall_s"), "loadavg_1min_end": (doc.get("machine") or {}).get("loadavg_1min_end"),
    }


def sweep_document(summaries: Sequence[dict], commands: Sequence[str], seed: int) -> dict:
    """The sweep JSON: how it was run and one summary per cell."""
    return {"what": "closed-loop success vs emulated generation latency per chunk-blending mode",
            "commands": list(commands), "episodes_per_cell": sorted({s["episodes"] for s in summaries}),
            "seed": seed,
            "modes": {k: " ".join(v) for k, v in MODES.items()},
            "time_base": ("simulator in real time (rate_factor 1) on the steady clock; policy node on wall "
                          "time; real_time=False marks a cell whose simulator fell behind"),
            "cells": list(summaries)}


def _fmt(v, pattern="{:.2f}") -> str:
    return "–" if v is None else pattern.format(v)


def format_table(summaries: Sequence[dict]) -> str:
    """Markdown table, one row per cell."""
    head = ("| model | latency ms (periods) | T_a | mode | success (95 % CI) | seam jump ratio (max jump rad) "
            "| idle ticks | delay measured p50 / p95 rows | delay used p50 / max rows | sim RT factor min |")
    lines = [head, "|" + "---|" * (head.count("|") - 1)]
    for s in summaries:
        ci = s.get("success_ci95") or [None, None]
        measured = s.get("measured_delay_rows") or {}
        used = s.get("used_delay_rows") or {}
        rt = _fmt(s.get("sim_real_time_factor_min"), "{:.2f}")
        if not s.get("real_time"):
            rt += f" ⚠ {s.get('episodes_sim_lagged')} ep"
        lines.append(
            f"| {s['model']} | {s['latency_ms']:g} ({s['latency_periods']:g}) | {s.get('action_horizon') or '–'} "
            f"| {s['mode']} | "
            f"{s['successes']}/{s['episodes']} ({_fmt(ci[0])}–{_fmt(ci[1])}) | "
            f"{_fmt(s.get('seam_jump_ratio'))} ({_fmt(s.get('seam_jump_max'), '{:.3f}')}) | "
            f"{_fmt(s.get('idle_ticks'), '{}')} | "
            f"{_fmt(measured.get('p50'), '{:.1f}')} / {_fmt(measured.get('p95'), '{:.1f}')} | "
            f"{_fmt(used.get('p50'), '{:g}')} / {_fmt(used.get('max'), '{:g}')} | {rt} |")
    return "\n".join(lines)


def plot_success(summaries: Sequence[dict], path: str, title: Optional[str] = None) -> str:
    """Per model (columns): success rate with 95 % Wilson intervals (top) and the seam jump
    ratio (bottom, log scale) vs emulated latency, one line per mode; a hollow marker is a
    cell whose simulator fell behind real time in some episode. Written to ``path`` (PNG)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    models = list(dict.fromkeys(s["model"] for s in summaries))
    cols = max(1, len(models))
    fig, axes = plt.subplots(2, cols, figsize=(5.0 * cols, 6.4), squeeze=False, sharex="col",
                             gridspec_kw={"height_ratios": [3, 2]})
    offsets = {m: (i - (len(MODES) - 1) / 2) * 4.0 for i, m in enumerate(MODES)}  # ms, so bars don't overlap
    for col, model in enumerate(models):
        top, bottom = axes[0][col], axes[1][col]
        for k, mode in enumerate(MODES):
            rows = sorted((s for s in summaries if s["model"] == model and s["mode"] == mode
                           and s.get("success_rate") is not None), key=lambda s: s["latency_ms"])
            if not rows:
                continue
            color = f"C{k}"
            x = [s["latency_ms"] + offsets[mode] for s in rows]
            y = [s["success_rate"] for s in rows]
            err = [[s["success_rate"] - s["success_ci95"][0] for s in rows],
                   [s["success_ci95"][1] - s["success_rate"] for s in rows]]
            top.errorbar(x, y, yerr=err, color=color, marker=None, capsize=3, label=mode, alpha=0.9)
            for s, xi, yi in zip(rows, x, y):
                top.plot([xi], [yi], "o", color=color, markerfacecolor=color if s.get("real_time") else "white")
            seams = [(xi, s["seam_jump_ratio"]) for s, xi in zip(rows, x) if s.get("seam_jump_ratio")]
            if seams:
                bottom.plot(*zip(*seams), "o-", color=color, label=mode)
        top.set_title(model)
        top.set_ylabel("success rate")
        top.set_ylim(-0.05, 1.05)
        top.grid(alpha=0.3)
        top.legend(fontsize=8, loc="lower left")
        bottom.set_yscale("log")
        bottom.set_ylabel("seam jump / row step")
        bottom.set_xlabel("emulated generation latency (ms)")
        bottom.grid(alpha=0.3, which="both")
    if title:
        fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return str(path)
