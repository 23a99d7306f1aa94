"""`ChunkScheduler`: turns asynchronously arriving action chunks into one executable plan.

Model
-----
The plan is a piecewise-constant function of time built from *segments*, one per merged
chunk. A segment keeps its chunk's own grid (row i due at ``t0 + i·dt``, docs/internals.md)
and governs the plan from its ``valid_from`` instant until the next segment takes over.
Execution of a chunk is capped at its first ``T_a = action_horizon`` rows (the
receding-horizon execution length of Diffusion Policy, Chi et al. 2023); rows beyond it are
kept as *predictions* (used for ensembling and for the RTC soft-guidance region) but never
executed::

    chunk A (t0=a)  |A0 |A1 |A2 |A3 |A4 |A5 |A6 |A7 |A8 ...      T_a = 6: A0..A5 executable
    chunk B (t0=b)            |B0 |B1 |B2 |B3 |B4 |B5 |B6 ...
                                    ^ now: B arrives (latency = now − b)
                                        ^ switch: B's first row due strictly after now
    executed:       |A0 |A1 |A2 |A3 |A4 |B3 |B4 |B5 ...  (B0..B2 dropped: already due)

Latency compensation (diffusion_policy real-robot loop): when a chunk is merged at ``now``,
its rows due at or before ``now`` are dropped (counted in ``rows_dropped``); the new chunk
takes over at its first not-yet-due row. A chunk with no executable row left is rejected
as ``late``. Nothing is ever replayed: `pop` evaluates the plan at the current instant.

Blending modes (``SchedulerConfig.blending``)
-----------------------------------------------
* ``none``: switch to the new chunk's remaining rows (a jump at the seam is possible).
* ``ensemble``: temporal ensembling (ACT, Zhao et al. 2023, arXiv 2304.13705): every
  not-yet-due row ``k`` of the new chunk, due at ``τ``, becomes the weighted average of all
  chunks that predicted ``τ``::

      a(τ) = Σ_i w_i · a_i(τ) / Σ_i w_i,   w_i = exp(−k · i)

  where ``i = 0`` is the *oldest* chunk that predicted ``τ`` (i counts arrival order), so
  ``k > 0`` favours older predictions (smooth), ``k < 0`` newer ones (reactive), ``k = 0``
  is a plain mean. Older chunks are sampled on the new chunk's grid (zero-order hold), so
  chunks with different time phases blend correctly. The average is kept incrementally
  (value + count per row), which is exact for the formula above.
  Refill policy for ACT-style use: ``refill_fraction = 1`` asks for a chunk every tick.
* ``rtc``: Real-Time Chunking (Black et al. 2025, arXiv 2506.07339). The generator
  inpaints the new chunk's first ``d`` rows with `frozen_prefix` (the actions the robot
  executes while the chunk is being generated) and softly guides the next rows with
  `rtc_prefix` weights; the scheduler then switches exactly as in ``none`` — the new
  chunk already agrees with what was executed, so the seam is continuous.

Configuration changes (`request_config`) take effect atomically at the next accepted
merge (a chunk boundary) or `reset`; the executing segments keep the horizon they were
merged with. All public methods are thread-safe (one re-entrant lock).
"""
from __future__ import annotations

import itertools
import math
import threading
from dataclasses import dataclass, field
from typing import Dict, List, Optional, Tuple

import numpy as np

from ..core.rtc_weights import rtc_prefix_weights_np
from .chunk import TIME_EPS, ActionChunk

BLENDING_MODES = ("none", "ensemble", "rtc")
_SEGMENT_IDS = itertools.count()


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


def _check_time(now: float) -> float:
    if isinstance(now, bool) or not isinstance(now, (int, float, np.floating, np.integer)) or not math.isfinite(now):
        raise ValueError(f"now must be a finite time in seconds, got {now!r}")
    return float(now)


@dataclass
class _Segment:
    """One merged chunk: its grid, (blended) values and the instant it takes over."""

    seq: int
    t0: float
    dt: float
    values: np.ndarray  # [T_p, D] executed values (blended in ensemble mode)
    counts: np.ndarray  # [T_p] number of chunks averaged into each row
    valid_from: float  # the plan follows this segment from here on
    exec_rows: int  # rows [0, exec_rows) are executable: min(T_a, T_p)
    uid: int = field(default_factory=lambda: next(_SEGMENT_IDS))

    @property
    def horizon(self) -> int:
        return int(self.values.shape[0])

    @property
    def exec_until(self) -> float:
        return self.t0 + self.exec_rows * self.dt

    def row_at(self, t: float) -> int:
        return int(math.floor((t - self.t0 + TIME_EPS) / self.dt))

    def due_time(self, row: int) -> float:
        return self.t0 + row * self.dt


@dataclass
class _Counters:
    merged: int = 0
    rejected: Dict[str, int] = field(default_factory=lambda: {"nonfinite": 0, "dim_mismatch": 0,
                                                               "outdated": 0, "late": 0})
    rows_dropped: int = 0
    pops: int = 0
    starved: int = 0
    rows_skipped: int = 0
    config_changes: int = 0


class ChunkScheduler:
    """Merges chunks (`merge`), serves the action due now (`pop`), says when to ask for more."""

    def __init__(self, config: Optional[SchedulerConfig] = None) -> None:
        self._lock = threading.RLock()
        self._config = config if config is not None else SchedulerConfig()
        if not isinstance(self._config, SchedulerConfig):
            raise TypeError(f"config must be a SchedulerConfig, got {type(config).__name__}")
        self._pending: Optional[SchedulerConfig] = None
        self._segments: List[_Segment] = []
        self._action_dim: Optional[int] = None
        self._newest_t0 = -math.inf
        self._last_pop: Optional[Tuple[int, int]] = None  # (segment uid, row)
        self._last_pop_time: Optional[float] = None
        self._pop_period: Optional[float] = None  # executor period, seen between pops
        self._c = _Counters()

    # ------------------------------------------------------------- configuration
    @property
    def config(self) -> SchedulerConfig:
        """The configuration in effect now."""
        with self._lock:
            return self._config

    def request_config(self, config: SchedulerConfig) -> None:
        """Queue ``config``; it takes effect at the next accepted merge (or `reset`)."""
        if not isinstance(config, SchedulerConfig):
            raise TypeError(f"config must be a SchedulerConfig, got {type(config).__name__}")
        with self._lock:
            self._pending = config

    def _apply_pending(self) -> None:
        if self._pending is not None:
            if self._pending != self._config:
                self._c.config_changes += 1
            self._config, self._pending = self._pending, None

    def reset(self) -> None:
        """Forget the plan (observation timeline reset, pause, deactivate); counters stay."""
        with self._lock:
            self._segments.clear()
            self._action_dim = None
            self._newest_t0 = -math.inf
            self._last_pop = None
            self._last_pop_time = None  # time may have gone backwards; the period stays
            self._apply_pending()

    # ------------------------------------------------------------- plan lookup
    def _locate(self, t: float, executable: bool) -> Optional[Tuple[_Segment, int]]:
        """Segment and row that the plan holds at instant ``t`` (zero-order hold)."""
        for seg in reversed(self._segments):
            if seg.valid_from <= t + TIME_EPS:
                row = seg.row_at(t)
                limit = seg.exec_rows if executable else seg.horizon
                return (seg, row) if 0 <= row < limit else None
        return None

    # ------------------------------------------------------------- merging
    def merge(self, chunk: ActionChunk, now: float) -> MergeResult:
        """Merge ``chunk`` into the plan at instant ``now``; see the module docstring."""
        if not isinstance(chunk, ActionChunk):
            raise TypeError(f"chunk must be an ActionChunk, got {type(chunk).__name__}")
        now = _check_time(now)
        with self._lock:
            cfg = self._pending if self._pending is not None else self._config
            if not chunk.is_finite:
                return self._reject("nonfinite")
            if self._action_dim is not None and chunk.action_dim != self._action_dim:
                return self._reject("dim_mismatch")
            if chunk.t0 < self._newest_t0 - TIME_EPS:
                return self._reject("outdated")
            exec_rows = min(cfg.action_horizon, chunk.horizon)
            first = chunk.first_row_after(now)  # first row due strictly after now
            if first >= exec_rows:
                self._c.rows_dropped += exec_rows
                return self._reject("late", dropped=exec_rows)
            self._apply_pending()
            values = chunk.actions.copy()  # [T_p, D]
            counts = np.ones(chunk.horizon, dtype=np.int64)  # [T_p]
            if cfg.blending == "ensemble":
                self._ensemble_into(values, counts, chunk, first, cfg.ensemble_decay)
            switch_time = chunk.due_time(first)
            # The new segment supersedes every segment that would only start after it.
            self._segments = [s for s in self._segments if s.valid_from < switch_time - TIME_EPS]
            self._segments.append(_Segment(seq=chunk.seq, t0=chunk.t0, dt=chunk.dt, values=values,
                                           counts=counts, valid_from=switch_time, exec_rows=exec_rows))
            self._drop_finished(now)
            self._action_dim = chunk.action_dim
            self._newest_t0 = chunk.t0
            self._c.merged += 1
            self._c.rows_dropped += first
            return MergeResult(True, "merged", switch_time=switch_time, first_row=first, dropped_rows=first)

    def _reject(self, reason: str, dropped: int = 0) -> MergeResult:
        self._c.rejected[reason] += 1
        return MergeResult(False, reason, dropped_rows=dropped)

    def _ensemble_into(self, values: np.ndarray, counts: np.ndarray, chunk: ActionChunk,
                       first: int, decay: float) -> None:
        """Incremental ACT average: with n chunks already averaged into a row, the new one
        enters with share ``α = w_n / Σ_{i≤n} w_i``: ``new = old + α·(a − old)``.

        α is evaluated in the form whose exponentials cannot overflow for either sign of k:
        ``e^{−kn} / Σ_{i≤n} e^{−ki}`` for k ≥ 0, ``1 / Σ_{j≤n} e^{kj}`` for k < 0.
        """
        for k in range(first, chunk.horizon):
            hit = self._locate(chunk.due_time(k), executable=False)
            if hit is None:
                continue
            seg, row = hit
            n = int(seg.counts[row])
            steps = np.arange(n + 1, dtype=np.float64)  # [n+1]
            if decay >= 0:
                share = math.exp(-decay * n) / float(np.exp(-decay * steps).sum())
            else:
                share = 1.0 / float(np.exp(decay * steps).sum())
            values[k] = seg.values[row] + share * (values[k] - seg.values[row])
            counts[k] = n + 1

    def _drop_finished(self, now: float) -> None:
        """Keep the segment governing ``now`` and every later one."""
        keep_from = 0
        for i, seg in enumerate(self._segments):
            if seg.valid_from <= now + TIME_EPS:
                keep_from = i
        del self._segments[:keep_from]

    # ------------------------------------------------------------- execution
    def pop(self, now: float) -> Optional[np.ndarray]:
        """The action to command at ``now``: ``[D]`` copy, or None when starved.

        Precisely: the plan's row with the latest due time ``≤ now`` (zero-order hold
        between rows; with ``interpolate`` the value moves linearly towards the next
        row of the same segment), provided that row is executable (row < T_a of its chunk)::

            rows due:    r3        r4        r5        r6
            time:   -----+---------+---------+---------+----->
            pop at:         ^ → r3     ^ → r4   ^ → r4 (held)

            after a stall:  r3 popped ... (no pops) ...   ^ now → r6
                            r4, r5 are skipped (counted), never replayed.

        Returns None (the caller holds) before the first chunk, after the last executable
        row of the plan has run out, or while the next chunk's switch row is not yet due
        and nothing else covers ``now``.
        """
        now = _check_time(now)
        with self._lock:
            if self._last_pop_time is not None and now > self._last_pop_time + TIME_EPS:
                self._pop_period = now - self._last_pop_time
            self._last_pop_time = now
            hit = self._locate(now, executable=True)
            if hit is None:
                self._c.starved += 1
                self._last_pop = None
                return None
            seg, row = hit
            if self._last_pop is not None and self._last_pop[0] == seg.uid and row > self._last_pop[1] + 1:
                self._c.rows_skipped += row - self._last_pop[1] - 1
            self._last_pop = (seg.uid, row)
            self._c.pops += 1
            return self._value(seg, row, now)

    def _value(self, seg: _Segment, row: int, t: float) -> np.ndarray:
        """The plan's value ``[D]`` (a copy) at instant ``t`` inside ``seg``'s row ``row``:
        the row itself (zero-order hold) or, with ``interpolate``, the point on the line
        towards the segment's next row (for the last executable row: the chunk's next,
        predicted row)."""
        value = seg.values[row].copy()  # [D]
        if self._config.interpolate and row + 1 < seg.horizon:
            frac = (t - seg.due_time(row)) / seg.dt  # in [0, 1)
            if frac > TIME_EPS:
                value += frac * (seg.values[row + 1] - seg.values[row])
        return value

    def remaining_rows(self, now: float) -> int:
        """Executable rows of the newest chunk due strictly after ``now``."""
        with self._lock:
            if not self._segments:
                return 0
            seg = self._segments[-1]
            return max(0, seg.exec_rows - max(0, seg.row_at(now) + 1))

    def needs_refill(self, now: float, latency_estimate: float) -> bool:
        """True when a new chunk should be requested now.

        Rule: ``remaining ≤ ceil(latency_estimate / dt)`` (a chunk requested now arrives
        before the plan runs dry) or ``remaining < refill_fraction · T_a``; always True
        without a plan. ``remaining`` = `remaining_rows` (capped at T_a from the chunk start).
        The caller keeps at most one request in flight (this does not know about requests).
        """
        if not math.isfinite(latency_estimate) or latency_estimate < 0:
            raise ValueError(f"latency_estimate must be finite and >= 0, got {latency_estimate!r}")
        now = _check_time(now)
        with self._lock:
            if not self._segments:
                return True
            seg = self._segments[-1]
            remaining = self.remaining_rows(now)
            need = int(math.ceil(latency_estimate / seg.dt - TIME_EPS / seg.dt))
            return remaining <= need or remaining < self._config.refill_fraction * seg.exec_rows

    def upcoming(self, now: float, max_rows: int) -> Tuple[np.ndarray, np.ndarray]:
        """Executable plan rows due strictly after ``now``: (times ``[n]``, actions ``[n, D]``).

        For trajectory outputs (JointTrajectory points). ``n ≤ max_rows``.
        """
        with self._lock:
            times: List[float] = []
            rows: List[np.ndarray] = []
            for i, seg in enumerate(self._segments):
                end = self._segments[i + 1].valid_from if i + 1 < len(self._segments) else math.inf
                for r in range(max(0, seg.row_at(now) + 1), seg.exec_rows):
                    t = seg.t0 + r * seg.dt
                    if t < seg.valid_from - TIME_EPS:
                        continue
                    if t >= end - TIME_EPS or len(times) >= max_rows:
                        break
                    times.append(t)
                    rows.append(seg.values[r])
            d = self._action_dim or 0
            actions = np.array(rows, dtype=np.float64).reshape(len(rows), d)  # [n, D]
            return np.asarray(times, dtype=np.float64), actions  # [n], [n, D]

    # ------------------------------------------------------------- RTC support
    def rtc_prefix(self, now: float, delay_steps: int, T_p: int) -> Optional[RtcPrefix]:
        """Inpainting target for a chunk generated from an observation stamped ``now``.

        Row ``i`` of the result is the plan's value at ``now + i·dt`` (dt of the newest
        chunk) as `pop` will command it (interpolated with ``interpolate``) — what the
        robot does at the new chunk's row-``i`` instant. When ``now`` lies on the
        executing chunk's grid these are exactly its rows due in ``[now, now + d·dt)``.
        Rows before the plan starts (a request right after the first merge) come from the
        first chunk itself. Frozen (weight 1): the first ``d = delay_steps`` rows, which
        execute from the current plan while the new chunk is generated, and with
        ``interpolate`` row ``d`` too: the last row before the switch moves towards it,
        so the new chunk must start there for the position to be continuous. Frozen rows
        past the plan's executable end (a latency longer than the rows left) are the
        command the robot holds there, not the chunk's predictions. The rest of the
        overlap gets the RTC soft decay. None without a plan.
        """
        if isinstance(delay_steps, bool) or not isinstance(delay_steps, (int, np.integer)) or delay_steps < 0:
            raise ValueError(f"delay_steps must be an int >= 0, got {delay_steps!r}")
        if isinstance(T_p, bool) or not isinstance(T_p, (int, np.integer)) or T_p < 1:
            raise ValueError(f"T_p must be an int >= 1, got {T_p!r}")
        now = _check_time(now)
        with self._lock:
            if not self._segments:
                return None
            dt = self._segments[-1].dt
            # With first-order hold the last row before the switch moves towards the plan's
            # value at the switch instant (row d): that row is fixed by what executes too.
            executed = int(delay_steps) + (1 if self._config.interpolate and delay_steps > 0 else 0)
            rows: List[np.ndarray] = []
            first = self._segments[0]
            for i in range(T_p):
                t = now + i * dt
                hit = self._locate(t, executable=False)
                if hit is None and t < first.valid_from - TIME_EPS and 0 <= first.row_at(t) < first.horizon:
                    # Before the plan starts (the first chunk was just merged): its own
                    # rows, so that the prefix leads into what will execute.
                    hit = (first, first.row_at(t))
                if hit is None:
                    break
                seg, row = hit
                if i < executed and row >= seg.exec_rows:
                    # The plan runs out before the new chunk can take over: the robot holds
                    # its last command there, so that is what the new chunk starts from.
                    rows.append(self._value(seg, seg.exec_rows - 1, seg.exec_until - self._hold_lead(seg)))
                else:
                    rows.append(self._value(seg, row, t))  # as `pop` will execute it
            n = len(rows)
            frozen = min(executed, n)
            actions = np.array(rows, dtype=np.float64).reshape(n, self._action_dim)  # [n, D]
            return RtcPrefix(actions=actions, weights=rtc_soft_weights(int(T_p), frozen, n),
                             frozen_steps=frozen, start_time=float(now), dt=dt)

    def _hold_lead(self, seg: _Segment) -> float:
        """How long before ``seg``'s executable end its last command is popped: one
        executor period (seen between consecutive `pop` calls), else a whole row."""
        period = self._pop_period
        return period if period is not None and 0 < period < seg.dt else seg.dt

    def frozen_prefix(self, now: float, delay_steps: int, T_p: int) -> Optional[Tuple[np.ndarray, float]]:
        """``(prefix_actions [d, D], start_time)``: the first `rtc_prefix` rows only."""
        p = self.rtc_prefix(now, delay_steps, T_p)
        if p is None:
            return None
        return p.actions[: p.frozen_steps].copy(), p.start_time

    def prefix_weights(self, now: float, delay_steps: int, T_p: int) -> Optional[np.ndarray]:
        """``[T_p]`` RTC weights matching `rtc_prefix` (1 frozen, soft decay, then 0)."""
        p = self.rtc_prefix(now, delay_steps, T_p)
        return None if p is None else p.weights

    # ------------------------------------------------------------- diagnostics
    def stats(self) -> Dict[str, object]:
        """Counters: merged, rejected per reason, rows_dropped/skipped, pops, starved."""
        with self._lock:
            c = self._c
            return {"merged": c.merged, "rejected": dict(c.rejected), "rows_dropped": c.rows_dropped,
                    "pops": c.pops, "starved": c.starved, "rows_skipped": c.rows_skipped,
                    "config_changes": c.config_changes, "segments": len(self._segments),
                    "blending": self._config.blending, "action_horizon": self._config.action_horizon}
