"""Statistics of an evaluation run: per-episode records, the result document and its schema.

:class:`EvalResult` is what ``genpolicy eval --json`` writes (:data:`SCHEMA_KEYS`,
checked by :func:`check_schema`); the latency figures come from the policy node's
``/diagnostics`` reports (:func:`latency_from_diagnostics`), command jitter and chunk age
from what the evaluator received (:func:`percentiles`).
"""
from __future__ import annotations

import json
import math
import os
import platform
from dataclasses import asdict, dataclass, field
from typing import Dict, List, Optional, Sequence

import numpy as np

from .reach_env import MODES

SCHEMA_KEYS = ("model", "kind", "sampler", "num_steps", "episodes", "success_rate", "mode_histogram",
               "mode_fraction", "latency_ms", "command_jitter_ms", "per_episode", "machine", "timestamp")
PATH_PERIOD_S = 0.05  # fingertip path samples kept per episode (20 Hz is enough for a plot)


@dataclass
class EpisodeRecord:
    episode: int  # sim episode index
    seed: int
    success: bool
    mode: str  # the task's outcome label ("" when it has none)
    final_distance: Optional[float]  # reach: fingertip to target (m); None when the task reports none
    target: List[float]  # [2] m (reach); [] when the task has no target input
    fingertip: List[List[float]]  # [N, 2] m, sampled every PATH_PERIOD_S ([] when the task draws no path)
    commands: int  # commands received during the episode
    nonfinite_commands: int
    wall_duration_s: float  # header-stamp (ROS/wall) span; > episode_s when the sim fell behind real time
    collided: bool = False  # obstacle variant: the fingertip touched the post (the episode failed)
    stages: Dict[str, object] = field(default_factory=dict)  # per-stage outcome, when the task reports one
    benchmark_success: Optional[bool] = None  # the published benchmark's own score, when the task has one
    real_time_factor: Optional[float] = None  # simulated s per wall s of the episode (the sim's report)


@dataclass
class EvalResult:
    """Outcome of :func:`run_episodes`; :meth:`to_dict` is the ``--json`` document."""

    model: str
    kind: str
    sampler: str
    num_steps: Optional[int]
    episodes: int
    success_rate: float
    mode_histogram: Dict[str, int]
    mode_fraction: Dict[str, float]
    latency_ms: Dict[str, Optional[float]]
    command_jitter_ms: Dict[str, Optional[float]]
    per_episode: List[EpisodeRecord]
    machine: Dict[str, object]
    timestamp: str
    chunk_age_ms: Dict[str, Optional[float]] = field(default_factory=dict)
    settings: Dict[str, object] = field(default_factory=dict)
    commands: Dict[str, int] = field(default_factory=dict)
    sim_stats: Dict[str, int] = field(default_factory=dict)
    policy_diagnostics: Dict[str, object] = field(default_factory=dict)
    wall_s: float = 0.0
    seams: Dict[str, object] = field(default_factory=dict)  # seam smoothness of the commands (seam_smoothness)
    delay: Dict[str, object] = field(default_factory=dict)  # inference delay measured vs used (delay_summary)
    #: fraction of episodes that reached each stage (tasks with stages, e.g. ALOHA: grasped,
    #: lifted, transferred); {} for tasks without
    stage_rates: Dict[str, float] = field(default_factory=dict)
    benchmark_success_rate: Optional[float] = None  # the benchmark's own score (ALOHA: gym-aloha reward 4)

    def to_dict(self) -> dict:
        return asdict(self)

    def to_json(self, indent: int = 2) -> str:
        return json.dumps(self.to_dict(), indent=indent, allow_nan=False)

    def summary_line(self) -> str:
        if self.stage_rates:
            outcome = "stages " + ", ".join(f"{k} {100 * v:.0f}%" for k, v in self.stage_rates.items())
            if self.benchmark_success_rate is not None:
                outcome += f", benchmark {100 * self.benchmark_success_rate:.0f}%"
        else:
            modes = "/".join(str(n) for n in self.mode_histogram.values())
            labels = "/".join(m.replace("elbow_", "") for m in self.mode_histogram)
            outcome = f"modes {labels} {modes}"
        return (f"{self.kind}/{self.sampler}{'' if self.num_steps is None else f'-{self.num_steps}'}: "
                f"success {100 * self.success_rate:.1f}% of {self.episodes}, {outcome}, latency p50 "
                f"{_fmt(self.latency_ms.get('p50'))} "
                f"p95 {_fmt(self.latency_ms.get('p95'))} ms, command jitter p99 "
                f"{_fmt(self.command_jitter_ms.get('p99'))} ms")


def _fmt(v) -> str:
    return "n/a" if v is None else f"{v:.1f}"


def check_schema(doc: dict) -> List[str]:
    """Problems of an eval JSON document (``[]`` = valid); used by tests and ``genpolicy demo``."""
    problems = [f"missing key {k!r}" for k in SCHEMA_KEYS if k not in doc]
    if problems:
        return problems
    n = doc["episodes"]
    if not isinstance(n, int) or n < 0:
        problems.append(f"episodes must be an int >= 0, got {n!r}")
    elif len(doc["per_episode"]) != n:
        problems.append(f"per_episode has {len(doc['per_episode'])} entries for {n} episodes")
    if not (isinstance(doc["success_rate"], (int, float)) and 0.0 <= doc["success_rate"] <= 1.0):
        problems.append(f"success_rate must be in [0, 1], got {doc['success_rate']!r}")
    modes = tuple((doc.get("settings") or {}).get("modes") or MODES)  # the task's outcome labels
    hist = doc["mode_histogram"]
    if set(hist) != set(modes):
        problems.append(f"mode_histogram keys must be {list(modes)}, got {sorted(hist)}")
    elif isinstance(n, int) and sum(hist.values()) != n:
        problems.append(f"mode_histogram sums to {sum(hist.values())}, not {n}")
    if set(doc["mode_fraction"]) != set(modes):
        problems.append(f"mode_fraction keys must be {list(modes)}")
    for key, stats in (("latency_ms", ("p50", "p95", "max")), ("command_jitter_ms", ("p50", "p99", "max"))):
        block = doc[key]
        for s in stats:
            v = block.get(s, "missing") if isinstance(block, dict) else "missing"
            if v is not None and not (isinstance(v, (int, float)) and math.isfinite(v) and v >= 0):
                problems.append(f"{key}.{s} must be a finite number >= 0 or null, got {v!r}")
    for i, ep in enumerate(doc["per_episode"]):
        for k in ("success", "mode", "final_distance", "fingertip", "seed"):
            if k not in ep:
                problems.append(f"per_episode[{i}] lacks {k!r}")
        if modes and ep.get("mode") not in modes:
            problems.append(f"per_episode[{i}].mode {ep.get('mode')!r} is not one of {list(modes)}")
    if not isinstance(doc["machine"], dict):
        problems.append("machine must be an object")
    return problems


def stage_statistics(records: Sequence[EpisodeRecord]) -> tuple:
    """``(stage_rates, benchmark_success_rate)`` over the episodes: the fraction that reached
    each stage (in the order the task reports them) and that scored on the benchmark's own
    terms; ``({}, None)`` for a task that reports neither."""
    names: List[str] = []
    for r in records:
        names += [k for k in r.stages if k not in names]
    n = max(len(records), 1)
    rates = {k: round(sum(bool(r.stages.get(k)) for r in records) / n, 4) for k in names}
    scored = [r.benchmark_success for r in records if r.benchmark_success is not None]
    bench = round(sum(bool(b) for b in scored) / len(scored), 4) if scored else None
    return rates, bench


def machine_info() -> Dict[str, object]:
    info: Dict[str, object] = {"hostname": platform.node(), "platform": platform.platform(),
                               "processor": platform.processor() or platform.machine(),
                               "cpu_count": os.cpu_count(), "python": platform.python_version()}
    try:
        info["loadavg_1min"] = round(os.getloadavg()[0], 2)  # other work on the machine skews timing
    except OSError:
        pass
    try:
        import torch

        info["torch"] = torch.__version__
        info["cuda"] = torch.cuda.get_device_name(0) if torch.cuda.is_available() else None
    except Exception:  # noqa: BLE001 - informational only
        pass
    return info


def percentiles(values: Sequence[float], qs: Sequence[str]) -> Dict[str, Optional[float]]:
    """``{"p50": ..., "p99": ..., "max": ...}`` of ``values`` (None when empty)."""
    arr = np.asarray([v for v in values if v is not None and math.isfinite(v)], dtype=np.float64)
    out: Dict[str, Optional[float]] = {}
    for q in qs:
        if arr.size == 0:
            out[q] = None
        elif q == "max":
            out[q] = round(float(arr.max()), 3)
        else:
            out[q] = round(float(np.percentile(arr, float(q[1:]))), 3)
    return out


# --------------------------------------------------------------------------- diagnostics
def last_reported(reports: List[dict], key: str, default):
    """The value of ``key`` in the newest diagnostics report that has it (as reported)."""
    for r in reversed(reports):
        if r.get(key) not in (None, "", "None"):
            return r[key]
    return default


def diagnostics_summary(reports: List[dict]) -> Dict[str, object]:
    """Totals of the policy node's per-window counters over the run, and its last report."""
    totals: Dict[str, object] = {}
    for key in ("holds", "drops", "non_finite", "generation_errors", "rejected_messages"):
        values = []
        for r in reports:
            try:
                values.append(int(float(r.get(key, 0))))
            except (TypeError, ValueError):
                pass
        totals[f"{key}_total"] = sum(values)
    reasons = sorted({r.get("hold_reason", "") for r in reports} - {""})
    totals["hold_reasons"] = reasons[:10]
    totals["reports"] = len(reports)
    totals["last"] = dict(reports[-1]) if reports else {}
    return totals


def latency_from_diagnostics(reports: List[dict]) -> Dict[str, Optional[float]]:
    def number(report, key):
        try:
            v = float(report.get(key, "nan"))
        except (TypeError, ValueError):
            return None
        return v if math.isfinite(v) else None

    with_latency = [r for r in reports if number(r, "latency_p50_ms") is not None]
    if not with_latency:
        return {"p50": None, "p95": None, "max": None}
    last = with_latency[-1]
    maxima = [number(r, "latency_max_ms") for r in with_latency]
    maxima = [m for m in maxima if m is not None]
    return {"p50": round(number(last, "latency_p50_ms"), 3),
            "p95": None if number(last, "latency_p95_ms") is None else round(number(last, "latency_p95_ms"), 3),
            "max": round(max(maxima), 3) if maxima else None}


# --------------------------------------------------------------------------- slow-model figures
#: Half-width (commands) of the window around a seam: the chunk message and the commands
#: travel on different topics, so the arrival order is known to about one tick.
SEAM_WINDOW = 2


def seam_smoothness(traces: Sequence[tuple], period_s: float) -> Dict[str, Optional[float]]:
    """Seam smoothness of the executed commands, pooled over episodes.

    ``traces``: per episode ``(x [N, D] command positions, seam indices into x)``. Peak
    acceleration (``|second difference| / T²``, max over joints) within ±:data:`SEAM_WINDOW`
    commands of each seam, against the p99 of the acceleration away from seams (the chunks'
    own motion): ``ratio_max`` (the worst seam, the bench's ``seam_ratio``), ``ratio_p50``
    (the median seam; robust to one outlier), ``n_seams``. Ratios are None without seams or
    in-chunk motion.
    """
    from ..runtime.bench.seams import accelerations, seam_mask

    peaks, body = [], []
    for x, seams in traces:
        acc = accelerations(np.asarray(x, dtype=np.float64), period_s)  # [N]
        valid = np.isfinite(acc)
        body.append(acc[~seam_mask(acc.shape[0], seams, SEAM_WINDOW) & valid])
        for s in seams:
            window = acc[max(0, s - SEAM_WINDOW): s + SEAM_WINDOW + 1]
            window = window[np.isfinite(window)]
            if window.size:
                peaks.append(float(window.max()))
    body_all = np.concatenate(body) if body else np.zeros(0)
    p99 = float(np.percentile(body_all, 99)) if body_all.size else None
    out: Dict[str, Optional[float]] = {"n_seams": len(peaks), "in_chunk_p99_accel": _round(p99),
                                       "seam_peak_max_accel": _round(max(peaks)) if peaks else None,
                                       "ratio_max": None, "ratio_p50": None}
    if peaks and p99 and p99 > 0:
        out["ratio_max"] = _round(max(peaks) / p99)
        out["ratio_p50"] = _round(float(np.median(peaks)) / p99)
    return out


def plan_seams(reports: List[dict]) -> Dict[str, Optional[float]]:
    """The policy node's own seam sizes (``/diagnostics``, since start; the newest report):
    ``seam_jump_mean`` / ``seam_jump_max`` = max over joints of |new − old plan| at each switch
    (after blending, action units) and ``seam_jump_ratio`` = mean jump / mean row step of the
    plan (``seam_row_step_mean``): ≈ 0 when chunks join continuously, ≳ 1 when a seam moves
    the command as much as a row of motion or more."""
    def number(report, key):
        try:
            v = float(report.get(key, "nan"))
        except (TypeError, ValueError):
            return None
        return v if math.isfinite(v) else None

    last = next((r for r in reversed(reports) if number(r, "seams_total")), None)
    if last is None:
        return {"plan_seams": 0, "seam_jump_mean": None, "seam_jump_max": None, "seam_row_step_mean": None,
                "seam_jump_ratio": None}
    jump, step = number(last, "seam_jump_mean"), number(last, "seam_row_step_mean")
    return {"plan_seams": int(number(last, "seams_total")), "seam_jump_mean": _round(jump, 5),
            "seam_jump_max": _round(number(last, "seam_jump_max"), 5), "seam_row_step_mean": _round(step, 5),
            "seam_jump_ratio": _round(jump / step) if jump is not None and step else None}


def _round(v: Optional[float], digits: int = 3) -> Optional[float]:
    return None if v is None else round(float(v), digits)


def delay_summary(reports: List[dict], chunk_age_ms: Sequence[float], dt_s: float,
                  control_rate_hz: float) -> Dict[str, object]:
    """Inference delay measured vs the one used, in ms, chunk rows (``dt_s``) and control periods.

    *Measured*: the age of each merged chunk on arrival (receive time − the stamp of the
    observation it was generated from): the time the robot moved on while the chunk was
    computed. *Used*: the ``rtc_delay_rows`` (frozen rows) of the RTC requests and the latency
    estimate behind them, from the policy node's ``/diagnostics`` (last request per report;
    None without RTC). ``idle_ticks``: ticks the robot waited because the plan ran dry.
    """
    age = percentiles(chunk_age_ms, ("p50", "p95", "max"))
    period_ms = 1e3 / control_rate_hz

    def used(key):
        vals = []
        for r in reports:
            try:
                v = float(r.get(key, "nan"))
            except (TypeError, ValueError):
                continue
            if math.isfinite(v) and v > 0:
                vals.append(v)
        return percentiles(vals, ("p50", "max"))

    idle = [int(float(r["idle_ticks_total"])) for r in reports
            if str(r.get("idle_ticks_total", "")).lstrip("-").isdigit()]
    return {
        "measured_ms": age,
        "measured_rows": {k: None if v is None else round(v / (1e3 * dt_s), 2) for k, v in age.items()},
        "measured_periods": {k: None if v is None else round(v / period_ms, 2) for k, v in age.items()},
        "used_rows": used("rtc_delay_rows"),
        "used_estimate_ms": used("rtc_delay_latency_ms"),
        "idle_ticks": max(idle) if idle else None,
        "dt_s": dt_s, "control_period_ms": round(period_ms, 4),
    }
