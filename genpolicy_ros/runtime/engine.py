r"""`PolicyEngine`: the real-time loop that turns observations into safe commands.

This is the ROS-free heart of the policy node. It wires the pieces of ``runtime/``
together and is driven by one fixed-rate tick (a :class:`~.rate_loop.RateLoop` thread in
the node, a fake clock in tests)::

    observe_state / observe_image  (any thread, cheap)
          │  header stamps
          ▼
    ObservationBuffer ──snapshot──► GenerationWorker (separate process) ──► ActionChunk
                                       ▲  request when the plan runs low     │ poll()
                                       │  (+ RTC frozen prefix)              ▼
    tick(now):  poll worker → ChunkScheduler.merge → pop(now) → SafetyFilter → command

Per tick (all O(1) apart from building a request, which happens once per chunk):

1. **Collect** a finished chunk (or a worker error) and merge it into the plan — unless it
   was generated from observations of an earlier buffer epoch (a bag loop or a
   backwards-jumping clock reset the buffers), in which case it is discarded.
2. **Request** the next chunk early: when no request is in flight and
   ``ChunkScheduler.needs_refill(now, latency estimate)`` says the plan would run dry
   before a chunk requested now arrives. The request carries the newest aligned
   observation window and, with ``chunk_blending = rtc``, the actions the plan will
   execute while the chunk is being generated (the frozen prefix, Black et al. 2025).
3. **Execute**: ``pop(now)`` is the action due now (latency compensation: rows already
   in the past are never replayed); the safety filter turns it — or a hold when starved,
   stale, paused or disabled — into the command.

Time convention (docs/internals.md): ``now`` and every stamp are seconds on the *stamp
clock* (ROS time in the node: wall or simulated); staleness is also checked on a steady
clock (``steady_clock``) so a stopped ``/clock`` cannot freeze the watchdog.

Settings (:class:`EngineSettings`, the ★ parameters of the node) change atomically:
:meth:`PolicyEngine.update_settings` stores them; the tick applies them before the next
request (sampler settings, blending, horizon: a chunk boundary) or at the next tick
(control rate / velocity limit: the executor period itself).
"""
from __future__ import annotations

import logging
import math
import threading
import time
from dataclasses import dataclass, field
from typing import Callable, Dict, Optional

import numpy as np

from .chunk import ActionChunk
from .chunk_scheduler import ChunkScheduler, SchedulerConfig
from .engine_settings import BLENDING, EngineSettings, ModelInfo  # noqa: F401  (re-exported)
from .generation_worker import GenerationRequest, WorkerError, obs_from_snapshot
from .latency import LatencyTracker
from .observation_buffer import AddStatus, ObservationBuffer
from .safety_filter import SafetyConfig, SafetyFilter, SafetyResult, SafetyStatus

LOG = logging.getLogger("genpolicy_ros.runtime.engine")

STATE_STREAM = "state"  # the joint part of the low-dim state (from JointState)
INPUT_PREFIX = "input/"  # non-joint low-dim inputs by name (e.g. an object pose)
CAMERA_PREFIX = "camera/"
@dataclass
class TickResult:
    """What one tick decided: the command to publish (None = publish nothing)."""

    now: float
    command: Optional[np.ndarray]  # [D_a]
    status: SafetyStatus
    reasons: tuple = ()
    velocity: Optional[np.ndarray] = None  # [D_a] (command − previous) / period
    merged_chunk: Optional[ActionChunk] = None


@dataclass
class EngineCounters:
    ticks: int = 0
    requests: int = 0
    chunks: int = 0
    chunks_discarded_epoch: int = 0
    worker_errors: int = 0
    nonfinite_chunks: int = 0
    merge_rejected: Dict[str, int] = field(default_factory=dict)
    snapshot_unavailable: Dict[str, int] = field(default_factory=dict)
    holds: int = 0
    commands: int = 0
    idle_ticks: int = 0  # held because the plan ran dry after this activation's first chunk


class PolicyEngine:
    """Observation → chunk → command loop; see the module docstring.

    Args:
        model: :class:`ModelInfo` of the loaded model.
        worker: a started :class:`~.generation_worker.GenerationWorker` (or the thread
            variant): ``submit``, ``poll``, ``busy``, ``ready``.
        settings: initial :class:`EngineSettings`.
        clock: stamp clock (seconds) used when :meth:`tick` is called without ``now``.
        steady_clock: monotonic clock for the arrival-time watchdog.
        latency: shared :class:`LatencyTracker` (the worker records into it).
    """

    def __init__(self, model: ModelInfo, worker, settings: Optional[EngineSettings] = None, *,
                 clock: Callable[[], float] = time.monotonic,
                 steady_clock: Callable[[], float] = time.monotonic,
                 latency: Optional[LatencyTracker] = None):
        self.model = model
        self.worker = worker
        self.clock = clock
        self.steady_clock = steady_clock
        # Before the first measured chunk, assume two rows of latency (requests start early).
        self.latency = latency if latency is not None else LatencyTracker(warmup=0, initial_estimate_s=2 * model.dt)
        self._lock = threading.Lock()  # guards settings hand-over and measured positions
        self._settings = settings or EngineSettings()
        self._pending_settings: Optional[EngineSettings] = None
        self.counters = EngineCounters()
        streams = [STATE_STREAM] + [INPUT_PREFIX + n for n in model.state_inputs] \
            + [CAMERA_PREFIX + c for c in model.camera_names]
        self.buffer = ObservationBuffer(T_o=model.T_o, dt=model.dt, stream_names=streams,
                                        max_age_s=self._settings.observation_timeout_s)
        self.scheduler = ChunkScheduler(self._scheduler_config(self._settings))
        self.safety = SafetyFilter(self._safety_config(self._settings))
        self._measured: Optional[np.ndarray] = None  # [D_a] latest measured action joints
        self._measured_stamp: Optional[float] = None
        self._measured_arrival = -math.inf  # steady clock
        self._in_flight: Optional[int] = None  # seq of the request being generated
        self._request_epoch: Dict[int, int] = {}
        self._seq = 0
        self._epoch_seen = self.buffer.epoch
        self._last_error: Optional[WorkerError] = None
        self._stale_reason = ""
        self._deferred_request: Optional[tuple] = None  # (now, settings) from tick(defer_request=True)
        self._plan_started = False  # the plan served an action since the last reset (idle_ticks counts after)
        self._rtc_delay: Optional[tuple] = None  # (rows, latency estimate s) of the last RTC request
        self.last_result: Optional[TickResult] = None  # of the latest tick (diagnostics)
        joint_part = model.joint_state_names
        self._action_index = [joint_part.index(j) if j in joint_part else None for j in model.joint_names]
        # Where the joint part and each input go in the full state vector (model order).
        self._state_slots = {STATE_STREAM: np.array([model.state_names.index(n) for n in joint_part], dtype=int)}
        for name, names in model.state_inputs.items():
            self._state_slots[INPUT_PREFIX + name] = np.array([model.state_names.index(n) for n in names], dtype=int)
        observed = [(k, i) for k, i in enumerate(self._action_index) if i is not None]
        self._action_state_index = np.array([i for _, i in observed], dtype=int)  # [D_a'] into the state
        self._action_lower = model.lower_limits[[k for k, _ in observed]]  # [D_a']
        self._action_upper = model.upper_limits[[k for k, _ in observed]]  # [D_a']

    # ------------------------------------------------------------------ configuration
    def _scheduler_config(self, s: EngineSettings) -> SchedulerConfig:
        horizon = s.action_horizon if s.action_horizon is not None else self.model.T_a
        return SchedulerConfig(blending=s.chunk_blending, action_horizon=min(int(horizon), self.model.T_p),
                               interpolate=True)

    def _safety_config(self, s: EngineSettings) -> SafetyConfig:
        return SafetyConfig(lower=self.model.lower_limits, upper=self.model.upper_limits,
                            max_velocity=s.max_joint_velocity, max_acceleration=s.max_joint_acceleration,
                            dt=s.period_s, position_margin=s.position_margin, max_jump=s.max_jump,
                            max_tracking_error=s.max_tracking_error)

    @property
    def settings(self) -> EngineSettings:
        return self._settings

    def update_settings(self, settings: EngineSettings) -> None:
        """Stage new settings; applied whole at the next tick / chunk boundary."""
        if not isinstance(settings, EngineSettings):
            raise TypeError(f"update_settings takes EngineSettings, got {type(settings).__name__}")
        # Validate the derived configs now so a bad combination is refused, not half-applied.
        self._safety_config(settings)
        self._scheduler_config(settings)
        with self._lock:
            self._pending_settings = settings

    def _apply_pending_settings(self) -> None:
        with self._lock:
            new, self._pending_settings = self._pending_settings, None
        if new is None:
            return
        old = self._settings
        self._settings = new
        if (new.chunk_blending, new.action_horizon) != (old.chunk_blending, old.action_horizon):
            self.scheduler.request_config(self._scheduler_config(new))  # applied at the next merge
        self.safety.reconfigure(self._safety_config(new))
        if new.observation_timeout_s != old.observation_timeout_s:
            self.buffer.max_age_s = new.observation_timeout_s
        LOG.info("settings applied: %s", new)

    # ------------------------------------------------------------------ inputs
    def observe_state(self, stamp: float, positions: np.ndarray, arrival: Optional[float] = None) -> AddStatus:
        """The joint part of the low-dim observation, ``[len(model.joint_state_names)]`` in
        model order (the whole state when the model has no non-joint inputs), stamped ``stamp``.

        A sample whose action joints lie outside the joint limits by more than
        ``max_tracking_error`` is implausible (a bogus message) and refused
        (``OUT_OF_RANGE``): it would feed the policy and the tracking check nonsense."""
        arrival = self.steady_clock() if arrival is None else arrival
        values = np.asarray(positions)
        if values.dtype.kind in "iuf" and values.shape == (len(self.model.joint_state_names),):
            joints = values[self._action_state_index]  # [D_a'] action joints that are observed
            tol = self._settings.max_tracking_error
            if ((joints < self._action_lower - tol) | (joints > self._action_upper + tol)).any():
                self.buffer.count(AddStatus.OUT_OF_RANGE)
                return AddStatus.OUT_OF_RANGE
        status = self.buffer.add(STATE_STREAM, stamp, positions, arrival_time=arrival, now=self.clock())
        if status.accepted:
            values = np.asarray(positions, dtype=float)
            measured = np.array([values[i] if i is not None else np.nan for i in self._action_index])  # [D_a]
            with self._lock:
                self._measured = measured if np.isfinite(measured).all() else None
                self._measured_stamp = float(stamp)
                self._measured_arrival = arrival
        return status

    def observe_input(self, name: str, stamp: float, values: np.ndarray, arrival: Optional[float] = None) -> AddStatus:
        """A non-joint low-dim input ``[len(model.state_inputs[name])]`` stamped ``stamp``:
        same stamp checks, staleness rules and history as the joint states."""
        arrival = self.steady_clock() if arrival is None else arrival
        return self.buffer.add(INPUT_PREFIX + name, stamp, values, arrival_time=arrival, now=self.clock())

    def observe_state_vector(self, stamp: float, state: np.ndarray) -> AddStatus:
        """The whole low-dim observation ``[D_s]`` in ``model.state_names`` order, as a ROS-free
        driver has it (bench, roll-outs): fed as the joint part plus each non-joint input, all
        stamped ``stamp``. Returns the joint part's status."""
        state = np.asarray(state)  # [D_s]
        for name in self.model.state_inputs:
            self.observe_input(name, stamp, state[self._state_slots[INPUT_PREFIX + name]])  # [k]
        return self.observe_state(stamp, state[self._state_slots[STATE_STREAM]])

    def observe_image(self, camera: str, stamp: float, image: np.ndarray, arrival: Optional[float] = None) -> AddStatus:
        """Camera frame ``[H, W, 3]`` uint8 RGB stamped ``stamp``."""
        arrival = self.steady_clock() if arrival is None else arrival
        return self.buffer.add(CAMERA_PREFIX + camera, stamp, image, arrival_time=arrival, now=self.clock())

    def pause(self) -> None:
        self.safety.pause()

    def resume(self) -> None:
        """End a pause once a measured position newer than now arrives."""
        self.safety.resume(self.clock())

    def start_from_measured(self) -> None:
        """Operator's decision: forget the last command; the next first action starts from a
        confirmed measured position (see SafetyFilter.forget). The caller must make sure no
        command stream is running (the node allows it only before the first action)."""
        self.safety.forget()

    def reset(self) -> None:
        """Forget plan and history (lifecycle activate / deactivate)."""
        self.buffer.reset()
        self.scheduler.reset()
        self.safety.restart()
        self._epoch_seen = self.buffer.epoch
        self._in_flight = None
        self._plan_started = False

    # ------------------------------------------------------------------ the tick
    def tick(self, now: Optional[float] = None, *, defer_request: bool = False) -> TickResult:
        """One executor period; see the module docstring.

        With ``defer_request`` the request step (2., the one part of a tick that can take
        milliseconds: it snapshots the observation window and hands it to the worker) is
        left out, and the caller runs it with :meth:`run_deferred_request` *after* it has
        sent the command — so the command leaves on time. Nothing else changes: the
        scheduler's plan and RTC prefix do not depend on the order of pop and request.
        """
        now = self.clock() if now is None else float(now)
        steady = self.steady_clock()
        self.counters.ticks += 1
        if self.buffer.epoch != self._epoch_seen:  # time went backwards: start over
            self._epoch_seen = self.buffer.epoch
            self.scheduler.reset()
            self.safety.restart()
            self._plan_started = False
        merged = self._collect(now)
        self._apply_pending_settings()
        settings = self._settings
        stale = self._stale(now, steady, settings)
        self._deferred_request = None
        if settings.enabled and not stale and not self.safety.paused:
            if defer_request:
                self._deferred_request = (now, settings)
            else:
                self._maybe_request(now, settings)
        target = self.scheduler.pop(now) if settings.enabled else None
        self._plan_started = self._plan_started or target is not None
        with self._lock:
            measured, measured_stamp = self._measured, self._measured_stamp
        result: SafetyResult = self.safety.filter(target, measured, now, measured_stamp=measured_stamp,
                                                  stale=stale)
        reasons = tuple(result.reasons) + ((self._stale_reason,) if stale else ())
        if result.command is not None:
            self.counters.commands += 1
        if result.status.is_hold:
            self.counters.holds += 1
            if result.status is SafetyStatus.HOLD_STARVED and self._plan_started:
                self.counters.idle_ticks += 1
        self.last_result = TickResult(now=now, command=result.command, status=result.status, reasons=reasons,
                                      velocity=result.velocity, merged_chunk=merged)
        return self.last_result

    def stop_tick(self, now: Optional[float] = None) -> TickResult:
        """A tick that only holds — deactivate / shutdown: the safety filter's braking stop
        (velocity to zero at the acceleration limit, then standing still); no request."""
        now = self.clock() if now is None else float(now)
        with self._lock:
            measured, measured_stamp = self._measured, self._measured_stamp
        result = self.safety.filter(None, measured, now, measured_stamp=measured_stamp)
        return TickResult(now=now, command=result.command, status=result.status,
                          reasons=("stopping",) + tuple(result.reasons[1:]), velocity=result.velocity)

    def run_deferred_request(self) -> None:
        """Second half of ``tick(defer_request=True)``: request the next chunk if it is due.
        A no-op when nothing was deferred (call it once per such tick, e.g. in ``finally``)."""
        pending, self._deferred_request = self._deferred_request, None
        if pending is not None:
            self._maybe_request(*pending)

    def _collect(self, now: float) -> Optional[ActionChunk]:
        merged = None
        while True:
            event = self.worker.poll()
            if event is None:
                return merged
            if isinstance(event, WorkerError):
                self.counters.worker_errors += 1
                self._last_error = event
                if event.seq is None or event.seq == self._in_flight or event.kind != "generation":
                    self._in_flight = None
                LOG.warning("generation failed (%s): %s", event.kind, event.message)
                continue
            if event.seq == self._in_flight:
                self._in_flight = None
            self.counters.chunks += 1
            epoch = self._request_epoch.pop(event.seq, None)
            if epoch != self.buffer.epoch:
                self.counters.chunks_discarded_epoch += 1
                continue
            if not event.is_finite:
                self.counters.nonfinite_chunks += 1
                LOG.error("policy produced a non-finite chunk (seq %d): discarded, holding", event.seq)
                continue
            result = self.scheduler.merge(event, now)
            if result.accepted:
                merged = event
            else:
                self.counters.merge_rejected[result.reason] = self.counters.merge_rejected.get(result.reason, 0) + 1

    def _stale(self, now: float, steady: float, settings: EngineSettings) -> bool:
        with self._lock:
            stamp, arrival = self._measured_stamp, self._measured_arrival
        if stamp is None:
            self._stale_reason = "no observation yet"
            return True
        timeout = settings.observation_timeout_s
        if now - stamp > timeout:
            self._stale_reason = f"joint state stamp {now - stamp:.3f} s old (> {timeout} s)"
            return True
        if steady - arrival > timeout:
            self._stale_reason = f"no joint state for {steady - arrival:.3f} s on the steady clock"
            return True
        self._stale_reason = ""
        return False

    def _delay_steps(self, now: float, t0: float, settings: EngineSettings) -> int:
        if settings.inference_delay_steps >= 0:
            self._rtc_delay = (int(settings.inference_delay_steps), self.latency.estimate_s())
            return int(settings.inference_delay_steps)
        # Rows due at or before the expected arrival (t0 + age + latency) run from the
        # current plan: i·dt <= expected  <=>  i <= floor(expected / dt).
        estimate = self.latency.estimate_s()
        expected = max(0.0, now - t0) + estimate
        rows = int(min(self.model.T_p, math.floor(expected / self.model.dt + 1e-9) + 1))
        self._rtc_delay = (rows, estimate)
        return rows

    def _maybe_request(self, now: float, settings: EngineSettings) -> None:
        if self._in_flight is not None or not self.worker.ready or self.worker.busy:
            return
        if not self.scheduler.needs_refill(now, self.latency.estimate_s()):
            return
        snapshot = self.buffer.snapshot(now, steady_now=self.steady_clock())
        if snapshot is None:
            status, _ = self.buffer.last_status
            key = getattr(status, "value", str(status))
            self.counters.snapshot_unavailable[key] = self.counters.snapshot_unavailable.get(key, 0) + 1
            return
        prefix_actions = prefix_weights = None
        if settings.chunk_blending == "rtc":
            prefix = self.scheduler.rtc_prefix(snapshot.t, self._delay_steps(now, snapshot.t, settings),
                                               self.model.T_p)
            if prefix is not None and prefix.actions.shape[0] > 0:
                prefix_actions, prefix_weights = prefix.actions, prefix.weights
        seq = self._seq
        self._seq += 1
        request = GenerationRequest(
            seq=seq,
            obs=obs_from_snapshot(self._full_state(snapshot), state_stream=STATE_STREAM, camera_prefix=CAMERA_PREFIX),
            t0=snapshot.t,
            settings=settings.sampler_settings(),
            seed=None if settings.seed is None else (int(settings.seed) + seq) % 2**31,
            prefix_actions=prefix_actions,
            prefix_weights=prefix_weights,
            prefix_mode=settings.rtc_prefix_mode,
        )
        self._request_epoch[seq] = snapshot.epoch
        if len(self._request_epoch) > 64:  # replies that never came (worker restarts)
            for old in sorted(self._request_epoch)[:-64]:
                del self._request_epoch[old]
        self._in_flight = seq
        self.counters.requests += 1
        self.worker.submit(request)

    def _full_state(self, snapshot) -> dict:
        """Snapshot streams -> ``{"state": [T_o, D_s] in model order, "camera/...": ...}``."""
        if not self.model.state_inputs:
            return snapshot.data
        data = {k: v for k, v in snapshot.data.items() if not k.startswith(INPUT_PREFIX)}
        state = np.empty((self.model.T_o, len(self.model.state_names)), dtype=np.float64)  # [T_o, D_s]
        for stream, slots in self._state_slots.items():
            state[:, slots] = snapshot.data[stream]
        data[STATE_STREAM] = state
        return data

    # ------------------------------------------------------------------ reporting
    def stats(self) -> dict:
        """Flat numbers for /diagnostics and benchmarks.

        ``idle_ticks``: ticks held because the plan ran dry after the first chunk of this
        activation (the robot waited for the policy; the wait for the very first chunk is not
        counted). ``rtc_delay_rows`` / ``rtc_delay_latency_ms``: the inference delay (frozen
        rows) the last RTC request used and the latency estimate it came from (None before
        any RTC request; with a fixed ``inference_delay_steps`` the rows are that setting)."""
        c = self.counters
        lat = self.latency.stats()
        rtc_rows, rtc_estimate = self._rtc_delay if self._rtc_delay is not None else (None, None)
        out = {
            "ticks": c.ticks, "requests": c.requests, "chunks": c.chunks, "commands": c.commands,
            "holds": c.holds, "idle_ticks": c.idle_ticks, "worker_errors": c.worker_errors,
            "nonfinite_chunks": c.nonfinite_chunks,
            "chunks_discarded_epoch": c.chunks_discarded_epoch,
            "merge_rejected": dict(c.merge_rejected), "snapshot_unavailable": dict(c.snapshot_unavailable),
            "latency_p50_ms": None if lat["p50_s"] is None else 1e3 * lat["p50_s"],
            "latency_p95_ms": None if lat["p95_s"] is None else 1e3 * lat["p95_s"],
            "latency_max_ms": None if lat["max_s"] is None else 1e3 * lat["max_s"],
            "rtc_delay_rows": rtc_rows,
            "rtc_delay_latency_ms": None if rtc_estimate is None else 1e3 * rtc_estimate,
            "stale_reason": self._stale_reason,
            "paused": self.safety.paused,
            "last_error": None if self._last_error is None else self._last_error.message,
        }
        out["scheduler"] = self.scheduler.stats()
        out["safety"] = self.safety.stats()
        out["buffer"] = self.buffer.stats()
        return out
