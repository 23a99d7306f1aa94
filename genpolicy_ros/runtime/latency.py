"""`LatencyTracker`: recent generation latencies → percentiles → inference delay in steps.

The delay in control steps the generator must plan for is ``d = ceil(estimate / dt)``
(lerobot's async inference uses the same rule with p95 or max; Real-Time Chunking,
Black et al. 2025 arXiv 2506.07339, calls it the inference delay d). The estimate is the
window's p95, or the newest sample when that is larger: a latency that grows (a heavier
sampler set at run time) is planned for from the next request on, not only once 5 % of the
window is slow — with a full window of fast chunks that took six late chunks, each a seam
jump and a plan that ran dry (test/runtime/test_engine_latency_change.py). A latency that
falls is followed as the window turns over (conservative: more rows frozen, earlier
requests, never a late chunk). The first ``warmup`` samples are excluded: first calls pay
for allocation, JIT and cache misses and would inflate the estimate for the whole window.

``inference_delay_steps`` (node parameter): ``-1`` = measured (the rule above), ``>= 0``
= fixed override.

Thread-safe: the generation side records, the executor side reads.
"""
from __future__ import annotations

import math
import threading
from collections import deque
from typing import Dict, Optional

import numpy as np

from .chunk import TIME_EPS


class LatencyTracker:
    """Rolling window of generation latencies (seconds).

    Args:
        window: number of recent (post-warm-up) samples kept (≥ 1).
        warmup: number of first samples ignored (≥ 0).
        initial_estimate_s: latency assumed before any sample is kept (≥ 0).
    """

    def __init__(self, window: int = 100, warmup: int = 2, initial_estimate_s: float = 0.0) -> None:
        if isinstance(window, bool) or not isinstance(window, int) or window < 1:
            raise ValueError(f"LatencyTracker.window must be an int >= 1, got {window!r}")
        if isinstance(warmup, bool) or not isinstance(warmup, int) or warmup < 0:
            raise ValueError(f"LatencyTracker.warmup must be an int >= 0, got {warmup!r}")
        if not math.isfinite(initial_estimate_s) or initial_estimate_s < 0:
            raise ValueError(f"LatencyTracker.initial_estimate_s must be finite and >= 0, got {initial_estimate_s!r}")
        self._lock = threading.Lock()
        self._samples: deque = deque(maxlen=window)
        self._newest: Optional[float] = None  # the last kept sample
        self._warmup_left = warmup
        self._initial = float(initial_estimate_s)
        self._rejected = 0
        self._recorded = 0

    def record(self, latency_s: float) -> bool:
        """Add one sample; returns False (and counts it) when it is not finite or < 0."""
        try:
            value = float(latency_s)
        except (TypeError, ValueError):
            value = float("nan")
        with self._lock:
            if not math.isfinite(value) or value < 0:
                self._rejected += 1
                return False
            self._recorded += 1
            if self._warmup_left > 0:
                self._warmup_left -= 1
                return True
            self._samples.append(value)
            self._newest = value
            return True

    def _percentile(self, q: float) -> Optional[float]:
        with self._lock:
            if not self._samples:
                return None
            data = np.fromiter(self._samples, dtype=np.float64)  # [n]
        return float(np.percentile(data, q))

    @property
    def count(self) -> int:
        """Number of samples in the window (warm-up excluded)."""
        with self._lock:
            return len(self._samples)

    @property
    def p50(self) -> Optional[float]:
        return self._percentile(50.0)

    @property
    def p95(self) -> Optional[float]:
        return self._percentile(95.0)

    @property
    def max(self) -> Optional[float]:
        return self._percentile(100.0)

    def estimate_s(self) -> float:
        """p95 of the window or the newest sample, whichever is larger (see the module
        docstring); ``initial_estimate_s`` before any kept sample."""
        p95 = self.p95
        with self._lock:
            newest = self._newest
        return self._initial if p95 is None else max(p95, newest)

    def delay_steps(self, dt: float, override: int = -1) -> int:
        """Inference delay in control steps: ``override`` when ≥ 0, else ``ceil(estimate_s() / dt)``."""
        if isinstance(override, bool) or not isinstance(override, (int, np.integer)) or override < -1:
            raise ValueError(f"inference_delay_steps must be an int >= -1, got {override!r}")
        if override >= 0:
            return int(override)
        if not math.isfinite(dt) or dt <= 0:
            raise ValueError(f"dt must be finite and > 0, got {dt!r}")
        # Subtract a nanosecond so that p95 == 2·dt (up to float noise) gives 2, not 3.
        return max(0, int(math.ceil(self.estimate_s() / dt - TIME_EPS / dt)))

    def stats(self) -> Dict[str, Optional[float]]:
        """Snapshot for diagnostics: p50/p95/max in seconds, counts."""
        return {
            "p50_s": self.p50,
            "p95_s": self.p95,
            "max_s": self.max,
            "count": self.count,
            "recorded": self._recorded,
            "rejected": self._rejected,
        }
