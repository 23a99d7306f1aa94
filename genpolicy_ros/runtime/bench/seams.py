"""Seam smoothness per chunk-blending mode, on a simulated clock (deterministic).

The real :class:`~genpolicy_ros.runtime.engine.PolicyEngine` runs at the control rate on a
fake clock. A :class:`SimulatedLatencyWorker` samples each requested chunk at once (eager
backend, so RTC's guided prefix works) but hands it over only ``delay_rows · dt − T`` of
simulated time later (:func:`emulated_latency_s`) — generation latency emulated as a
fixed number of chunk rows, so the result does not depend on how busy the machine is. The plant is a
task's simulation in closed loop when the caller passes one that fits the model
(``measure_seams(..., task_plant=...)``: the bench CLI supplies the task's, see
``tasks/plant.py``), otherwise a synthetic open-loop stream (action joints follow the
commands, other state entries are slow sinusoids).

Metric (per mode, over all episodes)::

    a[i]  = max_j |x[i+1, j] − 2·x[i, j] + x[i−1, j]| / T²     executed trace x, period T
    seam  = ticks within ±1 tick of a chunk switch (the first row a merged chunk
            contributes, ``ChunkScheduler.merge``'s switch time); the first chunk is
            not a seam
    ratio = max_{i ∈ seam} a[i]  /  p99_{i ∉ seam} a[i]

Modes: ``none``, ``ensemble``, ``rtc`` (with the settings' ``rtc_prefix_mode``, hard
by default) and ``rtc-hard`` / ``rtc-guided`` (RTC with that prefix mode named).

``ratio ≫ 1``: visible jerks at the seams (``none`` typically); ``≈ 1``: the seams are
as smooth as the chunks themselves (what RTC, Black et al. 2025 arXiv 2506.07339, aims
for). The safety filter's velocity/acceleration limits are relaxed to their maxima so
that the blending, not the filter, is what is measured.
"""
from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Callable, Dict, List, Optional, Protocol, Sequence, Tuple

import numpy as np
import torch

from ..backends import create_backend
from ..backends.base import make_noise
from ..chunk import TIME_EPS, ActionChunk
from ..engine import BLENDING, EngineSettings, ModelInfo, PolicyEngine
from ..generation_worker import to_policy_obs
from ..latency import LatencyTracker

#: Measured modes: the engine's blending modes (``rtc`` with the settings' prefix mode,
#: hard by default) and RTC with each prefix mode named explicitly.
SEAM_MODES = BLENDING + ("rtc-hard", "rtc-guided")

#: SeamConfig.plant values ("reach", the older name, means the task's plant).
PLANTS = ("auto", "task", "reach", "synthetic")

#: EngineSettings maxima: the safety filter must not smooth what the blending produced.
RELAXED_SAFETY = {"max_joint_velocity": 100.0, "max_joint_acceleration": 1e4, "max_jump": 10.0}


# --------------------------------------------------------------------------- the metric
def accelerations(trace: np.ndarray, period: float) -> np.ndarray:
    """``[N, D]`` executed positions -> ``[N]`` max-over-joints |second difference| / T²
    (entries 0 and N−1, which have no centred difference, are NaN)."""
    x = np.asarray(trace, dtype=np.float64)
    if x.ndim == 1:
        x = x[:, None]  # [N, 1]
    acc = np.full(x.shape[0], np.nan)  # [N]
    if x.shape[0] >= 3:
        acc[1:-1] = np.abs(x[2:] - 2.0 * x[1:-1] + x[:-2]).max(axis=1) / period ** 2
    return acc


def seam_mask(n: int, seam_ticks: Sequence[int], width: int = 1) -> np.ndarray:
    """``[n]`` bool: True within ±``width`` ticks of any seam tick."""
    mask = np.zeros(n, dtype=bool)
    for s in seam_ticks:
        mask[max(0, int(s) - width): min(n, int(s) + width + 1)] = True
    return mask


def seam_ratio(traces: Sequence[np.ndarray], seams: Sequence[Sequence[int]], period: float) -> dict:
    """Pooled seam metric over episodes (see module docstring).

    ``traces[e]``: ``[N_e, D]`` executed actions; ``seams[e]``: tick indices of the
    switches in episode ``e``. Returns ``max_seam_accel``, ``in_chunk_p99_accel``,
    ``ratio`` (None when undefined: no seams, or zero in-chunk acceleration with
    zero seam acceleration), ``n_seams``.
    """
    seam_acc, body_acc = [], []
    n_seams = 0
    for trace, ticks in zip(traces, seams):
        acc = accelerations(trace, period)  # [N]
        mask = seam_mask(acc.shape[0], ticks)
        valid = np.isfinite(acc)
        seam_acc.append(acc[mask & valid])
        body_acc.append(acc[~mask & valid])
        n_seams += len(ticks)
    seam_all = np.concatenate(seam_acc) if seam_acc else np.zeros(0)
    body_all = np.concatenate(body_acc) if body_acc else np.zeros(0)
    max_seam = float(seam_all.max()) if seam_all.size else None
    p99 = float(np.percentile(body_all, 99)) if body_all.size else None
    ratio = None
    if max_seam is not None and p99 is not None:
        if p99 > 0:
            ratio = max_seam / p99
        elif max_seam == 0:
            ratio = 1.0
    return {"max_seam_accel": max_seam, "in_chunk_p99_accel": p99, "ratio": ratio, "n_seams": n_seams}


# --------------------------------------------------------------------------- the worker
class FakeClock:
    """Simulated seconds; the driver advances ``t``."""

    def __init__(self, t: float = 0.0):
        self.t = float(t)

    def __call__(self) -> float:
        return self.t


class SimulatedLatencyWorker:
    """GenerationWorker stand-in: samples at submit, delivers ``delay_s`` later on ``clock``.

    Same interface the engine uses (``ready``, ``busy``, ``submit``, ``poll``); the chunk is
    computed exactly as the worker child does (``make_noise(seed)``, prefix padded for the
    hard mode), by the given backend in this process.
    """

    ready = True

    def __init__(self, policy, backend, clock: Callable[[], float], delay_s: float,
                 latency_tracker: Optional[LatencyTracker] = None):
        self.policy, self.backend, self.clock, self.delay_s = policy, backend, clock, float(delay_s)
        self.latency_tracker = latency_tracker
        self.T_p = int(policy.config.horizon.T_p)
        self.D_a = int(policy.config.action.dim)
        self.dt = float(policy.config.horizon.dt)
        self._pending: Optional[Tuple[ActionChunk, float]] = None
        self.requests = 0

    @property
    def busy(self) -> bool:
        return self._pending is not None

    def _sample(self, req) -> np.ndarray:
        noise = make_noise((1, self.T_p, self.D_a), req.seed)  # [1, T_p, D_a]
        kwargs = {}
        if req.prefix_actions is not None:
            pa = torch.as_tensor(np.asarray(req.prefix_actions), dtype=torch.float32).unsqueeze(0)  # [1, k, D_a]
            if pa.shape[1] < self.T_p and req.prefix_mode == "hard":
                pa = torch.cat([pa, torch.zeros(1, self.T_p - pa.shape[1], self.D_a)], dim=1)  # [1, T_p, D_a]
            pw = req.prefix_weights
            if pw is None:
                pw = np.zeros(self.T_p, np.float32)  # [T_p]
                pw[: np.asarray(req.prefix_actions).shape[0]] = 1.0
            kwargs = {"prefix_actions": pa, "prefix_weights": torch.as_tensor(np.asarray(pw), dtype=torch.float32),
                      "prefix_mode": req.prefix_mode}
        out = self.backend.sample(to_policy_obs(req.obs), noise, req.settings, **kwargs)  # [1, T_p, D_a]
        return out[0].detach().cpu().numpy().astype(np.float64)  # [T_p, D_a]

    def submit(self, req) -> None:
        self.requests += 1
        actions = self._sample(req)
        now = self.clock()
        chunk = ActionChunk(t0=req.t0, dt=self.dt, actions=actions, seq=req.seq,
                            meta={"emulated_latency_s": self.delay_s})
        self._pending = (chunk, now + self.delay_s)

    def poll(self):
        if self._pending is None or self.clock() < self._pending[1] - TIME_EPS:
            return None
        chunk, _ = self._pending
        self._pending = None
        now = self.clock()
        if self.latency_tracker is not None:
            self.latency_tracker.record(self.delay_s)
        return dataclasses.replace(chunk, generated_at=now, latency_s=max(0.0, now - chunk.t0))


# --------------------------------------------------------------------------- plants
class SyntheticPlant:
    """Open loop: action joints track the commands exactly; the other state entries are
    slow sinusoids of amplitude 0.05 (a smooth, changing observation stream)."""

    def __init__(self, model: ModelInfo, seed: int):
        self.model = model
        rng = np.random.default_rng(seed)
        self.phase = rng.uniform(0, 2 * math.pi, len(model.state_names))  # [D_s]
        self._idx = [model.state_names.index(j) if j in model.state_names else None for j in model.joint_names]
        self.arm = 0.5 * (model.lower_limits + model.upper_limits)  # [D_a]
        self.t = 0.0

    def state(self) -> np.ndarray:
        s = 0.05 * np.sin(2 * math.pi * 0.3 * self.t + self.phase)  # [D_s]
        for j, i in enumerate(self._idx):
            if i is not None:
                s[i] = self.arm[j]
        return s

    def images(self) -> Dict[str, np.ndarray]:
        return {}

    def step(self, command: Optional[np.ndarray], period: float) -> None:
        if command is not None:
            self.arm = np.asarray(command, dtype=float).copy()
        self.t += period

    def close(self) -> None:
        pass


class TaskPlant(Protocol):
    """A closed-loop plant supplied by the caller: ``fits(model)`` says whether it can run
    ``model`` (joints, state entries and cameras it provides); calling it builds one episode's
    plant with ``state() -> [D_s]``, ``images() -> {camera: [H, W, 3]}``,
    ``step(command [D_a] or None, period)`` and ``close()``, like :class:`SyntheticPlant`."""

    name: str

    def fits(self, model: ModelInfo) -> bool: ...

    def __call__(self, model: ModelInfo, seed: int): ...


# --------------------------------------------------------------------------- the driver
@dataclass(frozen=True)
class SeamConfig:
    """Seam benchmark settings (validated)."""

    modes: Tuple[str, ...] = SEAM_MODES
    episodes: int = 2
    seconds: float = 3.0  # simulated seconds per episode
    delay_rows: int = 2  # emulated generation latency in chunk rows (dt each)
    rate_hz: float = 100.0
    seed: int = 0
    plant: str = "auto"  # auto (the task's when it fits, else synthetic) | task | synthetic ("reach" = task)
    settings: EngineSettings = dataclasses.field(default_factory=EngineSettings)

    def __post_init__(self):
        bad = [m for m in self.modes if m not in SEAM_MODES]
        if not self.modes or bad:
            raise ValueError(f"SeamConfig.modes must be a non-empty subset of {SEAM_MODES}, got {list(self.modes)}")
        if isinstance(self.episodes, bool) or not isinstance(self.episodes, int) or self.episodes < 1:
            raise ValueError(f"SeamConfig.episodes must be an int >= 1, got {self.episodes!r}")
        if not (isinstance(self.seconds, (int, float)) and math.isfinite(self.seconds) and self.seconds > 0):
            raise ValueError(f"SeamConfig.seconds must be a finite number > 0, got {self.seconds!r}")
        if isinstance(self.delay_rows, bool) or not isinstance(self.delay_rows, int) or self.delay_rows < 0:
            raise ValueError(f"SeamConfig.delay_rows must be an int >= 0, got {self.delay_rows!r}")
        if not (isinstance(self.rate_hz, (int, float)) and 1.0 <= self.rate_hz <= 1000.0):
            raise ValueError(f"SeamConfig.rate_hz must be in [1, 1000], got {self.rate_hz!r}")
        if self.plant not in PLANTS:
            raise ValueError(f"SeamConfig.plant must be one of {PLANTS}, got {self.plant!r}")


def emulated_latency_s(delay_rows: int, dt: float, period: float) -> float:
    """Generation latency "d rows": the chunk arrives one control tick before its row d is
    due (``d·dt − T``), so rows 0..d−1 are what the robot executed meanwhile (RTC's frozen
    prefix) and row d is the switch row. (Exactly ``d·dt`` would make row d "already due"
    on arrival and shift the switch one row later than the frozen prefix.)"""
    return max(0.0, delay_rows * dt - period)


def run_episode(policy, backend, model: ModelInfo, settings: EngineSettings, cfg: SeamConfig,
                episode: int, make_plant: Callable[[ModelInfo, int], object]) -> dict:
    """One episode on the simulated clock -> ``{"trace" [N, D], "times" [N], "seams" [ticks]}``.

    The trace starts at the first executed action (status OK) of the first chunk."""
    period = 1.0 / cfg.rate_hz
    dt = model.dt
    clock = FakeClock(0.0)
    tracker = LatencyTracker(warmup=0, initial_estimate_s=emulated_latency_s(cfg.delay_rows, dt, period))
    worker = SimulatedLatencyWorker(policy, backend, clock, emulated_latency_s(cfg.delay_rows, dt, period), tracker)
    engine = PolicyEngine(model, worker, settings, clock=clock, steady_clock=clock, latency=tracker)
    seed = cfg.seed * 1000 + episode
    plant = make_plant(model, seed)
    trace, times, switch_times = [], [], []
    try:
        for k in range(int(round(cfg.seconds * cfg.rate_hz))):
            clock.t = (k + 1) * period  # exact grid (no accumulated float error)
            engine.observe_state(clock.t, plant.state())
            for cam, img in plant.images().items():
                engine.observe_image(cam, clock.t, img)
            result = engine.tick(clock.t)
            if result.merged_chunk is not None:
                chunk = result.merged_chunk
                switch_times.append(chunk.due_time(chunk.first_row_after(clock.t)))
            ok = result.command is not None and not result.status.is_hold
            if ok or trace:
                if result.command is None:
                    break  # execution stopped (starved / hold without command): end of the usable trace
                trace.append(np.asarray(result.command, dtype=float))
                times.append(clock.t)
            plant.step(result.command, period)
    finally:
        plant.close()
    times_a = np.asarray(times)  # [N]
    seams = []
    if times_a.size:
        for s in switch_times[1:]:  # the first chunk starts execution: not a seam
            idx = int(np.searchsorted(times_a, s - TIME_EPS))
            if 0 < idx < times_a.size:
                seams.append(idx)
    return {"trace": np.asarray(trace).reshape(len(trace), model.action_dim), "times": times_a,
            "seams": seams, "requests": worker.requests, "holds": int(engine.counters.holds),
            "merged": int(engine.scheduler.stats()["merged"])}


def measure_seams(policy, cfg: SeamConfig, *, progress: Optional[Callable[[], None]] = None,
                  task_plant: Optional[TaskPlant] = None) -> dict:
    """Every mode × episode (see module docstring) -> per-mode metrics + episode traces.

    ``task_plant``: the closed-loop plant of a task (used when ``cfg.plant`` is ``auto`` and
    it fits the model, or ``task``); ``"plant"`` in the result names what ran."""
    model = ModelInfo.from_policy_config(policy.config)
    fits = task_plant is not None and task_plant.fits(model)
    if cfg.plant in ("task", "reach") and not fits:
        raise ValueError("SeamConfig.plant 'task': no task plant that fits the model was given")
    use_task = cfg.plant in ("task", "reach") or (cfg.plant == "auto" and fits)
    make_plant = task_plant if use_task else SyntheticPlant
    plant_kind = task_plant.name if use_task else "synthetic"
    backend = create_backend("eager", policy, "cpu")
    period = 1.0 / cfg.rate_hz
    modes: Dict[str, dict] = {}
    for mode in cfg.modes:
        blending, _, prefix_mode = mode.partition("-")
        settings = dataclasses.replace(cfg.settings, chunk_blending=blending, control_rate_hz=float(cfg.rate_hz),
                                       rtc_prefix_mode=prefix_mode or cfg.settings.rtc_prefix_mode,
                                       inference_delay_steps=int(cfg.delay_rows), **RELAXED_SAFETY)
        episodes: List[dict] = []
        for e in range(cfg.episodes):
            episodes.append(run_episode(policy, backend, model, settings, cfg, e, make_plant))
            if progress is not None:
                progress()
        metric = seam_ratio([ep["trace"] for ep in episodes], [ep["seams"] for ep in episodes], period)
        metric.update(episodes=len(episodes), requests=sum(ep["requests"] for ep in episodes),
                      holds=sum(ep["holds"] for ep in episodes),
                      executed_ticks=int(sum(ep["trace"].shape[0] for ep in episodes)))
        modes[mode] = {"metric": metric, "episodes": episodes}
    return {"plant": plant_kind, "delay_rows": int(cfg.delay_rows),
            "delay_s": emulated_latency_s(cfg.delay_rows, model.dt, period),
            "rate_hz": float(cfg.rate_hz), "modes": modes}


# --------------------------------------------------------------------------- the grid
#: Modes of the delay × action-horizon grid: no blending, ACT ensembling, RTC either way.
GRID_MODES = ("none", "ensemble", "rtc-hard", "rtc-guided")


def measure_seam_grid(policy, cfg: SeamConfig, delays: Sequence[int], horizons: Sequence[int], *,
                      progress: Optional[Callable[[], None]] = None, task_plant=None) -> dict:
    """Seam ratio per (delay in rows, action horizon T_a, mode): :func:`measure_seams` once
    per cell with ``cfg`` otherwise unchanged (same episodes, seeds and plant in every cell).

    Returns ``{"modes": [...], "cells": [{"delay_rows", "action_horizon", "ratios": {mode:
    ratio or None}, "holds": {mode: n}}, ...]}``; a ratio is None where it is undefined (no
    seam: a chunk that arrives after the executable rows ran out is rejected as late).
    """
    delays, horizons = [int(d) for d in delays], [int(h) for h in horizons]
    bad = [d for d in delays if d < 0] + [h for h in horizons if h < 1]
    if not delays or not horizons or bad:
        raise ValueError(f"seam grid: delays must be ints >= 0 and horizons ints >= 1, got {delays}, {horizons}")
    cells = []
    for horizon in horizons:
        for delay in delays:
            settings = dataclasses.replace(cfg.settings, action_horizon=horizon)
            cell_cfg = dataclasses.replace(cfg, delay_rows=delay, settings=settings)
            out = measure_seams(policy, cell_cfg, progress=progress, task_plant=task_plant)
            cells.append({"delay_rows": delay, "action_horizon": horizon, "plant": out["plant"],
                          "ratios": {m: out["modes"][m]["metric"]["ratio"] for m in cfg.modes},
                          "holds": {m: out["modes"][m]["metric"]["holds"] for m in cfg.modes}})
    return {"modes": list(cfg.modes), "episodes": cfg.episodes, "seconds": cfg.seconds,
            "rate_hz": float(cfg.rate_hz), "cells": cells}


def format_seam_grid(grid: dict) -> str:
    """The grid as a text table: one row per (T_a, d), one column per mode."""
    modes = grid["modes"]
    lines = [f"seam ratio grid (max seam accel / in-chunk p99; {grid['episodes']} episodes × "
             f"{grid['seconds']:g} s per cell, {grid['rate_hz']:g} Hz)",
             "  T_a  d  " + "".join(f"{m:>12}" for m in modes)]
    for c in grid["cells"]:
        cols = "".join(f"{'n/a' if c['ratios'][m] is None else format(c['ratios'][m], '.2f'):>12}" for m in modes)
        lines.append(f"  {c['action_horizon']:>3} {c['delay_rows']:>2}  {cols}")
    return "\n".join(lines)
