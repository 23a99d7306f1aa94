"""The safety filter's configuration, statuses and result type (runtime/safety_filter.py has
the filter and its contract)."""
from __future__ import annotations

import enum
import math
from dataclasses import dataclass
from typing import Optional, Tuple, Union

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
    HOLD_TRACKING = "hold_tracking"  # measured position disagrees with the commanded path
    HOLD_NO_MEASURED = "hold_no_measured"  # nothing commanded yet and no confirmed measured position

    @property
    def is_hold(self) -> bool:
        return self.value.startswith("hold_")


@dataclass(frozen=True)
class SafetyResult:
    """``command``: ``[D]`` float64 (None when nothing may be commanded); ``reasons``: details;
    ``velocity``: ``[D]`` (command − previous command) / dt (zeros for the first command)."""

    command: Optional[np.ndarray]
    status: SafetyStatus
    reasons: Tuple[str, ...] = ()
    velocity: Optional[np.ndarray] = None


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


def _positive_number(name: str, value, integer: bool = False) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value <= 0:
        raise ValueError(f"SafetyConfig.{name} must be finite and > 0, got {value!r}")
    if integer and int(value) != value:
        raise ValueError(f"SafetyConfig.{name} must be an integer, got {value!r}")


@dataclass(frozen=True, eq=False)
class SafetyConfig:
    """Joint limits and motion limits; per-joint fields accept a scalar or ``[D]``.

    Args:
        lower, upper: ``[D]`` joint limits (rad or m), ``lower < upper``.
        position_margin: targets are clamped to ``[lower+margin, upper−margin]`` (≥ 0).
        max_velocity: per-joint speed limit (> 0), units/s.
        max_acceleration: per-joint acceleration limit (> 0), units/s².
        max_jump: a first action farther than this from the last command (or the anchor)
            is reported as ``RAMPING`` until reached (≥ 0; the motion is limited either way).
        dt: seconds between `SafetyFilter.filter` calls (the executor period, > 0).
        max_tracking_error: per-joint distance between the measured position and the
            commands of the last ``tracking_window_s`` above which the filter holds (> 0).
        tracking_window_s: how far back commanded positions count as "where the robot may
            be" (covers the controller's tracking lag and the joint-state latency, > 0).
        confirm_samples: consecutive consistent measured positions that confirm the first
            anchor or end a tracking hold (≥ 1).
    """

    lower: ArrayLike
    upper: ArrayLike
    max_velocity: ArrayLike
    max_acceleration: ArrayLike
    dt: float
    position_margin: ArrayLike = 0.0
    max_jump: ArrayLike = 0.05
    max_tracking_error: ArrayLike = 0.3
    tracking_window_s: float = 0.5
    confirm_samples: int = 3

    def __post_init__(self) -> None:
        lower = np.atleast_1d(np.asarray(self.lower, dtype=np.float64)).copy()
        if lower.ndim != 1 or lower.size < 1:
            raise ValueError(f"SafetyConfig.lower must be a 1-D array of joint limits, got shape {lower.shape}")
        dim = lower.size
        lower = _per_joint("lower", lower, dim, positive=False)
        upper = _per_joint("upper", self.upper, dim, positive=False)
        if not (lower < upper).all():
            raise ValueError(f"SafetyConfig needs lower < upper for every joint, got {lower.tolist()} / "
                             f"{upper.tolist()}")
        margin = _per_joint("position_margin", self.position_margin, dim, positive=True, allow_zero=True)
        if not (lower + margin <= upper - margin).all():
            raise ValueError("SafetyConfig.position_margin leaves an empty range: need lower+margin <= upper-margin")
        _positive_number("dt", self.dt)
        _positive_number("tracking_window_s", self.tracking_window_s)
        _positive_number("confirm_samples", self.confirm_samples, integer=True)
        object.__setattr__(self, "lower", lower)
        object.__setattr__(self, "upper", upper)
        object.__setattr__(self, "position_margin", margin)
        object.__setattr__(self, "max_velocity", _per_joint("max_velocity", self.max_velocity, dim, positive=True))
        object.__setattr__(self, "max_acceleration",
                           _per_joint("max_acceleration", self.max_acceleration, dim, positive=True))
        object.__setattr__(self, "max_jump", _per_joint("max_jump", self.max_jump, dim, positive=True,
                                                        allow_zero=True))
        object.__setattr__(self, "max_tracking_error",
                           _per_joint("max_tracking_error", self.max_tracking_error, dim, positive=True))
        object.__setattr__(self, "dt", float(self.dt))
        object.__setattr__(self, "tracking_window_s", float(self.tracking_window_s))
        object.__setattr__(self, "confirm_samples", int(self.confirm_samples))

    @property
    def dim(self) -> int:
        return int(self.lower.shape[0])

    @property
    def safe_lower(self) -> np.ndarray:
        return self.lower + self.position_margin

    @property
    def safe_upper(self) -> np.ndarray:
        return self.upper - self.position_margin

    @property
    def window_ticks(self) -> int:
        return max(1, int(math.ceil(self.tracking_window_s / self.dt - 1e-9)))
