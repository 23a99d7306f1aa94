"""`RateLoop`: a fixed-rate loop with absolute deadlines that never bursts to catch up.

Deadlines lie on a grid ``origin + k·period`` (absolute, so sleep error never accumulates
as drift). After each callback the next deadline is the next grid point; if the loop has
fallen more than ``late_tolerance·period`` behind it (a stalled callback, a descheduled
thread), the missed grid points are *skipped* — counted in ``missed_ticks`` — and the
loop waits for the first grid point at or after the current time::

    grid:      k=0    k=1    k=2    k=3    k=4    k=5
               |      |      |      |      |      |
    callback   [==]   [=========stall=========]   [==]      <- next run at k=5
                      tick k=1 ends after k=2's deadline: overruns += 1
                      k=2, k=3, k=4 are skipped (missed_ticks += 3), never replayed

A callback that finishes after the next deadline counts as an ``overrun``; when it is
less than ``late_tolerance·period`` late, the next tick simply runs late (its lateness is
recorded) instead of being skipped. Lateness (start − deadline) samples go into a ring
buffer; `stats` gives p50/p99/max in milliseconds.

`set_rate` takes effect after the current tick: the new grid starts at that tick's
deadline. A clock that goes back (simulated time restarting: the node's command loop runs
on ``/clock`` under ``use_sim_time``, ros/sim_time.py) starts a new grid at the current time.
Exceptions raised by the callback are caught, counted and never stop the loop.

Real-time notes (shared/design/references.md, "Real-time behaviour of Python"): a
same-process thread that holds the GIL (e.g. a PyTorch sampler with Python glue) adds
~5 ms p50 lateness (the default GIL switch interval; ``sys.setswitchinterval(0.001)``
helps) and up to hundreds of ms at p99 — run generation in another process.

``clock``/``sleep`` are injectable; with `FakeClock` and `run_ticks` the loop is fully
deterministic (used by the tests).
"""
from __future__ import annotations

import math
import threading
import time
import traceback
from dataclasses import dataclass
from typing import Callable, Dict, Optional

import numpy as np

from .chunk import TIME_EPS

MIN_RATE_HZ = 1.0
MAX_RATE_HZ = 1000.0


def _check_rate(rate_hz: float) -> float:
    if isinstance(rate_hz, bool) or not isinstance(rate_hz, (int, float)) or not math.isfinite(rate_hz) \
            or not MIN_RATE_HZ <= rate_hz <= MAX_RATE_HZ:
        raise ValueError(f"rate_hz must be a number in [{MIN_RATE_HZ:g}, {MAX_RATE_HZ:g}], got {rate_hz!r}")
    return float(rate_hz)


@dataclass(frozen=True)
class Tick:
    """What the callback receives.

    ``index``: callbacks run so far (0-based); ``grid_index``: k on the current grid;
    ``deadline``: scheduled start; ``started_at``: actual start (same clock);
    ``lateness_s``: started_at − deadline; ``period_s``: the period in effect.
    """

    index: int
    grid_index: int
    deadline: float
    started_at: float
    lateness_s: float
    period_s: float


class FakeClock:
    """Deterministic clock for tests: ``clock()`` reads, ``sleep(s)`` / ``advance(s)`` move."""

    def __init__(self, start: float = 0.0) -> None:
        self.t = float(start)

    def __call__(self) -> float:
        return self.t

    def sleep(self, seconds: float) -> None:
        if seconds > 0:
            self.t += seconds

    def advance(self, seconds: float) -> None:
        self.t += seconds


class RateLoop:
    """Runs ``callback(tick)`` at ``rate_hz`` in its own thread (`start`/`stop`) or
    synchronously (`run_ticks`).

    Args:
        rate_hz: loop rate in [1, 1000] Hz.
        callback: called with a `Tick`; exceptions are caught and counted.
        clock: seconds, monotonic (default ``time.monotonic``).
        sleep: ``sleep(seconds)``; default waits on the stop event (prompt `stop`).
        late_tolerance: fraction of a period a tick may start late before grid points
            are skipped instead (in [0, 1)).
        window: number of lateness samples kept (≥ 1).
        on_error: optional ``on_error(exc, tick)`` called after an exception is counted.
        name: thread name.
    """

    def __init__(self, rate_hz: float, callback: Callable[[Tick], None], *,
                 clock: Callable[[], float] = time.monotonic, sleep: Optional[Callable[[float], None]] = None,
                 late_tolerance: float = 0.5, window: int = 2000,
                 on_error: Optional[Callable[[BaseException, Tick], None]] = None,
                 name: str = "rate_loop") -> None:
        self._period = 1.0 / _check_rate(rate_hz)
        if not callable(callback):
            raise TypeError("callback must be callable")
        if not isinstance(late_tolerance, (int, float)) or not 0.0 <= late_tolerance < 1.0:
            raise ValueError(f"late_tolerance must be in [0, 1), got {late_tolerance!r}")
        if isinstance(window, bool) or not isinstance(window, int) or window < 1:
            raise ValueError(f"window must be an int >= 1, got {window!r}")
        self._callback = callback
        self._clock = clock
        self._sleep = sleep
        self._late_tolerance = float(late_tolerance)
        self._on_error = on_error
        self._name = name
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: Optional[threading.Thread] = None
        self._pending_period: Optional[float] = None
        self._origin: Optional[float] = None
        self._last_start: Optional[float] = None  # clock reading when the last tick started
        self._k = 0
        self._lateness = np.zeros(window, dtype=np.float64)  # [window] ring buffer, seconds
        self._n_late = 0
        self._ticks = 0
        self._overruns = 0
        self._missed = 0
        self._exceptions = 0
        self._last_exception: Optional[str] = None

    # ------------------------------------------------------------------ control
    @property
    def rate_hz(self) -> float:
        with self._lock:
            return 1.0 / self._period

    def set_rate(self, rate_hz: float) -> None:
        """Change the rate; applied after the current (or next) tick."""
        period = 1.0 / _check_rate(rate_hz)
        with self._lock:
            self._pending_period = period

    def start(self) -> None:
        """Start the loop thread (first tick immediately)."""
        if self._thread is not None and self._thread.is_alive():
            raise RuntimeError("RateLoop already running")
        self._stop.clear()
        self._origin = None
        self._thread = threading.Thread(target=self._run, name=self._name, daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 2.0) -> bool:
        """Ask the loop to stop and join it; True when the thread has ended."""
        self._stop.set()
        thread = self._thread
        if thread is None:
            return True
        if thread is threading.current_thread():  # stop() from inside the callback
            return False
        thread.join(timeout)
        return not thread.is_alive()

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def run_ticks(self, n: int, wait: bool = True) -> int:
        """Run ``n`` callbacks synchronously on the injected clock/sleep (deterministic mode).
        ``wait=False``: run each at once, its deadline = now (the caller owns time, e.g. a
        replay stepping ``/clock`` itself: waiting for the next step would wait for itself)."""
        if isinstance(n, bool) or not isinstance(n, int) or n < 0:
            raise ValueError(f"n must be an int >= 0, got {n!r}")
        if self.running:
            raise RuntimeError("run_ticks() while the loop thread is running")
        self._stop.clear()
        done = 0
        for _ in range(n):
            if not self._one_tick(wait=wait):
                break
            done += 1
        return done

    # ------------------------------------------------------------------ loop body
    def _run(self) -> None:
        while not self._stop.is_set():
            if not self._one_tick():
                break

    def _wait_until(self, deadline: float) -> Optional[str]:
        """Sleep until ``deadline`` -> "reached", "rewound" (the clock went back before the
        last tick: simulated time restarted), or None when stopped meanwhile."""
        while True:
            if self._stop.is_set():
                return None
            now = self._clock()
            if self._last_start is not None and now < self._last_start - TIME_EPS:
                return "rewound"
            remaining = deadline - now
            if remaining <= 0:
                return "reached"
            if self._sleep is not None:
                self._sleep(remaining)
            elif self._stop.wait(remaining):
                return None

    def _one_tick(self, wait: bool = True) -> bool:
        if self._origin is None or not wait:
            self._origin = self._clock()
            self._k = 0
        with self._lock:
            period = self._period
        deadline = self._origin + self._k * period
        outcome = self._wait_until(deadline)
        if outcome is None:
            return False
        if outcome == "rewound":  # a new grid on the new timeline, starting now
            self._origin, self._k = self._clock(), 0
            deadline = self._origin
        started = self._clock()
        self._last_start = started
        lateness = started - deadline
        tick = Tick(index=self._ticks, grid_index=self._k, deadline=deadline, started_at=started,
                    lateness_s=lateness, period_s=period)
        with self._lock:
            self._lateness[self._n_late % self._lateness.shape[0]] = lateness
            self._n_late += 1
            self._ticks += 1
        try:
            self._callback(tick)
        except Exception as exc:  # noqa: BLE001 - the loop must survive any callback error
            with self._lock:
                self._exceptions += 1
                self._last_exception = "".join(traceback.format_exception_only(type(exc), exc)).strip()
            if self._on_error is not None:
                try:
                    self._on_error(exc, tick)
                except Exception:  # noqa: BLE001
                    pass
        finished = self._clock()
        self._schedule_next(deadline, finished)
        return True

    def _schedule_next(self, deadline: float, finished: float) -> None:
        with self._lock:
            if self._pending_period is not None:
                # New grid anchored at the tick just run.
                self._period, self._pending_period = self._pending_period, None
                self._origin, self._k = deadline, 0
            period = self._period
            k_next = self._k + 1
            next_deadline = self._origin + k_next * period
            if finished > next_deadline + TIME_EPS:
                self._overruns += 1
            if finished > next_deadline + self._late_tolerance * period + TIME_EPS:
                first_at_or_after = int(math.ceil((finished - self._origin) / period - TIME_EPS / period))
                self._missed += first_at_or_after - k_next
                k_next = first_at_or_after
            self._k = k_next

    # ------------------------------------------------------------------ diagnostics
    def stats(self) -> Dict[str, object]:
        """ticks, overruns, missed_ticks, exceptions, last_exception, lateness p50/p99/max (ms)."""
        with self._lock:
            n = min(self._n_late, self._lateness.shape[0])
            lat = self._lateness[:n].copy()  # [n] seconds
            out: Dict[str, object] = {
                "rate_hz": 1.0 / self._period, "ticks": self._ticks, "overruns": self._overruns,
                "missed_ticks": self._missed, "exceptions": self._exceptions,
                "last_exception": self._last_exception}
        if n:
            out.update(lateness_p50_ms=float(np.percentile(lat, 50)) * 1e3,
                       lateness_p99_ms=float(np.percentile(lat, 99)) * 1e3,
                       lateness_max_ms=float(lat.max()) * 1e3)
        else:
            out.update(lateness_p50_ms=None, lateness_p99_ms=None, lateness_max_ms=None)
        return out
