"""The demo/eval picture and table work on eval documents, obstacle runs included."""
import math

import numpy as np
import pytest

from genpolicy_ros.sim.reach_env import FINGERTIP_RADIUS, obstacle_position, obstacle_task
from genpolicy_ros.sim.report import format_table, plot_trajectories


def _doc(obstacle: bool, collided: bool) -> dict:
    target = [0.12, 0.13]
    post = obstacle_position(np.array(target), obstacle_task())
    # A straight path from beside the target through the post's centre to the target.
    start = post + np.array([0.05, 0.05])
    path = [list(start + s * (post - start)) for s in np.linspace(0, 1, 20)] + [target]
    episode = {"episode": 0, "seed": 0, "success": not collided, "mode": "elbow_up", "final_distance": 0.0,
               "target": target, "fingertip": path, "collided": collided}
    return {"model": "models/x", "sampler": "flow", "num_steps": 10, "episodes": 1,
            "success_rate": 0.0 if collided else 1.0, "mode_histogram": {"elbow_up": 1, "elbow_down": 0, "between": 0},
            "latency_ms": {"p50": 10.0, "p95": 12.0}, "command_jitter_ms": {"p99": 1.0},
            "per_episode": [episode], "settings": {"obstacle": obstacle}}


def test_obstacle_runs_draw_posts_and_mark_the_first_contact(tmp_path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    shown = {}
    real_savefig = plt.Figure.savefig

    def capture(fig, *a, **k):  # look at what was drawn before the file is written
        shown["axes"] = fig.axes
        return real_savefig(fig, *a, **k)

    mp = pytest.MonkeyPatch()
    mp.setattr(plt.Figure, "savefig", capture)
    try:
        png = plot_trajectories([_doc(False, False), _doc(True, True)], tmp_path / "demo.png")
    finally:
        mp.undo()
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    plain, obstacle = shown["axes"][:2]
    task = obstacle_task()
    circles = [p for p in obstacle.patches if math.isclose(getattr(p, "radius", 0), task.obstacle_size)]
    assert len(circles) == 1 and not any(math.isclose(getattr(p, "radius", 0), task.obstacle_size)
                                         for p in plain.patches)
    rings = [ln for ln in obstacle.lines if ln.get_markeredgecolor() == "red"]
    assert len(rings) == 1, "one collision ring expected"
    x, y = rings[0].get_xdata()[0], rings[0].get_ydata()[0]
    post = circles[0].center
    assert math.hypot(x - post[0], y - post[1]) < task.obstacle_size + FINGERTIP_RADIUS
    assert "models/x" not in format_table([_doc(True, True)]) and "x (flow-10)" in format_table([_doc(True, True)])


def _aloha_doc(name: str, outcomes) -> dict:
    """An eval document of a staged task; ``outcomes``: (grasped, lifted, transferred, benchmark) per episode."""
    from genpolicy_ros.sim.aloha.success import MODES
    from genpolicy_ros.sim.eval_results import EpisodeRecord, stage_statistics

    records = [EpisodeRecord(episode=i, seed=i, success=t, mode="success" if t else "dropped", final_distance=None,
                             target=[], fingertip=[], commands=100, nonfinite_commands=0, wall_duration_s=8.0,
                             stages={"grasped": g, "lifted": lf, "transferred": t}, benchmark_success=b)
               for i, (g, lf, t, b) in enumerate(outcomes)]
    rates, bench = stage_statistics(records)
    n = len(records)
    hist = {m: sum(r.mode == m for r in records) for m in MODES}
    return {"model": f"models/{name}", "sampler": "flow", "num_steps": 10, "episodes": n,
            "success_rate": sum(r.success for r in records) / n, "mode_histogram": hist,
            "latency_ms": {"p50": 40.0, "p95": 60.0}, "command_jitter_ms": {"p99": 2.0},
            "per_episode": [vars(r) for r in records], "settings": {"modes": list(MODES)},
            "stage_rates": rates, "benchmark_success_rate": bench}


def test_a_staged_task_reports_stage_rates_not_elbow_modes(tmp_path):
    doc = _aloha_doc("aloha_state_flow", [(True, True, True, True), (True, True, False, True),
                                          (True, False, False, False), (False, False, False, False)])
    assert doc["stage_rates"] == {"grasped": 0.75, "lifted": 0.5, "transferred": 0.25}
    assert doc["benchmark_success_rate"] == 0.5
    table = format_table([doc])
    header, _, row = table.splitlines()
    assert header.split()[3:7] == ["grasped", "lifted", "transferred", "benchmark"] and "elbow" not in table
    assert row.split()[:9] == ["aloha_state_flow", "(flow-10)", "4", "25.0", "%", "75", "%", "50", "%"]
    # reach and ALOHA runs together: one table per outcome shape, each with its own columns
    both = format_table([_doc(False, False), doc]).split("\n\n")
    assert len(both) == 2 and "elbow up" in both[0] and "grasped" in both[1] and "grasped" not in both[0]
    from genpolicy_ros.sim.report import plot_stages

    png = plot_stages([doc, doc], tmp_path / "stages.png", titles=["a", "b"])
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_stage_statistics_of_a_task_without_stages_is_empty():
    from genpolicy_ros.sim.eval_results import EpisodeRecord, stage_statistics

    plain = [EpisodeRecord(episode=0, seed=0, success=True, mode="elbow_up", final_distance=0.0, target=[0, 0],
                           fingertip=[], commands=1, nonfinite_commands=0, wall_duration_s=3.0)]
    assert stage_statistics(plain) == ({}, None)
