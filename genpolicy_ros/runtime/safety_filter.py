"""`SafetyFilter`: the last stage before a command leaves the node.

Guarantees (pinned by test/runtime/test_safety_filter.py): every command it returns is
finite and inside ``[lower, upper]``; consecutive commands differ by at most
``max_velocity·dt`` per joint, except the first action after a (re)start, which starts
from the measured position (see below). It covers the rows of
shared/design/reliability.md that a ROS-free stage can own:

* row 1 — NaN/Inf anywhere in the target: hold, count (``HOLD_NONFINITE``);
* row 4/14 — stale observations (caller says so): hold (``HOLD_STALE``);
* row 7 — starved scheduler (no target): hold (``HOLD_STARVED``);
* row 9 — far target: approached under per-joint velocity and acceleration limits;
* row 10 — target outside the joint limits: clamped to ``[lower+margin, upper−margin]``;
* row 11 — pause latch: immediate hold until `resume` *and* a fresh measured position;
* row 15 — nothing known yet (no command issued, no measured position): no command
  (``command is None``); a first action also needs a measured position
  (``HOLD_NO_MEASURED``).

"Hold" = keep commanding the last command (a stop: position-continuous, velocity drops to
zero — the acceleration limit governs commanded motion, not stops); before any command
the hold is the measured position clamped into ``[lower, upper]``.

Motion law, per joint, each call (``e = clamp(target) − previous command``)::

    v_goal  = e / dt                                  # reach the target this tick
    v_ref   = clip((clamp(target) − previous clamped target) / dt, ±v_max)
    v_brake = −a·dt/2 + sqrt((a·dt/2)² + 2·a·|e|)     # can still stop within |e| at decel a
    v       = clip(v_goal, v_ref − v_brake, v_ref + v_brake)      # no overshoot of a far target
    v       = clip(v, v_prev − a·dt, v_prev + a·dt)               # acceleration limit
    v       = clip(v, −v_max, v_max)                              # velocity limit (hard)
    command = clip(prev + v·dt, min(lower+margin, prev), max(upper−margin, prev))

``v_brake`` is the discrete stopping-distance bound (decelerating at ``a`` per step covers
``v²/(2a) + v·dt/2``), taken relative to the target's own velocity so that a moving target
is tracked exactly in steady state (then ``v = v_ref``). The final clip never moves the
command away from ``prev``, so it cannot create a jump, and once inside the margin band
the command stays there.

First action after a (re)start (construction, `restart`, effective `resume`): the baseline
becomes the measured position. If every joint of the clamped target is within
``max_jump`` of it, the command goes there directly; otherwise it ramps from the measured
position under the limits above (status ``RAMPING`` until within ``max_jump``).
"""
from __future__ import annotations

import enum
import math
import threading
from dataclasses import dataclass
from typing import Dict, Optional, Tuple, Union

import numpy as np

ArrayLike = Union[float, np.ndarray, list, tuple]


class SafetyStatus(str, enum.Enum):
    """Primary outcome of one `SafetyFilter.filter` call."""

    OK = "ok"
    CLAMPED_POSITION = "clamped_position"
    CLAMPED_VELOCITY = "clamped_velocity"
    CLAMPED_ACCELERATION = "clamped_acceleration"
    RAMPING = "ramping"
    HOLD_NONFINITE = "hold_nonfinite"
    HOLD_INVALID = "hold_invalid"  # wrong shape / not numeric
    HOLD_STARVED = "hold_starved"
    HOLD_PAUSED = "hold_paused"
    HOLD_STALE = "hold_stale"
    HOLD_NO_MEASURED = "hold_no_measured"  # valid target, but no measured position to start from

    @property
    def is_hold(self) -> bool:
        return self.value.startswith("hold_")


@dataclass(frozen=True)
class SafetyResult:
    """``command``: ``[D]`` float64 (None when nothing may be commanded); ``reasons``: details."""

    command: Optional[np.ndarray]
    status: SafetyStatus
    reasons: Tuple[str, ...] = ()


def _per_joint(name: str, value: ArrayLike, dim: int, *, positive: bool, allow_zero: bool = False) -> np.ndarray:
    arr = np.broadcast_to(np.asarray(value, dtype=np.float64), (dim,)).copy() if np.ndim(value) == 0 \
        else np.asarray(value, dtype=np.float64).copy()
    if arr.shape != (dim,):
        raise ValueError(f"SafetyConfig.{name} must be a scalar or have {dim} entries, got shape {arr.shape}")
    if not np.isfinite(arr).all():
        raise ValueError(f"SafetyConfig.{name} must be finite, got {arr.tolist()}")
    if positive and ((arr < 0).any() if allow_zero else (arr <= 0).any()):
        bound = ">= 0" if allow_zero else "> 0"
        raise ValueError(f"SafetyConfig.{name} must be {bound}, got {arr.tolist()}")
    arr.setflags(write=False)
    return arr


@dataclass(frozen=True, eq=False)
class SafetyConfig:
    """Joint limits and motion limits; per-joint fields accept a scalar or ``[D]``.

    Args:
        lower, upper: ``[D]`` joint limits (rad or m), ``lower < upper``.
        position_margin: targets are clamped to ``[lower+margin, upper−margin]`` (≥ 0).
        max_velocity: per-joint speed limit (> 0), units/s.
        max_acceleration: per-joint acceleration limit (> 0), units/s².
        max_jump: largest allowed first-action distance from the measured position (≥ 0).
        dt: seconds between `SafetyFilter.filter` calls (the executor period, > 0).
    """

    lower: ArrayLike
    upper: ArrayLike
    max_velocity: ArrayLike
    max_acceleration: ArrayLike
    dt: float
    position_margin: ArrayLike = 0.0
    max_jump: ArrayLike = 0.05

    def __post_init__(self) -> None:
        lower = np.atleast_1d(np.asarray(self.lower, dtype=np.float64)).copy()
        if lower.ndim != 1 or lower.size < 1:
            raise ValueError(f"SafetyConfig.lower must be a 1-D array of joint limits, got shape {lower.shape}")
        dim = lower.size
        lower = _per_joint("lower", lower, dim, positive=False)
        upper = _per_joint("upper", self.upper, dim, positive=False)
        if not (lower < upper).all():
            raise ValueError(f"SafetyConfig needs lower < upper for every joint, got {lower.tolist()} / {upper.tolist()}")
        margin = _per_joint("position_margin", self.position_margin, dim, positive=True, allow_zero=True)
        if not (lower + margin <= upper - margin).all():
            raise ValueError("SafetyConfig.position_margin leaves an empty range: need lower+margin <= upper-margin")
        if not isinstance(self.dt, (int, float)) or not math.isfinite(self.dt) or self.dt <= 0:
            raise ValueError(f"SafetyConfig.dt must be finite and > 0, got {self.dt!r}")
        object.__setattr__(self, "lower", lower)
        object.__setattr__(self, "upper", upper)
        object.__setattr__(self, "position_margin", margin)
        object.__setattr__(self, "max_velocity", _per_joint("max_velocity", self.max_velocity, dim, positive=True))
        object.__setattr__(self, "max_acceleration",
                           _per_joint("max_acceleration", self.max_acceleration, dim, positive=True))
        object.__setattr__(self, "max_jump", _per_joint("max_jump", self.max_jump, dim, positive=True,
                                                        allow_zero=True))
        object.__setattr__(self, "dt", float(self.dt))

    @property
    def dim(self) -> int:
        return int(self.lower.shape[0])

    @property
    def safe_lower(self) -> np.ndarray:
        return self.lower + self.position_margin

    @property
    def safe_upper(self) -> np.ndarray:
        return self.upper - self.position_margin


class SafetyFilter:
    """Stateful command filter; thread-safe (`pause`/`resume` may come from another thread)."""

    def __init__(self, config: SafetyConfig) -> None:
        if not isinstance(config, SafetyConfig):
            raise TypeError(f"config must be a SafetyConfig, got {type(config).__name__}")
        self.config = config
        self._lock = threading.Lock()
        self._prev: Optional[np.ndarray] = None  # [D] last command returned
        self._prev_vel = np.zeros(config.dim)  # [D] velocity of the last commanded step
        self._last_target: Optional[np.ndarray] = None  # [D] previous clamped target
        self._started = False  # False → the next action is checked against the measured position
        self._ramping = False
        self._paused = False
        self._resume_at: Optional[float] = None  # stamp-clock time of the pending resume
        self._counts: Dict[str, int] = {s.value: 0 for s in SafetyStatus}
        self._invalid_measured = 0
        self._last_time: Optional[float] = None

    # ------------------------------------------------------------------ control
    def pause(self) -> None:
        """Latch a hold immediately; only `resume` plus a fresh measured position clears it."""
        with self._lock:
            self._paused = True
            self._resume_at = None

    def resume(self, now: float) -> None:
        """Request the end of a pause; effective at the first `filter` call whose measured
        position is stamped after ``now`` (or, without stamps, the next call with one)."""
        if not isinstance(now, (int, float)) or not math.isfinite(now):
            raise ValueError(f"resume(now) needs a finite time, got {now!r}")
        with self._lock:
            if self._paused:
                self._resume_at = float(now)

    def reconfigure(self, config: SafetyConfig) -> None:
        """Swap limits / executor period (e.g. a new control rate) at a tick boundary.

        The last command and velocity are kept, so the next command still obeys the new
        velocity and acceleration limits relative to what was just commanded.
        """
        if not isinstance(config, SafetyConfig):
            raise TypeError(f"config must be a SafetyConfig, got {type(config).__name__}")
        with self._lock:
            if config.dim != self.config.dim:
                raise ValueError(f"cannot change the joint count from {self.config.dim} to {config.dim}")
            self.config = config

    @property
    def paused(self) -> bool:
        with self._lock:
            return self._paused

    def restart(self) -> None:
        """Next action is checked against the measured position again (lifecycle activate)."""
        with self._lock:
            self._restart()

    def _restart(self) -> None:
        self._started = False
        self._ramping = False
        self._prev_vel = np.zeros(self.config.dim)
        self._last_target = None

    # ------------------------------------------------------------------ filtering
    def filter(self, target: Optional[ArrayLike], measured_position: Optional[ArrayLike], now: float, *,
               measured_stamp: Optional[float] = None, stale: bool = False) -> SafetyResult:
        """Filter one target (``[D]`` or None when starved) into a safe command.

        Args:
            target: desired joint positions ``[D]``; None = scheduler starved.
            measured_position: latest measured joint positions ``[D]`` or None.
            now: current time (stamp clock); recorded for diagnostics only — limits use
                ``config.dt`` per call, so a late call never allows a bigger step.
            measured_stamp: stamp of ``measured_position`` (for the resume freshness check).
            stale: the caller's observation watchdog says inputs are stale → hold.
        """
        with self._lock:
            result = self._filter(target, measured_position, measured_stamp, stale)
            if result.command is not None:
                cmd = result.command
                if not (np.isfinite(cmd).all() and (cmd >= self.config.lower).all()
                        and (cmd <= self.config.upper).all()):  # pragma: no cover - defensive net
                    result = self._hold(SafetyStatus.HOLD_INVALID, "internal: unsafe command suppressed", None)
            self._counts[result.status.value] += 1
            self._last_time = now
            return result

    def _as_vector(self, value) -> Optional[np.ndarray]:
        try:
            arr = np.asarray(value, dtype=np.float64)
        except (TypeError, ValueError):
            return None
        if arr.shape != (self.config.dim,):
            return None
        return arr

    def _filter(self, target, measured_position, measured_stamp, stale) -> SafetyResult:
        cfg = self.config
        measured = None
        if measured_position is not None:
            measured = self._as_vector(measured_position)
            if measured is None or not np.isfinite(measured).all():
                self._invalid_measured += 1
                measured = None
            else:
                measured = np.clip(measured, cfg.lower, cfg.upper)  # [D]

        if self._paused:
            fresh = measured is not None and self._resume_at is not None and (
                measured_stamp is None or measured_stamp > self._resume_at)
            if not fresh:
                why = "paused" if self._resume_at is None else "resume waits for a fresh measured position"
                return self._hold(SafetyStatus.HOLD_PAUSED, why, measured)
            self._paused = False
            self._resume_at = None
            self._restart()
        if stale:
            return self._hold(SafetyStatus.HOLD_STALE, "observations are stale", measured)
        if target is None:
            return self._hold(SafetyStatus.HOLD_STARVED, "no action due (scheduler starved)", measured)
        tgt = self._as_vector(target)
        if tgt is None:
            return self._hold(SafetyStatus.HOLD_INVALID, f"target is not a [{cfg.dim}] numeric vector", measured)
        if not np.isfinite(tgt).all():
            bad = np.flatnonzero(~np.isfinite(tgt)).tolist()
            return self._hold(SafetyStatus.HOLD_NONFINITE, f"non-finite target on joints {bad}", measured)

        reasons = []
        clamped = np.clip(tgt, cfg.safe_lower, cfg.safe_upper)  # [D]
        position_clamped = bool((clamped != tgt).any())
        if position_clamped:
            reasons.append("target clamped to joint limits with margin on joints "
                           f"{np.flatnonzero(clamped != tgt).tolist()}")

        if not self._started:
            if measured is None:
                return self._hold(SafetyStatus.HOLD_NO_MEASURED, "no measured position to start from", None)
            self._prev = measured
            self._prev_vel = np.zeros(cfg.dim)
            self._last_target = None
            self._started = True
            jump = np.abs(clamped - measured)  # [D]
            if (jump <= cfg.max_jump).all():
                # Direct start: the jump is not a velocity (the robot starts at rest).
                return self._emit(clamped, clamped, SafetyStatus.CLAMPED_POSITION if position_clamped
                                  else SafetyStatus.OK, reasons, at_rest=True)
            self._ramping = True
            reasons.append(f"first action is {float(jump.max()):.4g} from the measured position "
                           f"(max_jump {float(cfg.max_jump.max()):.4g}): ramping")

        command, limited = self._step(clamped)
        status = SafetyStatus.OK
        if limited:
            status = limited
            reasons.append(f"motion limited ({limited.value})")
        elif position_clamped:
            status = SafetyStatus.CLAMPED_POSITION
        if self._ramping:
            if (np.abs(clamped - command) <= cfg.max_jump).all():
                self._ramping = False
            status = SafetyStatus.RAMPING
        return self._emit(command, clamped, status, reasons)

    def _step(self, clamped: np.ndarray) -> Tuple[np.ndarray, Optional[SafetyStatus]]:
        """One rate-limited step from the previous command toward ``clamped`` (module docstring)."""
        cfg = self.config
        dt, a, vmax = cfg.dt, cfg.max_acceleration, cfg.max_velocity
        prev = self._prev
        e = clamped - prev  # [D]
        v_goal = e / dt  # [D]
        v_ref = np.zeros(cfg.dim) if self._last_target is None else np.clip((clamped - self._last_target) / dt,
                                                                            -vmax, vmax)
        half = 0.5 * a * dt
        v_brake = -half + np.sqrt(half * half + 2.0 * a * np.abs(e))  # [D]
        v_b = np.clip(v_goal, v_ref - v_brake, v_ref + v_brake)
        v_a = np.clip(v_b, self._prev_vel - a * dt, self._prev_vel + a * dt)
        v = np.clip(v_a, -vmax, vmax)
        lo = np.minimum(cfg.safe_lower, prev)
        hi = np.maximum(cfg.safe_upper, prev)
        command = np.clip(prev + v * dt, lo, hi)  # [D]
        if not (np.abs(command - clamped) > 1e-12).any():
            return clamped.copy(), None
        # Which limit decided the final velocity (per joint), most specific first.
        velocity_bound = v != v_a
        accel_bound = ~velocity_bound & ((v_a != v_b) | (v_b != v_goal))  # window or braking
        if accel_bound.any():
            return command, SafetyStatus.CLAMPED_ACCELERATION
        if velocity_bound.any():
            return command, SafetyStatus.CLAMPED_VELOCITY
        return command, None

    def _emit(self, command: np.ndarray, clamped: np.ndarray, status: SafetyStatus, reasons,
              at_rest: bool = False) -> SafetyResult:
        if at_rest or self._prev is None:
            self._prev_vel = np.zeros(self.config.dim)
        else:
            self._prev_vel = (command - self._prev) / self.config.dt  # [D]
        self._prev = command
        self._last_target = clamped
        return SafetyResult(command.copy(), status, tuple(reasons))

    def _hold(self, status: SafetyStatus, why: str, measured: Optional[np.ndarray]) -> SafetyResult:
        """Hold the last command; before any command, the measured position; else nothing."""
        self._prev_vel = np.zeros(self.config.dim)
        self._last_target = None
        if self._started and self._prev is not None:
            return SafetyResult(self._prev.copy(), status, (why,))
        if measured is not None:
            self._prev = measured
            return SafetyResult(measured.copy(), status, (why,))
        if self._prev is not None:
            return SafetyResult(self._prev.copy(), status, (why,))
        return SafetyResult(None, status, (why, "no command: neither a previous command nor a measured position"))

    # ------------------------------------------------------------------ diagnostics
    def stats(self) -> Dict[str, object]:
        """Counts per `SafetyStatus`, invalid measured positions, pause state."""
        with self._lock:
            return {"status": dict(self._counts), "invalid_measured": self._invalid_measured,
                    "paused": self._paused, "started": self._started}
