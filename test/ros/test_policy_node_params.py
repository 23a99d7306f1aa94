"""Policy node parameters through the real SetParameters services (reliability row 13).

★ parameters change behaviour at run time (applied at the next chunk / tick); bad
values are rejected with a reason and nothing is half-applied. A tiny *diffusion* model
(DDIM default, 20 training steps) so that the sampler can change (ddim <-> ddpm).
"""
import math
import time

import numpy as np
import pytest

pytest.importorskip("rclpy")
pytestmark = [
    pytest.mark.ros,
]

from rcl_interfaces.srv import SetParametersAtomically  # noqa: E402
from rclpy.parameter import Parameter  # noqa: E402

from genpolicy_ros.ros.policy_node import PolicyNode  # noqa: E402

import policy_node_harness as H  # noqa: E402  (test/ros is on pytest's pythonpath)

DOMAIN_ID = 74


@pytest.fixture(scope="module")
def env(tmp_path_factory):
    model = H.make_model_dir(tmp_path_factory.mktemp("model") / "diffusion", kind="diffusion", num_train_steps=20)
    harness = H.RosHarness(DOMAIN_ID)
    node = PolicyNode(context=harness.context, diagnostics_period_s=0.2, parameter_overrides=[
        Parameter("model_path", value=model), Parameter("control_rate_hz", value=100.0),
        Parameter("backend", value="torch"), Parameter("device", value="cpu"),
        Parameter("num_steps", value=4)])
    robot = harness.start(node)
    assert robot.transition(H.CONFIGURE) and robot.transition(H.ACTIVATE)
    robot.start()
    assert H.wait_for(lambda: robot.n_commands() > 0, 15.0), "no commands"
    yield harness
    harness.close()


def _diag_until(robot, predicate, timeout=15.0):
    """Wait until a /diagnostics message satisfies ``predicate``; returns the last one seen."""
    seen = {}

    def check():
        seen.update(robot.latest_diag())
        return predicate(seen)

    H.wait_for(check, timeout, period=0.0)
    return seen


def _set(robot, **values):
    result = robot.set_params(**values)[0]
    return result.successful, result.reason


def test_num_steps_and_sampler_change_the_chunks_at_run_time(env):
    robot = env.robot
    d = _diag_until(robot, lambda d: d["chunk_num_steps"] == "4")
    assert d["chunk_num_steps"] == "4" and d["chunk_sampler"] == "ddim", (d["chunk_sampler"], d["chunk_num_steps"])
    lat_small = float(d["latency_p50_ms"])
    assert _set(robot, num_steps=16) == (True, "")
    d = _diag_until(robot, lambda d: d["chunk_num_steps"] == "16")
    assert d["chunk_num_steps"] == "16", d["chunk_num_steps"]
    assert _set(robot, sampler="ddpm") == (True, "")
    d = _diag_until(robot, lambda d: d["chunk_sampler"] == "ddpm")
    assert d["chunk_sampler"] == "ddpm", d["chunk_sampler"]
    print(f"generation latency p50: {lat_small:.1f} ms at 4 DDIM steps, {float(d['latency_p50_ms']):.1f} ms "
          "over the window after switching to 16 steps / DDPM")
    assert _set(robot, sampler="auto") == (True, "")
    d = _diag_until(robot, lambda d: d["chunk_sampler"] == "ddim")
    assert d["chunk_sampler"] == "ddim"


def test_control_rate_change_changes_the_measured_rate(env):
    robot, node = env.robot, env.node

    def measured(seconds=1.0):
        """(commands received by the robot, commands published + grid points the executor
        skipped under CPU load) per second. The second is the executor's grid rate."""
        missed0, published0 = node.executor_stats()["missed_ticks"], node.executor_stats()["published"]
        t = time.monotonic()
        time.sleep(seconds)
        after = node.executor_stats()
        published, missed = after["published"] - published0, after["missed_ticks"] - missed0
        elapsed = time.monotonic() - t  # a busy machine oversleeps
        return len(robot.commands_since(t)) / elapsed, (published + missed) / elapsed

    base, base_grid = measured()
    assert _set(robot, control_rate_hz=50) == (True, "")  # an integer for a double is fine
    time.sleep(0.2)
    slow, slow_grid = measured()
    assert _set(robot, control_rate_hz=100.0) == (True, "")
    report = (f"received {base:.1f} Hz (executor grid {base_grid:.1f} Hz) at 100 Hz, "
              f"{slow:.1f} Hz (grid {slow_grid:.1f} Hz) at 50 Hz")
    print(report)
    assert slow <= 55.0 and 40.0 <= slow_grid <= 56.0, report
    assert base_grid >= 85.0, report


def test_chunk_blending_change_is_applied_at_the_next_chunk(env):
    robot = env.robot
    d = robot.latest_diag()
    assert d["chunk_blending"] == "rtc", d["chunk_blending"]
    assert _set(robot, chunk_blending="ensemble") == (True, "")
    d = _diag_until(robot, lambda d: d["chunk_blending"] == "ensemble")
    assert d["chunk_blending"] == "ensemble"
    assert _set(robot, chunk_blending="none", action_horizon=2) == (True, "")
    d = _diag_until(robot, lambda d: d["chunk_blending"] == "none" and d["action_horizon"] == "2")
    assert (d["chunk_blending"], d["action_horizon"]) == ("none", "2"), d
    assert _set(robot, chunk_blending="rtc", action_horizon=4) == (True, "")


@pytest.mark.parametrize("name, value, why", [
    ("num_steps", 0, ""),  # out of range (descriptor range)
    ("num_steps", "ten", ""),  # wrong type
    ("num_steps", 25, "diffusion training steps"),  # more DDIM steps than the model was trained with
    ("control_rate_hz", math.nan, "nan"),  # refused by the descriptor range or our finiteness check
    ("control_rate_hz", 5000.0, ""),
    ("sampler", "flow", "does not fit"),  # a diffusion model cannot sample flow
    ("sampler", "euler", "not one of"),  # unknown enum
    ("chunk_blending", 3, ""),
    ("model_path", "/elsewhere", "read-only"),  # read-only while configured
    ("output_mode", "forward_command", "read-only"),
])
def test_bad_values_are_rejected_with_a_reason(env, name, value, why):
    node = env.node
    before = node.get_parameter(name).value
    ok, reason = _set(env.robot, **{name: value})
    assert not ok, f"{name}={value!r} was accepted"
    assert reason, f"{name}={value!r} rejected without a reason"
    assert why.lower() in reason.lower(), reason
    assert node.get_parameter(name).value == before


def test_a_batch_with_one_bad_value_is_not_half_applied(env):
    robot, node = env.robot, env.node
    before = node.get_parameter("num_steps").value
    req = SetParametersAtomically.Request()
    req.parameters = [Parameter("num_steps", value=before + 1).to_parameter_msg(),
                      Parameter("guidance_scale", value=-1.0).to_parameter_msg()]
    result = robot.call(SetParametersAtomically, "/genpolicy/set_parameters_atomically", req).result
    assert not result.successful and result.reason
    assert node.get_parameter("num_steps").value == before, "num_steps applied from a rejected batch"


def test_safety_limits_change_at_run_time(env):
    robot = env.robot
    assert _set(robot, max_joint_velocity=0.05) == (True, "")
    # Applied at the next tick; a faster motion comes down to the new limit at the
    # acceleration limit (20 rad/s²: at most 0.1 s from 2 rad/s), never in one step.
    time.sleep(0.3)
    steps = np.abs(np.diff(robot.next_commands(60), axis=0))  # [59, 2] rad per tick
    # 0.05 rad/s at 100 Hz is 5e-4 rad a tick; a skipped tick on a busy machine doubles it.
    assert steps.max() <= 0.05 * 0.01 * 2 + 1e-9, f"largest step {steps.max():.2e} rad"
    assert _set(robot, max_joint_velocity=2.0, max_joint_acceleration=0.5) == (True, "")
    time.sleep(0.1)
    commands = robot.next_commands(80)
    dv = np.abs(np.diff(np.diff(commands, axis=0), axis=0))  # [78, 2] velocity change per tick, rad/tick
    # 0.5 rad/s² at 100 Hz: 5e-5 rad/tick per tick; skipped ticks on a busy machine multiply it.
    assert dv.max() <= 0.5 * 0.01 * 0.01 * 4 + 1e-9, f"largest velocity change {dv.max():.2e} rad/tick"
    assert _set(robot, max_joint_velocity=2.0, max_joint_acceleration=20.0) == (True, "")
    ok, reason = _set(robot, max_joint_acceleration=-1.0)
    assert not ok and reason
