r"""`ActionChunk`: a block of future actions with the times at which they are due.

Timing convention (docs/internals.md, "Wall time"): ``t0`` is the stamp of the newest
observation the chunk was generated from and ``dt`` is 1 / control rate of the training
data, so **row i is due at ``t0 + i·dt``** — row 0 is the action for the observation
instant itself, which by the time the chunk exists already lies in the past by the
generation latency (the scheduler drops such rows)::

    obs stamp = t0          generated_at = t0 + latency_s
        |                        |
        v                        v
    ----+----+----+----+----+----+----+----+----+---->  time
       row0 row1 row2 row3 row4 row5 row6 ...          (row i due at t0 + i·dt)
       \_______ already due when the ______/
                chunk arrives (dropped)

Non-finite values are allowed in ``actions`` on purpose: a chunk is a faithful record of
what the model produced; the scheduler refuses to execute a non-finite chunk and the
safety filter refuses non-finite targets (reliability.md row 1).
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Dict

import numpy as np

# Two instants closer than this are the same instant (guards floor() against float noise
# such as 0.1 + 2·0.05 != 0.2).
TIME_EPS = 1e-9


@dataclass(frozen=True, eq=False)
class ActionChunk:
    """Immutable action chunk; ``actions`` is a read-only float64 array ``[T_p, D]``.

    Args:
        t0: stamp (seconds) of the newest observation used; row 0 is due at ``t0``.
        dt: seconds between rows (> 0).
        actions: ``[T_p, D]`` absolute joint targets in the model's joint order.
        generated_at: time the chunk became available, same clock as ``t0``.
        latency_s: observation stamp → chunk available, seconds (≥ 0).
        seq: request sequence number (≥ 0) for tracing.
        meta: free-form annotations (sampler, steps, backend…), shallow-copied.
    """

    t0: float
    dt: float
    actions: np.ndarray
    generated_at: float = float("nan")
    latency_s: float = 0.0
    seq: int = 0
    meta: Dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not isinstance(self.t0, (int, float, np.floating, np.integer)) or not math.isfinite(self.t0):
            raise ValueError(f"ActionChunk.t0 must be a finite number of seconds, got {self.t0!r}")
        if (not isinstance(self.dt, (int, float, np.floating, np.integer))
                or not math.isfinite(self.dt) or self.dt <= 0):
            raise ValueError(f"ActionChunk.dt must be finite and > 0, got {self.dt!r}")
        try:
            actions = np.array(self.actions, dtype=np.float64, copy=True)  # [T_p, D] owned copy
        except (TypeError, ValueError) as exc:
            raise ValueError(f"ActionChunk.actions must be numeric, got {type(self.actions).__name__}") from exc
        if actions.ndim != 2 or actions.shape[0] < 1 or actions.shape[1] < 1:
            raise ValueError(f"ActionChunk.actions must be 2-D [T_p>=1, D>=1], got shape {actions.shape}")
        actions.setflags(write=False)
        if not math.isfinite(float(self.latency_s)) or self.latency_s < 0:
            raise ValueError(f"ActionChunk.latency_s must be finite and >= 0, got {self.latency_s!r}")
        if isinstance(self.seq, bool) or not isinstance(self.seq, (int, np.integer)) or self.seq < 0:
            raise ValueError(f"ActionChunk.seq must be an int >= 0, got {self.seq!r}")
        if not isinstance(self.meta, dict):
            raise ValueError(f"ActionChunk.meta must be a dict, got {type(self.meta).__name__}")
        object.__setattr__(self, "t0", float(self.t0))
        object.__setattr__(self, "dt", float(self.dt))
        object.__setattr__(self, "actions", actions)
        object.__setattr__(self, "generated_at", float(self.generated_at))
        object.__setattr__(self, "latency_s", float(self.latency_s))
        object.__setattr__(self, "seq", int(self.seq))
        object.__setattr__(self, "meta", dict(self.meta))

    @property
    def horizon(self) -> int:
        """T_p, the number of rows."""
        return int(self.actions.shape[0])

    @property
    def action_dim(self) -> int:
        """D, the number of joints."""
        return int(self.actions.shape[1])

    @property
    def is_finite(self) -> bool:
        """True when every action value is finite."""
        return bool(np.isfinite(self.actions).all())

    def due_time(self, row: int) -> float:
        """Due time of ``row``: ``t0 + row·dt``."""
        return self.t0 + row * self.dt

    def due_times(self) -> np.ndarray:
        """Due time of every row, ``[T_p]`` float64: ``t0 + i·dt``."""
        return self.t0 + np.arange(self.horizon, dtype=np.float64) * self.dt  # [T_p]

    def row_at(self, time: float) -> int:
        """Index of the latest row due at or before ``time`` (may be < 0 or ≥ T_p)."""
        return int(math.floor((time - self.t0 + TIME_EPS) / self.dt))

    def first_row_after(self, time: float) -> int:
        """Index of the first row due strictly after ``time`` (may be ≥ T_p)."""
        return max(0, self.row_at(time) + 1)
