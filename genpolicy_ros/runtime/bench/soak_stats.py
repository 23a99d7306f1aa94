"""Soak statistics (ROS-free): raw samples of a long run → one row of numbers per window.

The soak probe (genpolicy_ros/ros/soak.py) feeds a :class:`SoakRecorder` while the node
runs; :func:`soak_windows` cuts the measured span ``[start, end)`` into windows of
``window_s`` (the last one may be shorter) and gives, per window:

* commands — ``commands``, ``commands_per_s``, ``nonfinite`` (commands with NaN/Inf);
* receive-side timing — ``rx_jitter_p50/p99/max_ms``: ``|gap − period|`` between
  consecutive commands on the middleware's receive stamps (a gap belongs to the window of
  its later command; the probe's callback clock when the middleware gives no stamps,
  ``rx_clock`` says which), and ``rx_gap_max_ms``;
* the node's own executor — from its /diagnostics reports in the window:
  ``exec_lateness_p99_ms`` (the largest p99 reported; each report covers the node's last
  2000 ticks), ``exec_lateness_max_ms``, ``missed_ticks`` (increase of the node's counter
  over the window), ``chunks_per_s``, ``generation_p95_ms`` (largest reported), ``holds``;
* resources per process role (runtime/bench/proc_stats.py) — ``rss_mib`` (median of the
  samples) and ``rss_max_mib``, ``fds`` and ``threads`` (largest), ``cpu_percent``
  (of one core, None when the role's processes changed within the window);
* ``load1`` — the machine's mean 1-minute load average.

:func:`soak_summary` condenses the windows: totals, the worst window, and per role the
growth of RSS / fds / threads from the first window to the last plus the RSS slope
(least squares over every sample, MiB per minute) — flat lines mean a growth near 0.
"""
from __future__ import annotations

import math
import threading
from array import array
from typing import Dict, List, Optional, Sequence

import numpy as np

DIAG_NUMBERS = ("executor_lateness_p99_ms", "executor_lateness_max_ms", "executor_missed_ticks", "chunks_total",
                "latency_p95_ms", "holds", "non_finite", "generation_errors", "rejected_messages")


class SoakRecorder:
    """Thread-safe raw samples: commands (arrival, receive stamp, finite), /diagnostics
    numbers and process snapshots, each with the probe's monotonic time."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.command_t = array("d")  # [n] probe monotonic arrival (s)
        self.command_rx_ns = array("q")  # [n] middleware receive stamp (ns); -1 = unavailable
        self.command_finite = array("b")  # [n] 1 = every position finite
        self.diagnostics: List[tuple] = []  # (t, {key: float})
        self.processes: List[tuple] = []  # (t, {role: {rss_kib, fds, threads, cpu_s, pids}}, load1)

    def add_command(self, t: float, rx_ns: Optional[int], finite: bool) -> None:
        with self._lock:
            self.command_t.append(t)
            self.command_rx_ns.append(-1 if rx_ns is None else int(rx_ns))
            self.command_finite.append(1 if finite else 0)

    def add_diagnostics(self, t: float, values: Dict[str, object]) -> None:
        numbers = {}
        for key in DIAG_NUMBERS:
            try:
                numbers[key] = float(values[key])
            except (KeyError, TypeError, ValueError):
                continue
        with self._lock:
            self.diagnostics.append((t, numbers))

    def add_processes(self, t: float, snapshot: Dict[str, dict], load1: Optional[float]) -> None:
        with self._lock:
            self.processes.append((t, snapshot, load1))

    def arrays(self):
        """Copies: (t [n], rx_ns [n], finite [n] bool, diagnostics, processes)."""
        with self._lock:
            return (np.array(self.command_t, dtype=float), np.array(self.command_rx_ns, dtype=np.int64),
                    np.array(self.command_finite, dtype=bool), list(self.diagnostics), list(self.processes))


def _pct(values: np.ndarray, q: float) -> Optional[float]:
    return float(np.percentile(values, q)) if values.size else None


def window_bounds(start: float, end: float, window_s: float) -> List[tuple]:
    """``[(a, b)]`` windows of ``window_s`` covering ``[start, end)``; a last piece shorter
    than a tenth of a window is merged into the previous one."""
    if not (math.isfinite(window_s) and window_s > 0):
        raise ValueError(f"window_s must be > 0, got {window_s!r}")
    if not end > start:
        raise ValueError(f"empty span: start {start} >= end {end}")
    edges = list(np.arange(start, end, window_s)) + [end]
    if len(edges) > 2 and edges[-1] - edges[-2] < 0.1 * window_s:
        del edges[-2]
    return list(zip(edges[:-1], edges[1:]))


def _command_stats(t, rx_ns, finite, period_s, a, b) -> dict:
    use_rx = rx_ns.size and (rx_ns >= 0).all()
    clock = rx_ns * 1e-9 if use_rx else t  # [n] seconds
    idx = np.flatnonzero((t >= a) & (t < b))  # commands of this window
    gaps_idx = idx[idx > 0]
    gaps_ms = (clock[gaps_idx] - clock[gaps_idx - 1]) * 1e3  # [m] gap ending at each command
    jitter = np.abs(gaps_ms - period_s * 1e3)
    return {"commands": int(idx.size), "commands_per_s": idx.size / (b - a),
            "nonfinite": int((~finite[idx]).sum()), "rx_clock": "middleware" if use_rx else "probe_callback",
            "rx_jitter_p50_ms": _pct(jitter, 50), "rx_jitter_p99_ms": _pct(jitter, 99),
            "rx_jitter_max_ms": float(jitter.max()) if jitter.size else None,
            "rx_gap_max_ms": float(gaps_ms.max()) if gaps_ms.size else None}


def _diag_stats(diagnostics, a, b) -> dict:
    inside = [v for t, v in diagnostics if a <= t < b]
    before = [v for t, v in diagnostics if t < a]

    def largest(key):
        vals = [v[key] for v in inside if key in v]
        return max(vals) if vals else None

    def increase(key):
        vals = [v[key] for v in inside if key in v]
        base = [v[key] for v in before if key in v]
        if not vals:
            return None
        return vals[-1] - (base[-1] if base else vals[0])

    chunks = increase("chunks_total")
    return {"exec_lateness_p99_ms": largest("executor_lateness_p99_ms"),
            "exec_lateness_max_ms": largest("executor_lateness_max_ms"),
            "missed_ticks": increase("executor_missed_ticks"),
            "chunks_per_s": None if chunks is None else chunks / (b - a),
            "generation_p95_ms": largest("latency_p95_ms"),
            "holds": sum(v.get("holds", 0.0) for v in inside),
            "diag_non_finite": sum(v.get("non_finite", 0.0) for v in inside),
            "generation_errors": sum(v.get("generation_errors", 0.0) for v in inside),
            "diagnostics": len(inside)}


def _process_stats(processes, a, b) -> dict:
    inside = [(t, snap, load) for t, snap, load in processes if a <= t < b]
    roles: Dict[str, dict] = {}
    for role in sorted({r for _, snap, _ in inside for r in snap}):
        rows = [(t, snap[role]) for t, snap, _ in inside if role in snap]
        rss = np.array([r["rss_kib"] for _, r in rows], dtype=float) / 1024.0  # [k] MiB
        cpu = None
        (t0, first), (t1, last) = rows[0], rows[-1]
        if t1 > t0 and first["pids"] == last["pids"]:
            cpu = 100.0 * (last["cpu_s"] - first["cpu_s"]) / (t1 - t0)
        roles[role] = {"rss_mib": float(np.median(rss)), "rss_max_mib": float(rss.max()),
                       "fds": int(max(r["fds"] for _, r in rows)), "threads": int(max(r["threads"] for _, r in rows)),
                       "cpu_percent": cpu, "pids": sorted({p for _, r in rows for p in r["pids"]})}
    loads = [load for _, _, load in inside if load is not None]
    return {"processes": roles, "load1": float(np.mean(loads)) if loads else None}


def soak_windows(recorder: SoakRecorder, start: float, end: float, window_s: float, period_s: float) -> List[dict]:
    """One dict per window (see the module docstring), in time order."""
    t, rx_ns, finite, diagnostics, processes = recorder.arrays()
    rows = []
    for k, (a, b) in enumerate(window_bounds(start, end, window_s)):
        row = {"index": k, "start_s": a - start, "end_s": b - start}
        row.update(_command_stats(t, rx_ns, finite, period_s, a, b))
        row.update(_diag_stats(diagnostics, a, b))
        row.update(_process_stats(processes, a, b))
        rows.append(row)
    return rows


def _median(values) -> Optional[float]:
    vals = [v for v in values if v is not None]
    return float(np.median(vals)) if vals else None


def _slope_per_min(times: Sequence[float], values: Sequence[float]) -> Optional[float]:
    if len(times) < 3 or max(times) - min(times) <= 0:
        return None
    return float(np.polyfit(np.asarray(times) / 60.0, np.asarray(values), 1)[0])


def soak_summary(windows: List[dict], recorder: SoakRecorder, start: float, end: float) -> dict:
    """Totals, the worst window, and per role the first-to-last-window growth and RSS slope."""
    if not windows:
        raise ValueError("soak_summary needs at least one window")
    duration = end - start

    def worst(key):
        vals = [w[key] for w in windows if w.get(key) is not None]
        return max(vals) if vals else None

    commands = sum(w["commands"] for w in windows)
    first, last = windows[0]["processes"], windows[-1]["processes"]
    _, _, _, _, processes = recorder.arrays()
    roles = {}
    for role in sorted(set(first) | set(last)):
        samples = [(t, snap[role]["rss_kib"] / 1024.0) for t, snap, _ in processes
                   if start <= t < end and role in snap]
        a, b = first.get(role), last.get(role)
        roles[role] = {
            "rss_first_mib": a and a["rss_mib"], "rss_last_mib": b and b["rss_mib"],
            "rss_growth_mib": (b["rss_mib"] - a["rss_mib"]) if a and b else None,
            "rss_slope_mib_per_min": _slope_per_min([s[0] for s in samples], [s[1] for s in samples]),
            "fds_first": a and a["fds"], "fds_last": b and b["fds"],
            "threads_first": a and a["threads"], "threads_last": b and b["threads"],
            "pids_seen": sorted({p for w in windows for p in w["processes"].get(role, {}).get("pids", [])})}
    missed = [w["missed_ticks"] for w in windows if w["missed_ticks"] is not None]
    loads = [w["load1"] for w in windows if w["load1"] is not None]
    return {"duration_s": duration, "windows": len(windows), "commands": commands,
            "commands_per_s": commands / duration if duration > 0 else None,
            "nonfinite_commands": sum(w["nonfinite"] for w in windows),
            "rx_jitter_p99_ms_worst_window": worst("rx_jitter_p99_ms"),
            "rx_jitter_p99_ms_median_window": _median([w["rx_jitter_p99_ms"] for w in windows]),
            "rx_jitter_max_ms": worst("rx_jitter_max_ms"), "rx_gap_max_ms": worst("rx_gap_max_ms"),
            "exec_lateness_p99_ms_worst_window": worst("exec_lateness_p99_ms"),
            "exec_lateness_max_ms": worst("exec_lateness_max_ms"),
            "missed_ticks": sum(missed) if missed else None,
            "generation_errors": sum(w["generation_errors"] for w in windows),
            "generation_restarts": max(0, len(roles.get("generation", {}).get("pids_seen", [])) - 1),
            "load1_min": min(loads) if loads else None, "load1_max": max(loads) if loads else None,
            "processes": roles}
