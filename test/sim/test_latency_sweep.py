"""The slow-model sweep's logic: cells and the action-horizon rule, eval command lines, the
figures of one cell (seam sizes, delay measured vs used, real-time check), table and plot.
No ROS and no simulation: the eval documents are built here."""
import json
import math
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from genpolicy_ros.sim.eval_results import delay_summary, plan_seams, seam_smoothness
from genpolicy_ros.sim.latency_sweep import (
    MODES,
    Cell,
    action_horizon_for,
    cell_summary,
    cells,
    eval_command,
    format_table,
    model_horizon,
    plot_success,
    sweep_document,
    wilson_interval,
)

REACH = str(Path(__file__).resolve().parents[2] / "models" / "reach_flow")


# --------------------------------------------------------------------------- cells
@given(latency=st.floats(0.0, 2000.0), dt=st.sampled_from([0.02, 0.05, 0.1]),
       t_a=st.integers(1, 16), extra=st.integers(0, 48))
def test_action_horizon_covers_two_latencies_or_is_capped(latency, dt, t_a, extra):
    t_p = t_a + extra
    got = action_horizon_for(latency, dt, t_a, t_p)
    assert t_a <= got <= t_p
    if got < t_p:  # not capped: the executable rows outlast two back-to-back generations
        assert got * dt * 1e3 >= 2.0 * latency + 3 * dt * 1e3 - 1e-6
        # ... and it is the smallest such horizon (or the model's own)
        assert got == t_a or (got - 1) * dt * 1e3 < 2.0 * latency + 3 * dt * 1e3 + 1e-6


def test_action_horizon_rejects_nonsense():
    with pytest.raises(ValueError, match="bad arguments"):
        action_horizon_for(100.0, 0.0, 8, 16)
    with pytest.raises(ValueError, match="bad arguments"):
        action_horizon_for(100.0, 0.05, 8, 4)


def test_cells_are_latency_major_and_share_the_horizon_across_modes():
    todo = cells([REACH], list(MODES), [0.0, 300.0])
    assert [c.latency_ms for c in todo] == [0.0] * 4 + [300.0] * 4
    assert [c.mode for c in todo[:4]] == list(MODES)
    h = model_horizon(REACH)
    assert {c.action_horizon for c in todo[:4]} == {h["T_a"]}  # 0 ms: the model's own
    assert {c.action_horizon for c in todo[4:]} == {action_horizon_for(300.0, h["dt"], h["T_a"], h["T_p"])}
    assert todo[4].action_horizon > h["T_a"]
    assert {c.action_horizon for c in cells([REACH], ["none"], [300.0], "model")} == {None}
    assert {c.action_horizon for c in cells([REACH], ["none"], [300.0], "12")} == {12}
    assert len({c.name for c in todo}) == len(todo)


def test_cell_validates():
    with pytest.raises(ValueError, match="mode"):
        Cell(REACH, "rtc", 50.0)
    with pytest.raises(ValueError, match="latency_ms"):
        Cell(REACH, "none", -1.0)
    with pytest.raises(ValueError, match="action_horizon"):
        Cell(REACH, "none", 0.0, 0)
    with pytest.raises(ValueError, match="horizon"):
        model_horizon(str(Path(REACH).parent))  # no config.json there


def test_eval_command_names_mode_latency_and_horizon():
    cmd = eval_command(Cell(REACH, "rtc-guided", 150.0, 11), 7, "/tmp/x.json", seed=3)
    assert cmd[:3] == ["genpolicy", "eval", REACH]
    joined = " ".join(cmd)
    for part in ("--episodes 7", "--seed 3", "--chunk-blending rtc --rtc-mode guided", "--emulate-latency-ms 150",
                 "--action-horizon 11", "--json /tmp/x.json"):
        assert part in joined
    plain = eval_command(Cell(REACH, "none", 0.0), 5, "y.json")
    assert "--emulate-latency-ms" not in plain and "--action-horizon" not in plain  # off = the node's default


def test_wilson_interval():
    lo, hi = wilson_interval(10, 20)
    assert lo < 0.5 < hi and 0.0 <= lo and hi <= 1.0
    lo_all, hi_all = wilson_interval(20, 20)
    assert hi_all == pytest.approx(1.0) and lo_all < 1.0  # 20/20 does not prove 100 %
    assert wilson_interval(200, 400)[1] - wilson_interval(200, 400)[0] < hi - lo  # more episodes: narrower
    assert wilson_interval(0, 0) == (0.0, 1.0)


# --------------------------------------------------------------------------- eval figures
def test_seam_smoothness_sees_a_step_at_the_seam_and_not_a_smooth_join():
    t = np.arange(300) * 0.01
    smooth = np.sin(t)[:, None]  # [300, 1]
    stepped = smooth.copy()
    stepped[150:] += 0.05  # a 5 cm jump where a chunk took over
    flat = seam_smoothness([(smooth, [150])], 0.01)
    jump = seam_smoothness([(stepped, [150])], 0.01)
    assert flat["n_seams"] == jump["n_seams"] == 1
    assert flat["ratio_max"] == pytest.approx(1.0, abs=0.1)  # the seam moves like the chunk
    assert jump["ratio_max"] > 50 * flat["ratio_max"]
    assert seam_smoothness([(smooth, [])], 0.01)["ratio_max"] is None  # no seam, no ratio


def test_delay_summary_converts_units_and_reads_the_used_delay():
    reports = [{"rtc_delay_rows": "None", "idle_ticks_total": "0"},
               {"rtc_delay_rows": "7", "rtc_delay_latency_ms": "310.0", "idle_ticks_total": "0"},
               {"rtc_delay_rows": "8", "rtc_delay_latency_ms": "360.0", "idle_ticks_total": "3"}]
    d = delay_summary(reports, [300.0, 320.0, 340.0], dt_s=0.05, control_rate_hz=100.0)
    assert d["measured_ms"]["p50"] == pytest.approx(320.0)
    assert d["measured_rows"]["p50"] == pytest.approx(6.4) and d["measured_periods"]["p50"] == pytest.approx(32.0)
    assert d["used_rows"] == {"p50": 7.5, "max": 8.0}
    assert d["used_estimate_ms"]["max"] == pytest.approx(360.0)
    assert d["idle_ticks"] == 3
    none = delay_summary([{"idle_ticks_total": "0"}], [], 0.05, 100.0)
    assert none["used_rows"] == {"p50": None, "max": None} and none["measured_ms"]["p50"] is None


def test_plan_seams_ratio_of_jump_to_row_step():
    reports = [{"seams_total": "0"}, {"seams_total": "12", "seam_jump_mean": "0.02", "seam_jump_max": "0.05",
                                      "seam_row_step_mean": "0.04"}, {"seams_total": "None"}]
    got = plan_seams(reports)
    assert got["plan_seams"] == 12 and got["seam_jump_ratio"] == pytest.approx(0.5)
    assert plan_seams([])["seam_jump_ratio"] is None


# --------------------------------------------------------------------------- one cell, table, plot
def eval_doc(successes, n, walls, late=0, idle=0):
    return {"settings": {"episode_s": 3.0, "control_rate_hz": 100.0, "task": "reach", "action_horizon_effective": "15",
                         "chunk_blending": "rtc", "rtc_prefix_mode": "hard", "emulate_latency_ms": 300.0},
            "per_episode": [{"success": i < successes, "wall_duration_s": walls[i % len(walls)]} for i in range(n)],
            "sim_stats": {"late_ticks": late}, "latency_ms": {"p50": 306.0},
            "seams": {"seam_jump_ratio": 0.4, "seam_jump_mean": 0.01, "seam_jump_max": 0.1, "ratio_p50": 1.0},
            "delay": {"idle_ticks": idle, "measured_rows": {"p50": 6.4, "p95": 6.6}, "used_rows": {"p50": 7, "max": 7}},
            "policy_diagnostics": {"holds_total": 0}, "machine": {}}


def test_cell_summary_and_real_time_check():
    cell = Cell(REACH, "rtc-hard", 300.0, 15)
    s = cell_summary(cell, eval_doc(15, 20, [3.0, 3.01]))
    assert (s["successes"], s["episodes"], s["success_rate"]) == (15, 20, 0.75)
    assert s["latency_periods"] == 30.0 and s["action_horizon"] == "15"
    assert s["success_ci95"][0] < 0.75 < s["success_ci95"][1]
    assert s["real_time"] and s["sim_real_time_factor_min"] == pytest.approx(3.0 / 3.01, abs=1e-4)
    lagged = cell_summary(cell, eval_doc(15, 20, [3.0, 3.6], late=40))
    assert not lagged["real_time"] and lagged["sim_late_ticks"] == 40  # the robot's clock ran slow
    assert lagged["episodes_sim_lagged"] == 10
    assert lagged["sim_real_time_factor_min"] == pytest.approx(3.0 / 3.6, abs=1e-4)
    empty = cell_summary(cell, {"settings": {}, "per_episode": []})
    assert empty["success_rate"] is None and not empty["real_time"]


def test_table_and_document(tmp_path):
    rows = [cell_summary(Cell(REACH, mode, lat, 8), eval_doc(k, 10, [3.0]))
            for lat, k in ((0.0, 10), (300.0, 4)) for mode in ("none", "rtc-hard")]
    table = format_table(rows).splitlines()
    assert len(table) == 2 + len(rows)
    assert all(line.count("|") == table[0].count("|") for line in table)
    assert "| 4/10 (" in table[-1] and "rtc-hard" in table[-1]
    doc = sweep_document(rows, ["python scripts/latency_sweep.py x"], seed=0)
    assert doc["episodes_per_cell"] == [10] and len(doc["cells"]) == 4
    json.dumps(doc, allow_nan=False)  # the sweep JSON is strict JSON


def test_plot_writes_one_panel_per_model(tmp_path):
    import matplotlib.image as mpimg

    rows = [cell_summary(Cell(m, mode, lat, 8), eval_doc(k, 10, [3.0]))
            for m in (REACH, "models/obstacle_flow") for lat, k in ((0.0, 9), (150.0, 5)) for mode in MODES]
    path = plot_success(rows, str(tmp_path / "plot.png"), title="t")
    img = mpimg.imread(path)  # [H, W, 4]
    assert img.shape[1] > 1.3 * img.shape[0]  # two columns of panels side by side
    assert not math.isclose(float(img[..., :3].std()), 0.0)  # something was drawn
