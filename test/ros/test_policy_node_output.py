"""Policy node over real DDS: output at rate in both modes, lifecycle, configure failure.

One node for the module (one generation child per configure): JointTrajectory first,
then deactivate / cleanup / configure again as forward_command (Float64MultiArray), then
a configure that must fail on a joint-name mismatch. Reliability rows 2, 12, 15.
"""
import time

import numpy as np
import pytest

pytest.importorskip("rclpy")
pytestmark = [
    pytest.mark.ros,
]

from rcl_interfaces.msg import Log  # noqa: E402
from rclpy.parameter import Parameter  # noqa: E402

from genpolicy_ros.ros.policy_node import PolicyNode  # noqa: E402

import policy_node_harness as H  # noqa: E402  (test/ros is on pytest's pythonpath)

DOMAIN_ID = 71
RATE = 100.0
START = np.array([0.25, -0.25])  # distinct per joint: reveals the output order


@pytest.fixture(scope="module")
def env(tmp_path_factory):
    model = H.make_model_dir(tmp_path_factory.mktemp("model") / "flow")
    harness = H.RosHarness(DOMAIN_ID)
    node = PolicyNode(context=harness.context, diagnostics_period_s=0.25, parameter_overrides=[
        Parameter("model_path", value=model), Parameter("control_rate_hz", value=RATE),
        Parameter("backend", value="torch"), Parameter("device", value="cpu")])
    robot = harness.start(node)
    robot.position = START.copy()
    logs = []
    robot.node.create_subscription(Log, "/rosout", lambda m: logs.append(m.msg), 100)
    harness.logs = logs
    yield harness
    harness.close()


def _measure(env, seconds):
    """Commands received over ``seconds`` and the executor's own tick accounting meanwhile."""
    before = env.node.executor_stats()
    window_start = time.monotonic()
    time.sleep(seconds)
    got = env.robot.commands_since(window_start)
    after = env.node.executor_stats()
    ticks = after["ticks"] - before["ticks"]
    missed = after["missed_ticks"] - before["missed_ticks"]
    return got, ticks, missed


def _check_rate(got, ticks, missed, seconds, what):
    """>= 90 % of the expected messages; grid points the loaded machine made the executor
    skip (counted by RateLoop, never replayed) are reported and excused, up to half."""
    expected = seconds * RATE
    report = (f"{len(got)} of {expected:.0f} expected {what} in {seconds} s; executor ran {ticks} ticks, "
              f"skipped {missed} (CPU load)")
    assert len(got) >= 0.9 * (expected - missed), report
    assert len(got) >= 0.5 * expected, report
    assert len(got) >= 0.9 * ticks, report + ": messages lost between publisher and subscriber"
    return report


def _first_command_near_start(robot, t0):
    assert H.wait_for(lambda: robot.commands_since(t0), 15.0), "no command within 15 s of the first observation"
    first = robot.commands_since(t0)[0][1]
    assert np.abs(first - START).max() <= 0.05 + 1e-9, (
        f"first command {first} is not next to the measured start {START} in the model's joint order")


def test_nothing_is_published_before_the_first_observation(env):
    robot = env.robot
    assert robot.transition(H.CONFIGURE), "configure failed"
    assert robot.transition(H.ACTIVATE), "activate failed"
    time.sleep(1.0)
    assert robot.n_commands() == 0, f"{robot.n_commands()} commands published without any observation"
    diag = robot.latest_diag()
    assert diag["state"] == "active" and "no observation yet" in diag["hold_reason"], diag


def test_joint_trajectory_commands_arrive_at_the_control_rate(env):
    robot = env.robot
    t0 = time.monotonic()
    robot.start()
    _first_command_near_start(robot, t0)
    time.sleep(0.3)
    got, ticks, missed = _measure(env, 2.0)
    print(_check_rate(got, ticks, missed, 2.0, "JointTrajectory messages"))
    for _, pos, msg in got:
        assert msg.header.stamp.sec == 0 and msg.header.stamp.nanosec == 0, "stamp must be 0 (start on receipt)"
        assert list(msg.joint_names) == ["shoulder", "elbow"]
        assert len(msg.points) == 1 and len(msg.points[0].velocities) == 2
        tfs = msg.points[0].time_from_start
        assert tfs.sec == 0 and tfs.nanosec == int(1e9 / RATE), f"time_from_start {tfs} != one period"
        assert np.isfinite(pos).all() and np.isfinite(msg.points[0].velocities).all()
    # The debug chunk: strictly increasing time_from_start, stamped with the observation time.
    assert H.wait_for(lambda: len(robot.chunks) > 0, 3.0), "no ~/action_chunk received"
    chunk = robot.chunks[-1]
    times = [p.time_from_start.sec + 1e-9 * p.time_from_start.nanosec for p in chunk.points]
    assert len(times) == 8 and np.all(np.diff(times) > 0), times
    assert chunk.header.stamp.sec > 0


def test_deactivate_publishes_a_final_hold_then_silence(env):
    robot = env.robot
    assert robot.transition(H.DEACTIVATE)
    time.sleep(0.3)
    count = robot.n_commands()
    _, last_pos, last_msg = robot.commands[-1]
    assert list(last_msg.points[0].velocities) == [0.0, 0.0], "the final hold must stand still"
    previous = robot.commands[-2][1]
    assert np.allclose(last_pos, previous), f"final hold {last_pos} moved from the last command {previous}"
    time.sleep(0.5)
    assert robot.n_commands() == count, "inactive node published commands"


def test_configure_again_as_forward_command_in_model_joint_order_with_jitter(env):
    robot = env.robot
    robot.stop()
    assert robot.transition(H.CLEANUP)
    results = robot.set_params(output_mode="forward_command")
    assert results[0].successful, results[0].reason
    robot.clear()
    robot.position = START.copy()
    assert robot.transition(H.CONFIGURE), "second configure failed"
    assert robot.transition(H.ACTIVATE)
    t0 = time.monotonic()
    robot.start()
    _first_command_near_start(robot, t0)
    time.sleep(0.3)
    seconds = 3.0
    got, ticks, missed = _measure(env, seconds)
    rate_report = _check_rate(got, ticks, missed, seconds, "Float64MultiArray messages")
    arrivals = np.array([c[0] for c in got])  # [N] monotonic seconds
    err_ms = np.abs(np.diff(arrivals) - 1.0 / RATE) * 1e3  # [N-1] inter-arrival error
    lat = env.node.executor_stats()
    report = (f"{rate_report}; subscriber inter-arrival error p50 {np.percentile(err_ms, 50):.2f} / "
              f"p99 {np.percentile(err_ms, 99):.2f}"
              f" / max {err_ms.max():.2f} ms (target p99 <= 1 ms on an idle machine); executor lateness p50 "
              f"{lat['lateness_p50_ms']:.2f} / p99 {lat['lateness_p99_ms']:.2f} / max {lat['lateness_max_ms']:.2f} ms")
    print(report)
    for _, pos, msg in got:
        assert len(msg.data) == 2 and np.isfinite(pos).all()
    diag = robot.latest_diag()
    assert int(diag["chunks_total"]) > 0 and diag["generation_errors"] == "0", diag


def test_configure_fails_naming_the_joint_mismatch_and_the_node_stays_alive(env):
    robot = env.robot
    robot.stop()
    assert robot.transition(H.DEACTIVATE)
    assert robot.transition(H.CLEANUP)
    results = robot.set_params(joint_names=["shoulder", "wrist"])
    assert results[0].successful, results[0].reason
    env.logs.clear()
    assert not robot.transition(H.CONFIGURE), "configure must fail when joint_names do not match the model"
    assert H.wait_for(lambda: any("wrist" in m and "elbow" in m for m in env.logs), 3.0), env.logs
    assert env.node.lifecycle_state == "unconfigured"
    # A missing model directory and an unavailable backend fail the same way, with the reason.
    good_path = env.node.get_parameter("model_path").value
    for change, words in ((dict(joint_names=["elbow", "shoulder"], model_path="/nonexistent/model"),
                           ("cannot load the model", "/nonexistent/model")),
                          (dict(model_path=good_path, backend="tensorrt"), ("backend tensorrt", "not available"))):
        assert all(r.successful for r in robot.set_params(**change))
        env.logs.clear()
        assert not robot.transition(H.CONFIGURE), f"configure must fail with {change}"
        assert H.wait_for(lambda: any(all(w in m for w in words) for m in env.logs), 3.0), (words, env.logs)
    # Still alive: fix the parameters and configure works (joint_names in another order is fine).
    assert all(r.successful for r in robot.set_params(backend="torch"))
    assert robot.transition(H.CONFIGURE), "configure after fixing joint_names failed"
    assert robot.transition(H.CLEANUP)
