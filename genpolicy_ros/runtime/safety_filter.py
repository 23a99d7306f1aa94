"""`SafetyFilter`: the last stage before a command leaves the node.

**Continuity by construction.** Once the filter has issued a command it never lets go of
it: every later command — after a hold, a pause, a plan reset, a time jump, a parameter
change, a backend restart, a lifecycle deactivate/activate — is one step from the
previous command under the velocity and acceleration limits. Nothing re-anchors the
command stream to a measured position. Guarantees (pinned by
test/runtime/test_safety_filter.py and the property test test_safety_properties.py), for
consecutive commands ``c[k-1], c[k]`` issued with period ``dt``::

    v[k] = (c[k] − c[k−1]) / dt
    |v[k] − v[k−1]| <= max_acceleration·dt                     (every command, holds included)
    |v[k]|          <= max(max_velocity, |v[k−1]| − max_acceleration·dt)
    lower <= c[k] <= upper, and c[k] finite

(the velocity bound is ``max_velocity`` except right after ``max_velocity`` was lowered
while moving faster: then the speed comes down at ``max_acceleration``, so lowering the
limit can never demand an infinite deceleration).

It covers the rows of shared/design/reliability.md that a ROS-free stage can own:

* row 1 — NaN/Inf anywhere in the target: hold, count (``HOLD_NONFINITE``);
* row 4/14 — stale observations (caller says so): hold (``HOLD_STALE``);
* row 7 — starved scheduler (no target): hold (``HOLD_STARVED``);
* row 9 — far target: approached under per-joint velocity and acceleration limits;
* row 10 — target outside the joint limits: clamped to ``[lower+margin, upper−margin]``;
* row 11 — pause latch: hold until `resume` *and* a fresh, consistent measured position;
* row 15 — before the first action nothing is commanded (``command is None``).

**Hold** = a braking stop at the last command: each joint's velocity falls to zero at
``max_acceleration`` (at most ``v²/2a`` further, 0.1 rad at 2 rad/s and 20 rad/s²), then the
command stands still. A hold is position- *and* velocity-continuous.

**Tracking check** (a robot that did not follow, or a bogus joint state). The filter
keeps the commands of the last ``tracking_window_s``; a measured position farther than
``max_tracking_error`` (per joint) from the range those commands spanned means the robot and
the command stream disagree: hold (``HOLD_TRACKING``, the caller reports ERROR) and resume
only after ``confirm_samples`` consecutive measured positions (distinct stamps) agree with
the held command again — never jump to the measurement. The window covers a position
controller's tracking lag (a servo that follows 80 ms behind the command lies inside the
range the last 0.5 s of commands spanned).

**First action.** Before anything was commanded, the anchor is the measured position,
once ``confirm_samples`` consecutive measured positions agree within
``max_tracking_error`` (one bogus message cannot place the anchor). The first action steps
from there under the limits (status ``RAMPING`` while the target is farther than
``max_jump``). `restart` (lifecycle activate, plan reset) keeps the last command: the next
action steps from it, ramping the same way. Only `forget` — an explicit operator action
(the node's ``~/start_from_measured`` service, e.g. after moving the robot by hand while the
node was inactive) — drops the last command so that a confirmed measured position becomes
the anchor again.

Motion law, per joint, each call (``e = clamp(target) − previous command``)::

    v_goal  = e / dt                                  # reach the target this tick
    v_ref   = clip((clamp(target) − previous clamped target) / dt, ±v_max)
    v_brake = −a·dt/2 + sqrt((a·dt/2)² + 2·a·|e|)     # can still stop within |e| at decel a
    v       = clip(v_goal, v_ref − v_brake, v_ref + v_brake)      # no overshoot of a far target
    v       = clip(v, v_prev − a·dt, v_prev + a·dt)               # acceleration limit
    v       = clip(v, −v_cap, v_cap),  v_cap = max(v_max, |v_prev| − a·dt)
    command = clip(prev + v·dt, min(lower, prev), max(upper, prev))

``v_brake`` is the discrete stopping-distance bound (decelerating at ``a`` per step covers
``v²/(2a) + v·dt/2``), taken relative to the target's own velocity so that a moving target
is tracked exactly in steady state (then ``v = v_ref``). Targets are clamped into the
margin band, and the command can always stop before reaching its target, so the final
clip is only a net.
"""
from __future__ import annotations

import math
import threading
from collections import deque
from typing import Deque, Dict, Optional, Tuple

import numpy as np

from .safety_config import ArrayLike, SafetyConfig, SafetyResult, SafetyStatus

__all__ = ["ArrayLike", "SafetyConfig", "SafetyFilter", "SafetyResult", "SafetyStatus"]


class _CommandWindow:
    """The last ``n`` commands in a preallocated ring (no allocation per tick but the
    two ``[D]`` reductions)."""

    def __init__(self, n: int, dim: int) -> None:
        self.rows = np.zeros((n, dim))  # [n, D]
        self.count = 0
        self.head = 0

    def push(self, command: np.ndarray) -> None:
        self.rows[self.head] = command
        self.head = (self.head + 1) % self.rows.shape[0]
        self.count = min(self.count + 1, self.rows.shape[0])

    def distance(self, position: np.ndarray) -> np.ndarray:
        """``[D]`` per-joint distance of ``position`` from the range the commands spanned."""
        rows = self.rows[:self.count]
        lo, hi = rows.min(axis=0), rows.max(axis=0)  # [D]
        return np.maximum(0.0, np.maximum(lo - position, position - hi))


class SafetyFilter:
    """Stateful command filter; thread-safe (`pause`/`resume` may come from another thread)."""

    def __init__(self, config: SafetyConfig) -> None:
        if not isinstance(config, SafetyConfig):
            raise TypeError(f"config must be a SafetyConfig, got {type(config).__name__}")
        self.config = config
        self._lock = threading.Lock()
        self._prev: Optional[np.ndarray] = None  # [D] last command issued: the anchor, never re-set
        self._prev_vel = np.zeros(config.dim)  # [D] velocity of the last commanded step
        self._last_target: Optional[np.ndarray] = None  # [D] previous clamped target
        self._window = _CommandWindow(config.window_ticks, config.dim)
        self._recent: Deque[np.ndarray] = deque(maxlen=config.confirm_samples)  # measured, distinct stamps
        self._last_measured_stamp: Optional[float] = None
        self._tracking_fault = False
        self._consistent = 0  # consecutive consistent measurements during a tracking hold
        self._tracking_error = np.zeros(config.dim)  # [D] latest measured distance from the window
        self._ramping = False
        self._restarted = True  # next action is a first action (status RAMPING when far)
        self._paused = False
        self._resume_at: Optional[float] = None  # stamp-clock time of the pending resume
        self._counts: Dict[str, int] = {s.value: 0 for s in SafetyStatus}
        self._invalid_measured = 0
        self._tracking_faults = 0
        self._last_time: Optional[float] = None

    # ------------------------------------------------------------------ control
    def pause(self) -> None:
        """Latch a hold (a braking stop) at once; only `resume` plus a fresh, consistent
        measured position clears it."""
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
            if config.window_ticks != self.config.window_ticks:
                old, self._window = self._window, _CommandWindow(config.window_ticks, config.dim)
                if self._prev is not None and old.count:
                    self._window.push(old.rows[:old.count].min(axis=0))
                    self._window.push(old.rows[:old.count].max(axis=0))
            if config.confirm_samples != self.config.confirm_samples:
                self._recent = deque(self._recent, maxlen=config.confirm_samples)
            self.config = config

    @property
    def paused(self) -> bool:
        with self._lock:
            return self._paused

    @property
    def has_commanded(self) -> bool:
        """True once a command was issued (from then on every call returns one)."""
        with self._lock:
            return self._prev is not None

    def restart(self) -> None:
        """A new plan starts (lifecycle activate, plan reset): the next action is a first
        action again (``RAMPING`` while far) — stepping from the last command, not from a
        measured position."""
        with self._lock:
            self._restarted = True
            self._ramping = False
            self._last_target = None

    def forget(self) -> None:
        """Forget the last command (an operator's explicit decision, e.g. after moving the
        robot while the node was inactive): the next first action starts from a confirmed
        measured position again. Never called on any automatic path."""
        with self._lock:
            self._prev = None
            self._prev_vel = np.zeros(self.config.dim)
            self._last_target = None
            self._window = _CommandWindow(self.config.window_ticks, self.config.dim)
            self._recent.clear()
            self._tracking_fault = False
            self._consistent = 0
            self._tracking_error = np.zeros(self.config.dim)
            self._restarted = True
            self._ramping = False

    # ------------------------------------------------------------------ filtering
    def filter(self, target: Optional[ArrayLike], measured_position: Optional[ArrayLike], now: float, *,
               measured_stamp: Optional[float] = None, stale: bool = False) -> SafetyResult:
        """Filter one target (``[D]`` or None when starved) into a safe command.

        Args:
            target: desired joint positions ``[D]``; None = scheduler starved.
            measured_position: latest measured joint positions ``[D]`` or None.
            now: current time (stamp clock); recorded for diagnostics only — limits use
                ``config.dt`` per call, so a late call never allows a bigger step.
            measured_stamp: stamp of ``measured_position`` (distinct stamps count as new
                measurements; None = every call brings a new one).
            stale: the caller's observation watchdog says inputs are stale → hold.
        """
        with self._lock:
            result = self._filter(target, measured_position, measured_stamp, stale)
            if result.command is not None:
                cmd = result.command
                if not (np.isfinite(cmd).all() and (cmd >= self.config.lower).all()
                        and (cmd <= self.config.upper).all()):  # pragma: no cover - defensive net
                    result = self._hold(SafetyStatus.HOLD_INVALID, "internal: unsafe command suppressed")
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

    def _observe_measured(self, measured_position, measured_stamp) -> Optional[np.ndarray]:
        """Validate the measured position; update the confirmation queue and the tracking
        check when it is a new measurement. Returns it (clamped to the limits) or None."""
        cfg = self.config
        if measured_position is None:
            return None
        measured = self._as_vector(measured_position)
        if measured is None or not np.isfinite(measured).all():
            self._invalid_measured += 1
            return None
        measured = np.clip(measured, cfg.lower, cfg.upper)  # [D]
        new = measured_stamp is None or measured_stamp != self._last_measured_stamp
        if not new:
            return measured
        self._last_measured_stamp = measured_stamp
        self._recent.append(measured)
        if self._prev is None:
            return measured
        self._tracking_error = self._window.distance(measured)  # [D]
        consistent = bool((self._tracking_error <= cfg.max_tracking_error).all())
        if not consistent:
            if not self._tracking_fault:
                self._tracking_faults += 1
            self._tracking_fault = True
            self._consistent = 0
        elif self._tracking_fault:
            self._consistent += 1
            if self._consistent >= cfg.confirm_samples:
                self._tracking_fault = False
                self._consistent = 0
                self._restarted = True
        return measured

    def _confirmed_anchor(self) -> Optional[np.ndarray]:
        """The newest measured position when the last ``confirm_samples`` agree."""
        cfg = self.config
        if len(self._recent) < cfg.confirm_samples:
            return None
        stack = np.stack(self._recent)  # [n, D]
        if ((stack.max(axis=0) - stack.min(axis=0)) > cfg.max_tracking_error).any():
            return None
        return self._recent[-1].copy()

    def _filter(self, target, measured_position, measured_stamp, stale) -> SafetyResult:
        cfg = self.config
        measured = self._observe_measured(measured_position, measured_stamp)
        if self._paused:
            fresh = measured is not None and self._resume_at is not None and (
                measured_stamp is None or measured_stamp > self._resume_at)
            if not fresh or self._tracking_fault:
                why = "paused" if self._resume_at is None else "resume waits for a fresh measured position"
                if self._tracking_fault:
                    why += "; measured position disagrees with the last command"
                return self._hold(SafetyStatus.HOLD_PAUSED, why)
            self._paused = False
            self._resume_at = None
            self._restarted = True
        if self._tracking_fault:
            bad = np.flatnonzero(self._tracking_error > cfg.max_tracking_error).tolist()
            return self._hold(SafetyStatus.HOLD_TRACKING, (
                f"measured position is {float(self._tracking_error.max()):.4g} from the commanded path on joints "
                f"{bad} (max_tracking_error {float(cfg.max_tracking_error.max()):.4g}): holding the last command "
                f"until {cfg.confirm_samples} consistent measurements"))
        if stale:
            return self._hold(SafetyStatus.HOLD_STALE, "observations are stale")
        if target is None:
            return self._hold(SafetyStatus.HOLD_STARVED, "no action due (scheduler starved)")
        tgt = self._as_vector(target)
        if tgt is None:
            return self._hold(SafetyStatus.HOLD_INVALID, f"target is not a [{cfg.dim}] numeric vector")
        if not np.isfinite(tgt).all():
            bad = np.flatnonzero(~np.isfinite(tgt)).tolist()
            return self._hold(SafetyStatus.HOLD_NONFINITE, f"non-finite target on joints {bad}")

        reasons = []
        clamped = np.clip(tgt, cfg.safe_lower, cfg.safe_upper)  # [D]
        position_clamped = bool((clamped != tgt).any())
        if position_clamped:
            reasons.append("target clamped to joint limits with margin on joints "
                           f"{np.flatnonzero(clamped != tgt).tolist()}")
        if self._prev is None:
            anchor = self._confirmed_anchor()
            if anchor is None:
                return self._hold(SafetyStatus.HOLD_NO_MEASURED,
                                  f"waiting for {cfg.confirm_samples} consistent measured positions to start from")
            self._prev = anchor
            self._prev_vel = np.zeros(cfg.dim)
            self._window.push(anchor)
        if self._restarted:
            self._restarted = False
            self._last_target = None
            jump = np.abs(clamped - self._prev)  # [D]
            if (jump > cfg.max_jump).any():
                self._ramping = True
                reasons.append(f"first action is {float(jump.max()):.4g} from the last command "
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

    def _velocity_cap(self) -> np.ndarray:
        cfg = self.config
        return np.maximum(cfg.max_velocity, np.abs(self._prev_vel) - cfg.max_acceleration * cfg.dt)  # [D]

    def _step(self, clamped: np.ndarray) -> Tuple[np.ndarray, Optional[SafetyStatus]]:
        """One rate-limited step from the previous command toward ``clamped`` (module docstring)."""
        cfg = self.config
        dt, a = cfg.dt, cfg.max_acceleration
        vmax = cfg.max_velocity
        prev = self._prev
        e = clamped - prev  # [D]
        v_goal = e / dt  # [D]
        v_ref = np.zeros(cfg.dim) if self._last_target is None else np.clip((clamped - self._last_target) / dt,
                                                                            -vmax, vmax)
        half = 0.5 * a * dt
        v_brake = -half + np.sqrt(half * half + 2.0 * a * np.abs(e))  # [D]
        v_b = np.clip(v_goal, v_ref - v_brake, v_ref + v_brake)
        v_a = np.clip(v_b, self._prev_vel - a * dt, self._prev_vel + a * dt)
        cap = self._velocity_cap()
        v = np.clip(v_a, -cap, cap)
        command = self._advance(v)  # [D]
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

    def _advance(self, v: np.ndarray) -> np.ndarray:
        cfg = self.config
        prev = self._prev
        lo = np.minimum(cfg.lower, prev)
        hi = np.maximum(cfg.upper, prev)
        return np.clip(prev + v * cfg.dt, lo, hi)  # [D]

    def _emit(self, command: np.ndarray, clamped: Optional[np.ndarray], status: SafetyStatus,
              reasons) -> SafetyResult:
        velocity = (command - self._prev) / self.config.dt  # [D]
        self._prev_vel = velocity
        self._prev = command
        self._last_target = clamped
        self._window.push(command)
        return SafetyResult(command.copy(), status, tuple(reasons), velocity.copy())

    def _hold(self, status: SafetyStatus, why: str) -> SafetyResult:
        """A braking stop at the last command (module docstring); nothing before the first
        command."""
        if self._prev is None:
            return SafetyResult(None, status, (why, "no command yet"))
        a, dt = self.config.max_acceleration, self.config.dt
        speed = np.maximum(np.abs(self._prev_vel) - a * dt, 0.0)  # [D]
        command = self._advance(np.sign(self._prev_vel) * speed)
        self._ramping = False
        return self._emit(command, None, status, (why,))

    # ------------------------------------------------------------------ diagnostics
    def stats(self) -> Dict[str, object]:
        """Counts per `SafetyStatus`, invalid measured positions, tracking state, pause state."""
        with self._lock:
            return {"status": dict(self._counts), "invalid_measured": self._invalid_measured,
                    "paused": self._paused, "started": self._prev is not None,
                    "tracking_fault": self._tracking_fault, "tracking_faults": self._tracking_faults,
                    "tracking_error_max": float(self._tracking_error.max()) if self._prev is not None else 0.0}
