"""Soak statistics on synthetic samples (runtime/bench/soak_stats.py, proc_stats.py, the
table and the plot of runtime/bench/soak.py): windows, gaps, counters, growth — no timing."""
import json
import os

import numpy as np
import pytest

from genpolicy_ros.runtime.bench import proc_stats
from genpolicy_ros.runtime.bench.soak import format_soak_table, plot_soak
from genpolicy_ros.runtime.bench.soak_stats import SoakRecorder, soak_summary, soak_windows, window_bounds

PERIOD = 0.01


def test_window_bounds_cover_the_span_and_merge_a_sliver():
    assert window_bounds(0.0, 30.0, 10.0) == [(0.0, 10.0), (10.0, 20.0), (20.0, 30.0)]
    assert window_bounds(0.0, 25.0, 10.0)[-1] == (20.0, 25.0)  # a short last window stays
    assert window_bounds(0.0, 20.5, 10.0) == [(0.0, 10.0), (10.0, 20.5)]  # a sliver joins the previous one
    assert window_bounds(5.0, 6.0, 10.0) == [(5.0, 6.0)]
    for bad in (dict(start=0.0, end=10.0, window_s=0.0), dict(start=3.0, end=3.0, window_s=1.0),
                dict(start=0.0, end=1.0, window_s=float("nan"))):
        with pytest.raises(ValueError):
            window_bounds(**bad)


def _commands(recorder, t_arrival, rx_s, finite=None):
    for k, (t, rx) in enumerate(zip(t_arrival, rx_s)):
        ok = True if finite is None else finite[k]
        recorder.add_command(float(t), None if rx is None else int(round(rx * 1e9)), ok)


def test_command_statistics_per_window_on_receive_stamps():
    rec = SoakRecorder()
    # 0..2 s at 100 Hz on the middleware clock; one late command at 0.5 s (gap 14 ms then 6 ms);
    # the probe's own arrival clock is offset and noisy (must not be used when rx stamps exist).
    rx = np.arange(200) * PERIOD + 1000.0  # [200]
    rx[50] += 0.004
    arrival = np.arange(200) * PERIOD + 0.0002 * (np.arange(200) % 3)  # [200]
    finite = [k != 150 for k in range(200)]
    _commands(rec, arrival, rx, finite)
    w = soak_windows(rec, 0.0, 2.0, 1.0, PERIOD)
    assert [x["commands"] for x in w] == [100, 100]
    assert w[0]["rx_clock"] == "middleware"
    assert w[0]["rx_jitter_max_ms"] == pytest.approx(4.0, abs=1e-6)
    assert w[0]["rx_gap_max_ms"] == pytest.approx(14.0, abs=1e-6)
    assert w[0]["rx_jitter_p50_ms"] == pytest.approx(0.0, abs=1e-6)
    # Window 1's first gap (command 100) spans the boundary and counts there: all 100 gaps are exact.
    assert w[1]["rx_jitter_max_ms"] == pytest.approx(0.0, abs=1e-6)
    assert (w[0]["nonfinite"], w[1]["nonfinite"]) == (0, 1)
    assert w[0]["commands_per_s"] == pytest.approx(100.0)


def test_without_receive_stamps_the_arrival_clock_is_used():
    rec = SoakRecorder()
    _commands(rec, [0.0, 0.01, 0.03], [None, None, None])
    w = soak_windows(rec, 0.0, 1.0, 1.0, PERIOD)[0]
    assert w["rx_clock"] == "probe_callback"
    assert w["rx_jitter_max_ms"] == pytest.approx(10.0)


def test_diagnostics_counters_increase_per_window_and_peaks_are_the_largest_report():
    rec = SoakRecorder()
    reports = [(0.2, 0, 10, 1.0, 2.0), (0.8, 3, 14, 5.0, 9.0), (1.2, 3, 18, 2.0, 3.0), (1.9, 7, 22, 1.5, 4.0)]
    for t, missed, chunks, p99, mx in reports:
        rec.add_diagnostics(t, {"executor_missed_ticks": str(missed), "chunks_total": chunks,
                                "executor_lateness_p99_ms": p99, "executor_lateness_max_ms": mx,
                                "holds": "2", "latency_p95_ms": "None"})  # /diagnostics values are strings
    w = soak_windows(rec, 0.0, 2.0, 1.0, PERIOD)
    assert w[0]["missed_ticks"] == 3 and w[1]["missed_ticks"] == 4  # 7 - 3: from the last report before
    assert w[0]["chunks_per_s"] == pytest.approx(4.0) and w[1]["chunks_per_s"] == pytest.approx(8.0)
    assert (w[0]["exec_lateness_p99_ms"], w[0]["exec_lateness_max_ms"]) == (5.0, 9.0)
    assert w[1]["exec_lateness_max_ms"] == 4.0
    assert w[0]["holds"] == 4.0 and w[0]["generation_p95_ms"] is None and w[0]["diagnostics"] == 2


def _snap(rss_mib, fds, threads, cpu_s, pid):
    return {"rss_kib": int(rss_mib * 1024), "fds": fds, "threads": threads, "cpu_s": cpu_s, "pids": [pid]}


def test_process_windows_and_the_summary_show_growth_and_slope():
    rec = SoakRecorder()
    for k in range(120):  # 2 minutes at 1 Hz: the node leaks 0.5 MiB/min, the child is flat
        t = float(k)
        node = _snap(300.0 + 0.5 * t / 60.0, 27 + (k >= 60), 19, 0.2 * t, pid=10)
        gen = _snap(450.0, 15, 3, 0.5 * t, pid=11 if k < 90 else 12)  # restarted at 90 s
        rec.add_processes(t, {"node": node, "generation": gen}, load1=2.0 + k / 120.0)
    _commands(rec, np.arange(0, 120, 0.01), [None] * 12000)
    windows = soak_windows(rec, 0.0, 120.0, 60.0, PERIOD)
    w0, w1 = windows
    assert w0["processes"]["node"]["fds"] == 27 and w1["processes"]["node"]["fds"] == 28
    assert w0["processes"]["node"]["cpu_percent"] == pytest.approx(20.0)
    assert w1["processes"]["generation"]["cpu_percent"] is None  # its pid changed inside the window
    assert w1["processes"]["generation"]["pids"] == [11, 12]
    assert w0["load1"] == pytest.approx(2.0 + 29.5 / 120.0)
    s = soak_summary(windows, rec, 0.0, 120.0)
    node = s["processes"]["node"]
    assert node["rss_growth_mib"] == pytest.approx(0.5, abs=0.01)
    assert node["rss_slope_mib_per_min"] == pytest.approx(0.5, abs=0.01)
    assert s["processes"]["generation"]["rss_slope_mib_per_min"] == pytest.approx(0.0, abs=1e-6)
    assert (node["fds_first"], node["fds_last"]) == (27, 28)
    assert s["generation_restarts"] == 1 and s["commands"] == 12000 and s["nonfinite_commands"] == 0
    section = {"model": "/m/reach_image_flow", "settings": {"rate_hz": 100.0, "window_s": 60.0},
               "windows": windows, "summary": s}
    json.dumps(section, allow_nan=False)  # plain JSON
    table = format_soak_table(section)
    assert table.count("\n") >= 4 and "growth +0.50 MiB" in table and "fds 27 -> 28" in table


def test_soak_plot_is_written(tmp_path):
    pytest.importorskip("matplotlib")
    rec = SoakRecorder()
    for k in range(30):
        rec.add_processes(float(k), {"node": _snap(300.0, 27, 19, 0.1 * k, 1)}, load1=None)
    _commands(rec, np.arange(0, 30, 0.01), [None] * 3000)
    windows = soak_windows(rec, 0.0, 30.0, 10.0, PERIOD)
    section = {"model": "m", "settings": {"rate_hz": 100.0, "window_s": 10.0}, "windows": windows,
               "summary": soak_summary(windows, rec, 0.0, 30.0)}
    path = plot_soak(section, tmp_path)
    assert path.name == "soak.png" and path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_proc_stats_reads_this_process_and_classifies_roles():
    snap = proc_stats.tree_snapshot(os.getpid())
    me = snap["node"]  # the root's role
    assert me["pids"] == [os.getpid()] and me["rss_kib"] > 1000 and me["fds"] >= 3 and me["threads"] >= 1
    assert me["cpu_s"] > 0
    assert proc_stats.role_of("python -c from multiprocessing.spawn import spawn_main", False) == "generation"
    assert proc_stats.role_of("python -c from multiprocessing.resource_tracker import main", False) == \
        "resource_tracker"
    assert proc_stats.role_of("python -m genpolicy_ros.cli node", True) == "node"
    assert proc_stats.process_info(2**22 + 12345) is None  # no such process


def _soak_args(tmp_path):
    import argparse

    return argparse.Namespace(model=str(tmp_path), soak_seconds=3.0, soak_window_s=1.0, rate=100.0,
                              executor_backend="auto", ros_output_mode="forward_command")


def test_a_crashed_measuring_process_runs_once_more_and_is_recorded(tmp_path, monkeypatch):
    """One SIGSEGV of the probe process: the soak runs again and the section says so; two: it fails
    naming the signal. A plain error exit is not retried."""
    import subprocess
    import types

    from genpolicy_ros.runtime.bench import soak

    monkeypatch.setattr("importlib.util.find_spec", lambda name: object())
    outcomes, calls = [], []

    def fake_run(cmd, **kw):
        calls.append(cmd)
        code = outcomes.pop(0)
        if code == 0:
            out = cmd[cmd.index("--json") + 1]
            with open(out, "w") as f:
                json.dump({"windows": [], "summary": {}}, f)
        return types.SimpleNamespace(returncode=code)

    monkeypatch.setattr(subprocess, "run", fake_run)
    outcomes[:] = [-11, 0]
    section, why = soak.measure_soak(_soak_args(tmp_path))
    assert why == "" and section["crashed_attempts"] == ["SIGSEGV"] and len(calls) == 2
    assert "-X" in calls[0] and "faulthandler" in calls[0]
    outcomes[:], calls[:] = [-11, -6], []
    section, why = soak.measure_soak(_soak_args(tmp_path))
    assert section is None and "died of SIGABRT" in why and len(calls) == 2
    outcomes[:], calls[:] = [2], []
    section, why = soak.measure_soak(_soak_args(tmp_path))
    assert section is None and "exit 2" in why and len(calls) == 1
    outcomes[:] = [0]
    section, _ = soak.measure_soak(_soak_args(tmp_path))
    assert section["crashed_attempts"] == []
