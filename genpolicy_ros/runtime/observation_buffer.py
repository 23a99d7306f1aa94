"""`ObservationBuffer`: per-stream sample history aligned by header stamp.

Each stream ("state", "camera/front", …) keeps its recent samples ordered by header
stamp. A snapshot is taken at ``t`` = the newest instant every stream has reached
(the minimum over streams of their newest stamp) and resamples each stream at the T_o
instants of the training window (docs/internals.md: observations at ``t−(T_o−1)·dt … t``)
with **latest-sample-at-or-before** (zero-order hold)::

    instants:        t-2dt      t-dt        t
                       |          |         |
    state  ..x....x....x....x....x....x....x|...x     -> x at-or-before each instant
    camera ......o.........o.........o......|o.       -> o at-or-before each instant
                                            ^ t = min(newest state, newest camera)

Alignment uses header stamps, never arrival time (references.md, ros2_control
conventions). Two clocks are involved:

* the *stamp clock* (header stamps; ROS time, possibly ``/clock`` during bag replay):
  ``now`` arguments; staleness "by header stamp" is ``now − newest stamp > max_age_s``;
* the *steady clock* (``time.monotonic``): ``arrival_time`` / ``steady_now``;
  staleness "by arrival" is ``steady_now − last arrival > max_age_s``. This watchdog still
  fires when ``/clock`` stops and ROS time freezes (reliability.md row 14).

Bad data never raises: ``add`` returns an `AddStatus` (reliability.md rows 5, 17).

**Time resets vs stale messages.** One message must not reset anything: a stamp behind a
stream's newest one is *dropped* (``STAMP_BACKWARDS``, counted) unless a genuine time reset
is confirmed, either

* by the stamp clock itself: ``now`` is behind the stream's newest stamp by more than
  ``future_tolerance_s`` — our own clock went back (``/clock`` restarted with a bag loop or
  a simulator reset): the reset is immediate; or
* by ``reset_confirm_samples`` consecutive messages of that stream, each more than
  ``future_tolerance_s`` behind the old newest stamp, increasing among themselves, with no
  message on the old timeline in between (a sender whose time base really changed).

A confirmed reset clears *all* streams, so a snapshot never mixes two timelines; the new
timeline's samples are kept and ``epoch`` increments (callers reset the chunk scheduler
when it changes). A message only slightly behind (within ``future_tolerance_s``: out of
order, or after one slightly-future stamp) is dropped and never starts a candidate timeline.

Copies are minimal: ``add`` stores a reference to ``value`` (the caller hands over
ownership and must not mutate it afterwards); ``snapshot`` stacks the T_o selected
samples into one new array per stream, outside the lock. Thread-safe (one lock).
"""
from __future__ import annotations

import bisect
import enum
import math
import threading
from dataclasses import dataclass
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np

from .chunk import TIME_EPS


class AddStatus(str, enum.Enum):
    """Outcome of `ObservationBuffer.add`."""

    ACCEPTED = "accepted"
    RESET_BACKWARDS = "reset_backwards"  # accepted: a confirmed time reset cleared all streams
    STAMP_BACKWARDS = "stamp_backwards"  # behind the newest stamp, no confirmed time reset: dropped (stale)
    UNKNOWN_STREAM = "unknown_stream"
    STAMP_ZERO = "stamp_zero"  # 0 or negative: header never filled in
    STAMP_NONFINITE = "stamp_nonfinite"
    STAMP_FUTURE = "stamp_future"
    DUPLICATE_STAMP = "duplicate_stamp"
    BAD_VALUE = "bad_value"  # not an array / non-finite floats / shape changed
    BAD_ARRIVAL_TIME = "bad_arrival_time"
    OUT_OF_RANGE = "out_of_range"  # refused by the caller: implausible values (e.g. far outside joint limits)

    @property
    def accepted(self) -> bool:
        return self in (AddStatus.ACCEPTED, AddStatus.RESET_BACKWARDS)


class SnapshotStatus(str, enum.Enum):
    """Why `ObservationBuffer.snapshot` returned no snapshot (or OK)."""

    OK = "ok"
    MISSING_STREAM = "missing_stream"
    STALE_STAMP = "stale_stamp"  # by header stamp (stamp clock)
    STALE_ARRIVAL = "stale_arrival"  # by steady arrival clock
    NO_SAMPLE_BEFORE = "no_sample_before"  # a stream has nothing at or before t
    INSUFFICIENT_HISTORY = "insufficient_history"  # only when require_full_history


@dataclass(frozen=True)
class ObservationSnapshot:
    """T_o aligned samples per stream.

    Attributes:
        t: the window's newest instant (becomes the chunk's ``t0``).
        times: ``[T_o]`` the instants ``t−(T_o−1)·dt … t``.
        data: stream → ``[T_o, *sample_shape]`` stacked samples (new arrays).
        source_stamps: stream → ``[T_o]`` header stamp of the sample used at each instant.
        padded: stream → how many leading instants precede the stream's oldest sample
            (filled with that oldest sample, as at the start of a training episode).
        epoch: the buffer's reset counter when the snapshot was taken.
    """

    t: float
    times: np.ndarray
    data: Dict[str, np.ndarray]
    source_stamps: Dict[str, np.ndarray]
    padded: Dict[str, int]
    epoch: int


class _Stream:
    """Samples of one stream in stamp order (parallel lists; appends are O(1))."""

    __slots__ = ("stamps", "values", "arrival", "shape", "dtype", "candidates")

    def __init__(self) -> None:
        self.stamps: List[float] = []
        self.values: List[np.ndarray] = []
        self.arrival: float = -math.inf  # steady time of the newest accepted sample
        self.shape: Optional[Tuple[int, ...]] = None
        self.dtype = None
        self.candidates: List[Tuple[float, np.ndarray, float]] = []  # (stamp, value, arrival) of a new timeline

    def clear(self) -> None:
        self.stamps.clear()
        self.values.clear()
        self.candidates.clear()
        self.arrival = -math.inf
        # shape/dtype are kept: a reset is a timeline jump, not a new sensor.


class ObservationBuffer:
    """Header-stamp aligned observation history for several streams.

    Args:
        T_o: number of observation instants per snapshot (≥ 1).
        dt: seconds between instants (1 / training control rate, > 0).
        stream_names: the streams that must all be present for a snapshot.
        max_age_s: ``observation_timeout_s``; older (by either clock) → no snapshot.
        history_s: seconds of samples kept per stream, counted back from its newest
            stamp; default ``(T_o−1)·dt + max_age_s + dt``.
        future_tolerance_s: a stamp more than this ahead of ``now`` is rejected.
        max_samples: hard cap per stream (memory stays flat under a flood).
        reset_confirm_samples: consecutive messages on an earlier timeline that confirm a
            time reset when the stamp clock did not go back itself (module docstring).
        require_full_history: if True, no snapshot until every stream reaches back to
            ``t−(T_o−1)·dt``; if False, leading instants are padded with the oldest sample.
    """

    def __init__(
        self,
        T_o: int,
        dt: float,
        stream_names: Sequence[str],
        max_age_s: float,
        history_s: Optional[float] = None,
        future_tolerance_s: float = 0.05,
        max_samples: int = 1000,
        require_full_history: bool = False,
        reset_confirm_samples: int = 5,
    ) -> None:
        if isinstance(T_o, bool) or not isinstance(T_o, int) or T_o < 1:
            raise ValueError(f"ObservationBuffer.T_o must be an int >= 1, got {T_o!r}")
        if not math.isfinite(dt) or dt <= 0:
            raise ValueError(f"ObservationBuffer.dt must be finite and > 0, got {dt!r}")
        names = list(stream_names)
        if not names or any(not isinstance(n, str) or not n for n in names) or len(set(names)) != len(names):
            raise ValueError(f"ObservationBuffer.stream_names must be unique non-empty strings, got {names!r}")
        if not math.isfinite(max_age_s) or max_age_s <= 0:
            raise ValueError(f"ObservationBuffer.max_age_s must be finite and > 0, got {max_age_s!r}")
        window = (T_o - 1) * dt
        if history_s is None:
            history_s = window + max_age_s + dt
        if not math.isfinite(history_s) or history_s < window:
            raise ValueError(
                f"ObservationBuffer.history_s must be finite and >= (T_o-1)*dt = {window:g} s, got {history_s!r}")
        if not math.isfinite(future_tolerance_s) or future_tolerance_s < 0:
            raise ValueError(f"future_tolerance_s must be finite and >= 0, got {future_tolerance_s!r}")
        if isinstance(max_samples, bool) or not isinstance(max_samples, int) or max_samples < T_o:
            raise ValueError(f"max_samples must be an int >= T_o ({T_o}), got {max_samples!r}")
        self.T_o = T_o
        self.dt = float(dt)
        self.stream_names = tuple(names)
        self.max_age_s = float(max_age_s)
        self.history_s = float(history_s)
        self.future_tolerance_s = float(future_tolerance_s)
        self.max_samples = max_samples
        self.require_full_history = bool(require_full_history)
        if isinstance(reset_confirm_samples, bool) or not isinstance(reset_confirm_samples, int) \
                or reset_confirm_samples < 1:
            raise ValueError(f"reset_confirm_samples must be an int >= 1, got {reset_confirm_samples!r}")
        self.reset_confirm_samples = reset_confirm_samples
        self._lock = threading.Lock()
        self._streams: Dict[str, _Stream] = {n: _Stream() for n in names}
        self._epoch = 0
        self._counts: Dict[str, int] = {s.value: 0 for s in AddStatus}
        self._last_snapshot_status = SnapshotStatus.MISSING_STREAM
        self._last_snapshot_detail = "no data yet"

    # ------------------------------------------------------------------ writing
    def add(self, stream: str, stamp: float, value, arrival_time: float,
            now: Optional[float] = None) -> AddStatus:
        """Add one sample; never raises on bad data.

        Args:
            stream: one of ``stream_names``.
            stamp: header stamp, seconds on the stamp clock.
            value: the sample (e.g. ``[D_s]`` float state, ``[H, W, 3]`` uint8 image).
            arrival_time: steady-clock time of reception.
            now: current time on the stamp clock for the future check; ``None`` means the
                stamp clock *is* the steady clock and ``arrival_time`` is used.
        """
        status = self._add(stream, stamp, value, arrival_time, now)
        with self._lock:
            self._counts[status.value] += 1
        return status

    def _add(self, stream, stamp, value, arrival_time, now) -> AddStatus:
        s = self._streams.get(stream) if isinstance(stream, str) else None
        if s is None:
            return AddStatus.UNKNOWN_STREAM
        try:
            stamp = float(stamp)
            arrival_time = float(arrival_time)
            now = arrival_time if now is None else float(now)
        except (TypeError, ValueError):
            return AddStatus.STAMP_NONFINITE
        if not math.isfinite(stamp):
            return AddStatus.STAMP_NONFINITE
        if stamp <= 0.0:
            return AddStatus.STAMP_ZERO
        if not math.isfinite(arrival_time) or not math.isfinite(now):
            return AddStatus.BAD_ARRIVAL_TIME
        if stamp > now + self.future_tolerance_s:
            return AddStatus.STAMP_FUTURE
        if not isinstance(value, np.ndarray):
            try:
                value = np.asarray(value)
            except Exception:  # noqa: BLE001 - any conversion failure is bad data
                return AddStatus.BAD_VALUE
        if value.dtype.kind not in "biuf" or value.size == 0:  # bool/int/uint/float only
            return AddStatus.BAD_VALUE
        if np.issubdtype(value.dtype, np.floating) and not np.isfinite(value).all():
            return AddStatus.BAD_VALUE
        with self._lock:
            if s.shape is not None and (value.shape != s.shape or value.dtype != s.dtype):
                return AddStatus.BAD_VALUE
            if s.stamps:
                last = s.stamps[-1]
                if abs(stamp - last) <= TIME_EPS:
                    return AddStatus.DUPLICATE_STAMP
                if stamp < last:
                    return self._behind(s, stamp, value, arrival_time, now)
                s.candidates.clear()  # the old timeline is alive: no reset
            s.shape, s.dtype = value.shape, value.dtype
            self._append(s, stamp, value, arrival_time)
            return AddStatus.ACCEPTED

    def _append(self, s: _Stream, stamp: float, value: np.ndarray, arrival_time: float) -> None:
        s.stamps.append(stamp)
        s.values.append(value)
        s.arrival = max(s.arrival, arrival_time)
        self._trim(s)

    def _behind(self, s: _Stream, stamp: float, value: np.ndarray, arrival_time: float, now: float) -> AddStatus:
        """A stamp behind the stream's newest (lock held): a confirmed time reset, or dropped."""
        last = s.stamps[-1]
        tolerance = self.future_tolerance_s
        if now + tolerance < last:  # our own clock went back: a genuine reset
            self._reset_to(s, [(stamp, value, arrival_time)])
            return AddStatus.RESET_BACKWARDS
        if stamp >= last - tolerance:  # out of order / behind a slightly-future stamp
            return AddStatus.STAMP_BACKWARDS
        if s.candidates and stamp <= s.candidates[-1][0] + TIME_EPS:
            s.candidates.clear()  # not increasing: not one consistent new timeline
        s.candidates.append((stamp, value, arrival_time))
        if len(s.candidates) < self.reset_confirm_samples:
            return AddStatus.STAMP_BACKWARDS
        self._reset_to(s, list(s.candidates))
        return AddStatus.RESET_BACKWARDS

    def _reset_to(self, s: _Stream, samples) -> None:
        for other in self._streams.values():
            other.clear()
        self._epoch += 1
        for stamp, value, arrival in samples:
            self._append(s, stamp, value, arrival)

    def count(self, status: AddStatus) -> None:
        """Count a sample the caller refused before `add` (so every reason shows in `stats`)."""
        with self._lock:
            self._counts[status.value] += 1

    def _trim(self, s: _Stream) -> None:
        horizon = s.stamps[-1] - self.history_s
        # keep the newest sample at or before the horizon: it still covers the horizon.
        cut = bisect.bisect_right(s.stamps, horizon + TIME_EPS) - 1
        cut = max(cut, len(s.stamps) - self.max_samples)
        if cut > 0:
            del s.stamps[:cut]
            del s.values[:cut]

    def reset(self) -> None:
        """Drop every sample (e.g. on lifecycle deactivate); increments ``epoch``."""
        with self._lock:
            for s in self._streams.values():
                s.clear()
            self._epoch += 1

    # ------------------------------------------------------------------ reading
    def snapshot(self, now: float, steady_now: Optional[float] = None) -> Optional[ObservationSnapshot]:
        """Aligned T_o-sample window per stream, or None (see `last_status`).

        Args:
            now: current time on the stamp clock.
            steady_now: current steady-clock time; ``None`` = same clock as ``now``.
        """
        steady_now = now if steady_now is None else steady_now
        with self._lock:
            picked, status, detail = self._select(float(now), float(steady_now))
            self._last_snapshot_status, self._last_snapshot_detail = status, detail
            epoch = self._epoch
        if picked is None:
            return None
        t, times, chosen = picked
        data, stamps, padded = {}, {}, {}
        for name, (values, src, pad) in chosen.items():
            data[name] = np.stack(values)  # [T_o, *sample_shape], the only copy
            stamps[name] = np.asarray(src, dtype=np.float64)  # [T_o]
            padded[name] = pad
        return ObservationSnapshot(t=t, times=times, data=data, source_stamps=stamps, padded=padded, epoch=epoch)

    def _select(self, now: float, steady_now: float):
        for name, s in self._streams.items():
            if not s.stamps:
                return None, SnapshotStatus.MISSING_STREAM, f"no sample yet on '{name}'"
        for name, s in self._streams.items():
            age = now - s.stamps[-1]
            if age > self.max_age_s:
                return None, SnapshotStatus.STALE_STAMP, f"'{name}' newest stamp is {age:.3f} s old"
        for name, s in self._streams.items():
            age = steady_now - s.arrival
            if age > self.max_age_s:
                return None, SnapshotStatus.STALE_ARRIVAL, f"'{name}' last arrived {age:.3f} s ago"
        t = min(s.stamps[-1] for s in self._streams.values())
        times = t - (self.T_o - 1 - np.arange(self.T_o, dtype=np.float64)) * self.dt  # [T_o]
        chosen = {}
        for name, s in self._streams.items():
            values, src, pad = [], [], 0
            for inst in times:
                i = bisect.bisect_right(s.stamps, inst + TIME_EPS) - 1
                if i < 0:
                    if inst == times[-1]:
                        return None, SnapshotStatus.NO_SAMPLE_BEFORE, f"'{name}' has no sample at or before t={t:.6f}"
                    if self.require_full_history:
                        return (None, SnapshotStatus.INSUFFICIENT_HISTORY,
                                f"'{name}' history starts after {inst:.6f}")
                    pad += 1
                    i = 0
                values.append(s.values[i])
                src.append(s.stamps[i])
            chosen[name] = (values, src, pad)
        return (t, times, chosen), SnapshotStatus.OK, ""

    @property
    def last_status(self) -> Tuple[SnapshotStatus, str]:
        """(status, human-readable detail) of the latest `snapshot` call."""
        with self._lock:
            return self._last_snapshot_status, self._last_snapshot_detail

    @property
    def epoch(self) -> int:
        """Number of resets so far (backwards jumps + explicit `reset`)."""
        with self._lock:
            return self._epoch

    def stats(self) -> Dict[str, object]:
        """Counters per `AddStatus`, resets, samples held per stream."""
        with self._lock:
            return {
                "add": dict(self._counts),
                "resets": self._epoch,
                "samples": {n: len(s.stamps) for n, s in self._streams.items()},
                "newest_stamp": {n: (s.stamps[-1] if s.stamps else None) for n, s in self._streams.items()},
            }
