"""`genpolicy eval` plumbing: a short closed loop over real topics, and the JSON schema.

A tiny random-weight model (skill is not the point here) drives the MuJoCo sim node
through a `genpolicy node` child process on its own ROS domain: two 1-second episodes.
"""
import json
import math
import os

import pytest

pytest.importorskip("rclpy")
from genpolicy_ros.sim.reach_env import ensure_headless_gl  # noqa: E402

ensure_headless_gl()  # before the first `import mujoco`
pytest.importorskip("mujoco")
pytestmark = pytest.mark.ros

from genpolicy_ros.sim import evaluation as E  # noqa: E402
from genpolicy_ros.sim.report import format_table, plot_trajectories  # noqa: E402

import policy_node_harness as H  # noqa: E402  (test/ros is on pytest's pythonpath)

DOMAIN_ID = 207 + os.getpid() % 20  # 207..226: clear of the other suites (71..199) and test_replay


@pytest.fixture(scope="module")
def result(tmp_path_factory):
    model = H.make_model_dir(tmp_path_factory.mktemp("model") / "flow", T_p=8, T_a=4, target_input=True)
    return E.run_episodes(model, episodes=2, seed=3, episode_s=1.0, domain_id=DOMAIN_ID, progress=False,
                          backend="torch", device="cpu")


def test_closed_loop_episodes_produce_a_valid_result(result):
    doc = json.loads(result.to_json())
    assert E.check_schema(doc) == [], E.check_schema(doc)
    assert doc["episodes"] == 2 and len(doc["per_episode"]) == 2
    assert doc["kind"] == "flow" and doc["sampler"] == "flow" and doc["num_steps"] == 10
    # Episodes 1 and 2 of the sim with seed 3 (episode 0 is cut by the first reset).
    assert [ep["seed"] for ep in doc["per_episode"]] == [3 * 100_003 + 1, 3 * 100_003 + 2]
    for ep in doc["per_episode"]:
        # 1 s of simulated time; wall time is longer when the loaded machine slows the sim down.
        assert ep["wall_duration_s"] >= 0.99, ep["wall_duration_s"]
        assert ep["commands"] > 20, f"only {ep['commands']} commands in a 1 s episode at 100 Hz"
        assert ep["nonfinite_commands"] == 0
        assert len(ep["fingertip"]) >= 15, len(ep["fingertip"])  # 20 Hz path samples
        assert all(math.isfinite(v) for xy in ep["fingertip"] for v in xy)
    assert doc["commands"]["received"] == sum(ep["commands"] for ep in doc["per_episode"])
    assert doc["commands"]["nonfinite"] == 0
    assert doc["settings"]["chunk_blending"] == "rtc", doc["settings"]  # the node's default, as it reported
    assert doc["policy_diagnostics"]["reports"] >= 1 and doc["policy_diagnostics"]["non_finite_total"] == 0
    assert doc["latency_ms"]["p50"] is not None and doc["latency_ms"]["p50"] > 0, doc["latency_ms"]
    assert doc["chunk_age_ms"]["p50"] is not None and doc["chunk_age_ms"]["p50"] > 0, doc["chunk_age_ms"]
    assert doc["command_jitter_ms"]["p50"] is not None, doc["command_jitter_ms"]
    # Commands arrive at ~100 Hz: the median inter-arrival error is well below a period.
    assert doc["command_jitter_ms"]["p50"] < 10.0, doc["command_jitter_ms"]


def test_schema_check_finds_problems(result):
    doc = json.loads(result.to_json())
    bad = dict(doc, episodes=3)
    assert any("per_episode" in p for p in E.check_schema(bad))
    bad = dict(doc, mode_histogram={"elbow_up": 2})
    assert E.check_schema(bad)
    bad = dict(doc, latency_ms={"p50": float("nan"), "p95": 1.0, "max": 1.0})
    assert any("latency_ms.p50" in p for p in E.check_schema(bad))
    bad = {k: v for k, v in doc.items() if k != "machine"}
    assert E.check_schema(bad) == ["missing key 'machine'"]


def test_report_table_and_picture(result, tmp_path):
    doc = result.to_dict()
    table = format_table([doc, doc])
    assert table.count("\n") == 3 and "success" in table and "jitter p99" in table
    png = plot_trajectories([doc, doc], tmp_path / "demo.png")
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 10_000


def test_config_validation(tmp_path):
    with pytest.raises(ValueError, match="not a model directory"):
        E.EvalConfig(model_dir=str(tmp_path))
    model = H.make_model_dir(tmp_path / "m", target_input=True)
    for bad in (dict(episodes=0), dict(sampler="euler"), dict(output_mode="x"), dict(rate_factor=0.0),
                dict(chunk_blending="avg"), dict(domain_id=300)):
        with pytest.raises(ValueError):
            E.EvalConfig(model_dir=model, **bad)
    cmd = E.policy_node_command(E.EvalConfig(model_dir=model, num_steps=4, sampler="flow"))
    assert cmd[cmd.index("--ros-args") - 1] == "node" and "num_steps:=4" in cmd and "sampler:=flow" in cmd
