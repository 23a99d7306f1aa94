"""`genpolicy replay`: lockstep bag replay is deterministic (same bag + seed → same actions).

A 1-second bag of JointState at 100 Hz (the arm sweeping slowly, fixed target) is
synthesised with BagWriter; a tiny random-weight model is replayed on it three times.
"""
import math
import os

import numpy as np
import pytest

pytest.importorskip("rclpy")
pytestmark = pytest.mark.ros

from sensor_msgs.msg import JointState  # noqa: E402

from genpolicy_ros.cli import main as cli_main  # noqa: E402
from genpolicy_ros.data.bags import BagWriter  # noqa: E402
from genpolicy_ros.ros.replay import (  # noqa: E402
    CHUNK_TOPIC,
    COMMAND_TOPICS,
    ReplayConfig,
    compare_bags,
    output_sequences,
    replay_bag,
)

import policy_node_harness as H  # noqa: E402  (test/ros is on pytest's pythonpath)

DOMAIN_ID = 40 + os.getpid() % 20  # 40..59: clear of the other suites (71..199) and test_eval (207..226)
T0_NS = 5_000_000_000  # bag time starts at 5 s
RATE_HZ = 100


def _write_bag(path, seconds: float = 1.0):
    with BagWriter(path) as bag:
        bag.add_topic("/joint_states", JointState)
        for k in range(int(seconds * RATE_HZ)):
            t = T0_NS + k * 10_000_000
            q = [0.2 + 0.3 * math.sin(0.5 * k / RATE_HZ), -0.1 + 0.2 * k / RATE_HZ, *H.TARGET]
            msg = JointState(name=list(H.STATE_NAMES), position=q)
            msg.header.stamp.sec, msg.header.stamp.nanosec = divmod(t, 1_000_000_000)
            bag.write("/joint_states", msg, t)
    return str(path)


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    root = tmp_path_factory.mktemp("replay")
    model = H.make_model_dir(root / "model", T_p=8, T_a=4)
    bag = _write_bag(root / "in_bag")
    outs = {}
    for name, seed in (("a", 0), ("b", 0), ("c", 1)):
        cfg = ReplayConfig(bag=bag, model_dir=model, out=str(root / f"out_{name}"), seed=seed,
                           domain_id=DOMAIN_ID)
        outs[name] = replay_bag(cfg)
    return outs


def test_replay_plays_the_bag_and_records_the_node(runs):
    a = runs["a"]
    assert a.steps == 100 and a.played == {"/joint_states": 100}
    command = COMMAND_TOPICS["joint_trajectory"]
    # Commands start once T_o observations and the first chunk exist, then one per step.
    assert 80 <= a.recorded[command] <= 100, a.recorded
    assert a.recorded[CHUNK_TOPIC] == a.chunks_requested >= 3, (a.recorded, a.chunks_requested)
    seqs = output_sequences(a.out)
    chunks = np.stack(seqs[CHUNK_TOPIC]["values"])  # [n_chunks, T_p * 2]
    assert np.isfinite(chunks).all()
    stamps = seqs[CHUNK_TOPIC]["stamps"]
    # Chunks are stamped with bag times (header stamps of the observations), increasing.
    assert stamps == sorted(stamps) and T0_NS <= stamps[0] and stamps[-1] <= T0_NS + 1_000_000_000, stamps


def test_same_seed_same_actions_other_seed_differs(runs):
    same = compare_bags(runs["a"].out, runs["b"].out)
    chunks = same["topics"][CHUNK_TOPIC]
    assert chunks["identical"] and chunks["count_a"] > 0 and chunks["max_abs_diff"] == 0.0, same
    # Commands: bit-identical where both recordings have them. Known weakness: on a loaded
    # machine the recorder has been seen to miss one command (96 vs 95), so the counts may
    # differ by one; the policy's actions (chunks) above must match exactly.
    commands = same["topics"][COMMAND_TOPICS["joint_trajectory"]]
    assert commands["max_abs_diff"] == 0.0 and commands["stamps_equal"], commands
    assert abs(commands["count_a"] - commands["count_b"]) <= 1 and commands["count_a"] > 50, commands
    other = compare_bags(runs["a"].out, runs["c"].out)
    assert not other["identical"]
    assert other["topics"][CHUNK_TOPIC]["max_abs_diff"] > 1e-3, other["topics"][CHUNK_TOPIC]


def test_cli_compare_only(runs, capsys):
    assert cli_main(["replay", runs["a"].out, "--compare-only", "--compare", runs["a"].out]) == 0
    assert cli_main(["replay", runs["a"].out, "--compare-only", "--compare", runs["c"].out]) == 3
    assert "DIFFERENT" in capsys.readouterr().err


def test_config_refuses_a_measured_delay_and_existing_output(runs, tmp_path):
    model = H.make_model_dir(tmp_path / "m")
    bag = _write_bag(tmp_path / "bag", seconds=0.1)
    with pytest.raises(ValueError, match="inference_delay_steps"):
        ReplayConfig(bag=bag, model_dir=model, out=str(tmp_path / "o"), inference_delay_steps=-1)
    with pytest.raises(ValueError, match="exists already"):
        ReplayConfig(bag=bag, model_dir=model, out=runs["a"].out)
