"""Value types of the chunk scheduler: its validated configuration, the outcome of a merge,
the RTC inpainting target, and the RTC guidance weights (see `chunk_scheduler` for the model)."""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Optional

import numpy as np

from ..core.rtc_weights import rtc_prefix_weights_np

BLENDING_MODES = ("none", "ensemble", "rtc")


@dataclass(frozen=True)
class SchedulerConfig:
    """Scheduler parameters, validated.

    Args:
        blending: ``none`` | ``ensemble`` | ``rtc`` (see module docstring).
        action_horizon: T_a, executable rows per chunk (≥ 1; capped at the chunk's T_p).
        ensemble_decay: ACT's k in ``w_i = exp(−k·i)`` (finite; ``i = 0`` oldest).
        interpolate: when the executor runs faster than the chunk's ``dt``, move linearly
            from the held row towards the next row of the same segment (first-order hold)
            instead of holding it (zero-order hold). Rows are still hit exactly at their
            due times; only executable rows are commanded at their due times, and the last
            one moves towards the chunk's next (predicted) row, so that a chunk taking over
            at the end of the executable rows continues the motion instead of following a
            stop (that row is also what the next chunk's RTC prefix is pinned to).
        refill_fraction: also ask for a new chunk when fewer than this fraction of T_a
            rows remain (lerobot uses 0.5–0.7); 0 = only the latency rule.
    """

    blending: str = "none"
    action_horizon: int = 8
    ensemble_decay: float = 0.01
    refill_fraction: float = 0.0
    interpolate: bool = False

    def __post_init__(self) -> None:
        if self.blending not in BLENDING_MODES:
            raise ValueError(f"SchedulerConfig.blending must be one of {BLENDING_MODES}, got {self.blending!r}")
        if (isinstance(self.action_horizon, bool) or not isinstance(self.action_horizon, (int, np.integer))
                or self.action_horizon < 1):
            raise ValueError(f"SchedulerConfig.action_horizon must be an int >= 1, got {self.action_horizon!r}")
        if not isinstance(self.ensemble_decay, (int, float)) or not math.isfinite(self.ensemble_decay):
            raise ValueError(f"SchedulerConfig.ensemble_decay must be a finite number, got {self.ensemble_decay!r}")
        if (not isinstance(self.refill_fraction, (int, float)) or not math.isfinite(self.refill_fraction)
                or not 0.0 <= self.refill_fraction <= 1.0):
            raise ValueError(f"SchedulerConfig.refill_fraction must be in [0, 1], got {self.refill_fraction!r}")
        if not isinstance(self.interpolate, bool):
            raise ValueError(f"SchedulerConfig.interpolate must be a bool, got {self.interpolate!r}")


@dataclass(frozen=True)
class MergeResult:
    """Outcome of `ChunkScheduler.merge`.

    ``reason``: ``merged`` | ``nonfinite`` | ``dim_mismatch`` | ``outdated`` | ``late``.
    ``switch_time``: due time of the first row the new chunk contributes (None if rejected).
    ``first_row``: index of that row; ``dropped_rows``: executable rows already due.
    """

    accepted: bool
    reason: str
    switch_time: Optional[float] = None
    first_row: int = 0
    dropped_rows: int = 0


@dataclass(frozen=True)
class RtcPrefix:
    """Inpainting target for the next chunk (Black et al. 2025).

    ``actions``: ``[n, D]`` plan values at ``start_time + i·dt`` for the ``n`` instants the
    plan has predicted (``n ≥ frozen_steps`` unless the plan ends sooner).
    ``weights``: ``[T_p]`` 1 on the first ``frozen_steps`` rows, soft decay over the
    remaining overlap ``[frozen_steps, n)``, 0 from ``n`` on.
    """

    actions: np.ndarray
    weights: np.ndarray
    frozen_steps: int
    start_time: float
    dt: float


def rtc_soft_weights(horizon: int, frozen: int, overlap: int) -> np.ndarray:
    """RTC guidance weights ``[horizon]`` (Black et al. 2025, soft masking, in our indices):
    1 on the first ``frozen`` rows, the paper's exponential decay up to ``overlap``, 0 after.
    One formula for the whole project, in NumPy (:mod:`genpolicy_ros.core.rtc_weights`): this
    runs in the real-time process, which must never import torch (importing it lazily from the
    tick stalled the command loop for seconds at the first RTC request).
    """
    if horizon < 0 or not 0 <= frozen <= overlap <= horizon:
        raise ValueError(f"need 0 <= frozen ({frozen}) <= overlap ({overlap}) <= horizon ({horizon})")
    if horizon == 0:
        return np.zeros(0, dtype=np.float64)
    return rtc_prefix_weights_np(int(horizon), int(frozen), int(overlap - frozen))  # [T_p]
