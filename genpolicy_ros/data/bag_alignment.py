"""Aligning recorded message streams onto a time grid of header stamps (used by :mod:`.bags`).

Per episode window ``[start, end]`` (ns, header-stamp time)::

    grid g_k = start + k·dt            (k = 0, 1, ... while g_k <= end)
    row k    = latest sample of every stream whose stamp is <= g_k (and >= start)

Samples are sorted by stamp first, so arrival order does not matter. Rows where a stream
has no sample yet, or only one older than ``max_age``, are dropped.

Episode windows come from the sim's ``~/episode`` messages (JSON with ``start_ns`` /
``end_ns``; only ``completed`` ones unless ``include_incomplete``), or, in a bag without
them, from the joint-state stream: it is cut where its stamps, in arrival order, jump
forward by more than ``max_gap_s`` or go backwards by more than ``max_gap_s`` (a replay
loop); the other streams are assigned to a segment by their receive time.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Dict, Iterator, List, Optional, Tuple

import numpy as np

NS_PER_S = 1_000_000_000


@dataclass
class Stream:
    """Samples of one signal: stamps [M] int64 ns, receive times [M], values (list)."""

    stamps: List[int] = field(default_factory=list)
    received: List[int] = field(default_factory=list)
    values: list = field(default_factory=list)

    def add(self, stamp: int, received: int, value) -> None:
        self.stamps.append(stamp)
        self.received.append(received)
        self.values.append(value)

    def select(self, keep: np.ndarray) -> "SortedStream":
        stamps = np.asarray(self.stamps, dtype=np.int64)[keep]
        idx = np.flatnonzero(keep)
        order = np.argsort(stamps, kind="stable")
        return SortedStream(stamps[order], [self.values[idx[i]] for i in order])


@dataclass
class SortedStream:
    stamps: np.ndarray  # [M] int64, non-decreasing
    values: list

    def latest_at_or_before(self, grid: np.ndarray) -> np.ndarray:
        """Index of the latest sample with stamp <= each grid time (-1 if none) [G]."""
        return np.searchsorted(self.stamps, grid, side="right") - 1


@dataclass
class Window:
    start_ns: int
    end_ns: int
    received: Optional[Tuple[int, int]] = None  # receive-time span; None = any


def episode_windows(bag_name: str, states: Stream, statuses: List[Tuple[int, dict]], include_incomplete: bool,
                    max_gap_s: float, report) -> Iterator[Tuple[str, Window]]:
    """Yield ``(label, Window)`` for each episode of one bag (see the module docstring).

    ``statuses``: ``(receive time, ~/episode JSON)``; ``report``: a ``ConversionReport``
    (``reject(reason)``, ``skipped_episodes``)."""
    if statuses:
        for _received, status in statuses:
            label = f"{bag_name} episode {status.get('episode', '?')}"
            try:
                start, end = int(status["start_ns"]), int(status["end_ns"])
            except (KeyError, TypeError, ValueError):
                report.reject("episode status without start_ns/end_ns")
                continue
            if not status.get("completed", True) and not include_incomplete:
                report.skipped_episodes.append(f"{label}: not completed")
                continue
            yield label, Window(start, end)
        return
    # No episode messages: segments of the joint-state stream in arrival order.
    if not states.stamps:
        return
    gap = int(round(max_gap_s * NS_PER_S))
    stamps = np.asarray(states.stamps, dtype=np.int64)  # [M] arrival order
    received = np.asarray(states.received, dtype=np.int64)  # [M]
    starts = [0]
    high = stamps[0]
    for i in range(1, len(stamps)):
        if stamps[i] > high + gap or stamps[i] < high - gap:
            starts.append(i)
            high = stamps[i]
        else:
            high = max(high, stamps[i])
    bounds = starts + [len(stamps)]
    for k in range(len(starts)):
        seg = slice(bounds[k], bounds[k + 1])
        recv_lo = int(received[seg][0]) if k > 0 else np.iinfo(np.int64).min
        recv_hi = int(received[bounds[k + 1]]) - 1 if k + 1 < len(starts) else np.iinfo(np.int64).max
        yield (f"{bag_name} segment {k}",
               Window(int(stamps[seg].min()), int(stamps[seg].max()), (recv_lo, recv_hi)))


def resample(streams: Dict[str, Stream], window: Window, dt_ns: int, max_age_ns: int
             ) -> Optional[Tuple[np.ndarray, Dict[str, list]]]:
    """Every stream on the grid ``start + k·dt`` of ``window`` (latest sample at or before).

    Returns ``(grid stamps [N] int64 ns, {stream: [N] values})`` for the rows where every
    stream has a fresh sample, or None when there is none."""
    grid = np.arange(window.start_ns, window.end_ns + 1, dt_ns, dtype=np.int64)  # [G]
    keep_rows = np.ones(grid.shape, dtype=bool)  # [G]
    picked = {}
    for name, stream in streams.items():
        stamps = np.asarray(stream.stamps, dtype=np.int64)  # [M]
        inside = (stamps >= window.start_ns) & (stamps <= window.end_ns)
        if window.received is not None:
            recv = np.asarray(stream.received, dtype=np.int64)  # [M]
            inside &= (recv >= window.received[0]) & (recv <= window.received[1])
        if not inside.any():
            return None
        s = stream.select(inside)
        idx = s.latest_at_or_before(grid)  # [G]
        ok = idx >= 0
        ok[ok] &= (grid[ok] - s.stamps[idx[ok]]) <= max_age_ns
        keep_rows &= ok
        picked[name] = (s, idx)
    if not keep_rows.any():
        return None
    rows = np.flatnonzero(keep_rows)  # [N]
    return grid[rows], {name: [s.values[i] for i in idx[rows]] for name, (s, idx) in picked.items()}
