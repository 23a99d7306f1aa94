"""Executor timing: the control loop's lateness while generation runs back-to-back.

Set-up (what the policy node does, minus ROS)::

    RateLoop thread @ rate_hz ── tick: observe_state_vector(now, synthetic state) → engine.tick()
                                     │ submit / poll (O(1))
    GenerationWorker process ◄───────┘  kept busy: BackToBack re-submits the last request
                                        whenever the child is idle after a tick

Two runs of the same loop in the same process, one after the other:

* ``idle`` — the engine ticks with a worker that never generates (the baseline: what
  the machine and the Python loop cost by themselves);
* ``generating`` — the real worker process generates back-to-back (duty ≈ 1).

Lateness = tick start − deadline (RateLoop's absolute grid); missed ticks = grid points
skipped because the loop fell more than half a period behind. The ratio generating/idle
is what says whether generation disturbs the executor (references.md: a generation
*thread* in the same process pushes p99 lateness to tens of ms; a process does not).
"""
from __future__ import annotations

import dataclasses
import math
import time
from dataclasses import dataclass
from typing import Callable, Optional

import numpy as np

from ..engine import EngineSettings, ModelInfo, PolicyEngine
from ..generation_worker import GenerationWorker, WorkerConfig, WorkerError
from ..latency import LatencyTracker
from ..rate_loop import RateLoop

FILLER_SEQ_BASE = 1_000_000_000  # seqs of back-to-back filler requests (never reach the engine)


@dataclass(frozen=True)
class ExecutorConfig:
    """Executor benchmark settings (validated)."""

    rate_hz: float = 100.0
    seconds: float = 60.0
    backend: str = "auto"
    threads: int = 1
    settings: EngineSettings = dataclasses.field(default_factory=EngineSettings)
    start_timeout_s: float = 600.0

    def __post_init__(self):
        if not (isinstance(self.rate_hz, (int, float)) and 1.0 <= self.rate_hz <= 1000.0):
            raise ValueError(f"ExecutorConfig.rate_hz must be in [1, 1000], got {self.rate_hz!r}")
        if not (isinstance(self.seconds, (int, float)) and math.isfinite(self.seconds) and self.seconds > 0):
            raise ValueError(f"ExecutorConfig.seconds must be a finite number > 0, got {self.seconds!r}")
        if isinstance(self.threads, bool) or not isinstance(self.threads, int) or self.threads < 1:
            raise ValueError(f"ExecutorConfig.threads must be an int >= 1, got {self.threads!r}")
        if not isinstance(self.settings, EngineSettings):
            raise ValueError("ExecutorConfig.settings must be an EngineSettings")


class IdleWorker:
    """A worker that never generates (the baseline run)."""

    ready = False
    busy = False

    def submit(self, request) -> None:  # pragma: no cover - never called: ready is False
        raise RuntimeError("IdleWorker cannot generate")

    def poll(self):
        return None


class BackToBack:
    """Wraps a worker so that it never sits idle: after each tick, :meth:`fill` re-submits
    the engine's last request (under a filler seq) when nothing is in flight. Filler
    replies are swallowed by :meth:`poll`; the engine only ever sees its own chunks.

    The engine sees the wrapped worker's ``ready``/``busy``; while a filler runs the
    engine waits for it like for any in-flight chunk (at most one chunk late).
    """

    def __init__(self, worker):
        self.worker = worker
        self._last = None
        self._n = 0
        self.fillers_done = 0
        self.compute_s = 0.0  # child compute time of every reply (engine's and fillers')
        self.errors = 0

    @property
    def ready(self) -> bool:
        return self.worker.ready

    @property
    def busy(self) -> bool:
        return self.worker.busy

    def submit(self, request) -> None:
        self._last = request
        self.worker.submit(request)

    def poll(self):
        while True:
            event = self.worker.poll()
            if event is None:
                return None
            if isinstance(event, WorkerError):
                self.errors += 1
            else:
                self.compute_s += float(event.meta.get("compute_s", 0.0))
            if event.seq is not None and event.seq >= FILLER_SEQ_BASE:
                if not isinstance(event, WorkerError):
                    self.fillers_done += 1
                continue
            return event

    def fill(self) -> None:
        if self._last is None or not self.worker.ready or self.worker.busy:
            return
        self._n += 1
        self.worker.submit(dataclasses.replace(self._last, seq=FILLER_SEQ_BASE + self._n))


class SyntheticState:
    """Joint-state source: action joints follow the last command (a perfect position
    controller), the other state entries hold a fixed value ``others``."""

    def __init__(self, model: ModelInfo, others: float = 0.05):
        self.model = model
        self.state = np.full(len(model.state_names), float(others))  # [D_s]
        mid = 0.5 * (model.lower_limits + model.upper_limits)  # [D_a]
        self._idx = [model.state_names.index(j) if j in model.state_names else None for j in model.joint_names]
        self.apply(mid)

    def apply(self, command: Optional[np.ndarray]) -> None:
        if command is None:
            return
        for j, i in enumerate(self._idx):
            if i is not None:
                self.state[i] = command[j]


def _run_loop(engine: PolicyEngine, source: SyntheticState, cfg: ExecutorConfig,
              after_tick: Callable[[], None], progress: Optional[Callable[[float], None]]) -> dict:
    """Run ``engine`` in a RateLoop for ``cfg.seconds``; returns lateness + tick stats."""
    tick_ms, lateness_ms = [], []

    def callback(tick) -> None:
        t = time.perf_counter()
        lateness_ms.append(tick.lateness_s * 1e3)
        now = time.monotonic()
        engine.observe_state_vector(now, source.state.copy())
        result = engine.tick(now)
        source.apply(result.command)
        after_tick()
        tick_ms.append((time.perf_counter() - t) * 1e3)

    n_expected = int(math.ceil(cfg.seconds * cfg.rate_hz)) + 16
    loop = RateLoop(cfg.rate_hz, callback, window=n_expected, name="bench_executor")
    start = time.monotonic()
    loop.start()
    try:
        while time.monotonic() - start < cfg.seconds:
            time.sleep(min(0.25, max(0.0, cfg.seconds - (time.monotonic() - start))))
            if progress is not None:
                progress(min(cfg.seconds, time.monotonic() - start))
    finally:
        loop.stop()
    duration = time.monotonic() - start
    stats = loop.stats()
    tick = np.asarray(tick_ms) if tick_ms else np.zeros(1)
    return {
        "rate_hz": float(cfg.rate_hz), "duration_s": duration, "ticks": int(stats["ticks"]),
        "lateness_p50_ms": stats["lateness_p50_ms"], "lateness_p99_ms": stats["lateness_p99_ms"],
        "lateness_max_ms": stats["lateness_max_ms"], "missed_ticks": int(stats["missed_ticks"]),
        "overruns": int(stats["overruns"]), "exceptions": int(stats["exceptions"]),
        "last_exception": stats["last_exception"],
        "tick_compute_p50_ms": float(np.percentile(tick, 50)), "tick_compute_p99_ms": float(np.percentile(tick, 99)),
        "lateness_samples_ms": [float(x) for x in lateness_ms],  # [ticks] every tick of the run
    }


def measure_executor(model_dir: str, policy_config, cfg: ExecutorConfig, *,
                     progress: Optional[Callable[[str, float], None]] = None) -> dict:
    """Idle baseline, then the same loop with back-to-back generation (see module docstring)."""
    model = ModelInfo.from_policy_config(policy_config)
    settings = dataclasses.replace(cfg.settings, control_rate_hz=float(cfg.rate_hz))

    def prog(phase):
        return None if progress is None else (lambda s: progress(phase, s))

    idle_engine = PolicyEngine(model, IdleWorker(), settings)
    idle = _run_loop(idle_engine, SyntheticState(model), cfg, lambda: None, prog("idle"))

    tracker = LatencyTracker(warmup=2, initial_estimate_s=2 * model.dt)
    wcfg = WorkerConfig(model_dir=str(model_dir), backend=cfg.backend, num_threads=cfg.threads,
                        settings=settings.sampler_settings(), start_timeout_s=cfg.start_timeout_s,
                        request_timeout_s=60.0)
    worker = GenerationWorker(wcfg, latency_tracker=tracker)
    try:
        t = time.monotonic()
        if not worker.wait_ready(cfg.start_timeout_s):
            event = worker.poll()
            raise RuntimeError(f"generation worker not ready after {time.monotonic() - t:.1f} s "
                               f"(state {worker.state.value}): {getattr(event, 'message', '')}")
        start_s = time.monotonic() - t
        b2b = BackToBack(worker)
        engine = PolicyEngine(model, b2b, settings, latency=tracker)
        gen = _run_loop(engine, SyntheticState(model), cfg, b2b.fill, prog("generating"))
        estats = engine.stats()
        chunks_total = engine.counters.chunks + b2b.fillers_done
        gen.update({
            "chunks_engine": int(engine.counters.chunks), "chunks_filler": int(b2b.fillers_done),
            "generation_duty": min(1.0, b2b.compute_s / max(gen["duration_s"], 1e-9)),
            "chunks_per_s": chunks_total / max(gen["duration_s"], 1e-9),
            "generation_latency_p50_ms": estats["latency_p50_ms"],
            "generation_latency_p95_ms": estats["latency_p95_ms"],
            "worker_errors": int(b2b.errors), "holds": int(estats["holds"]),
            "worker_backend": worker.info.get("backend"), "worker_start_s": start_s,
        })
    finally:
        worker.close()
    ratio = {}
    for key in ("lateness_p50_ms", "lateness_p99_ms", "lateness_max_ms"):
        a, b = gen.get(key), idle.get(key)
        ratio[key] = (a / b) if a is not None and b not in (None, 0) else None
    return {"rate_hz": float(cfg.rate_hz), "duration_s": gen["duration_s"],
            "lateness_p50_ms": gen["lateness_p50_ms"], "lateness_p99_ms": gen["lateness_p99_ms"],
            "lateness_max_ms": gen["lateness_max_ms"], "missed_ticks": gen["missed_ticks"],
            "generating": gen, "idle": idle, "ratio_generating_vs_idle": ratio,
            "engine_settings": dataclasses.asdict(settings),
            "sampler_settings": dataclasses.asdict(settings.sampler_settings())}
