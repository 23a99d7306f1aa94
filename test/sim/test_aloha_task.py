"""The registry's ALOHA entry (``aloha_transfer_cube``): names, limits, the pose input, the
camera, the defaults the verbs read, and an episode driven the way ``genpolicy collect``'s
driver drives it (expert started from the first observation, vectorised ``action``)."""
import numpy as np
import pytest

from genpolicy_ros.sim.aloha import robot
from genpolicy_ros.sim.aloha.assets import assets_available
from genpolicy_ros.sim.node_params import SimParams
from genpolicy_ros.tasks import get_task, task_names

TASK = get_task("aloha_transfer_cube")
needs_assets = pytest.mark.skipif(not assets_available(), reason="gym-aloha assets are not installed (make install)")


def test_registry_entry_names_joints_limits_inputs_and_camera():
    assert "aloha_transfer_cube" in task_names()
    assert TASK.joint_names == TASK.action_names == robot.JOINT_NAMES and len(TASK.joint_names) == 14
    assert TASK.joint_names[6] == "left_gripper" and TASK.joint_names[13] == "right_gripper"
    assert TASK.lower_limits[6] == 0.0 and TASK.upper_limits[6] == 1.0  # grippers normalised
    assert list(TASK.lower_limits[:6]) == robot.JOINT_LOWER[:6].tolist()
    assert TASK.input_names == {"cube_pose": ("cube_x", "cube_y", "cube_z", "cube_qw", "cube_qx", "cube_qy", "cube_qz")}
    assert TASK.state_inputs_config() == {"cube_pose": {"type": "pose", "names": list(TASK.input_names["cube_pose"])}}
    assert len(TASK.state_names) == 21 and TASK.camera_names == ("top",)
    assert (TASK.cameras[0].height, TASK.cameras[0].width) == (120, 160)
    assert TASK.control_dt == 0.02 and TASK.physics_step_hz == 500.0
    assert TASK.defaults.episode_s == 8.0 and TASK.defaults.eval_episodes == 50
    assert "success" in TASK.modes and "arm_collision" in TASK.modes and TASK.path_xy is None
    # eval's node parameters: a gripper closed on the cube (0.5-0.75 from its command 0) is no tracking fault
    assert TASK.defaults.node_parameters["max_tracking_error"] >= robot.JOINT_UPPER[6] - robot.JOINT_LOWER[6]
    images = TASK.train_defaults(images=True)["observation_defaults"]
    assert images["observation"]["state_names"] == list(TASK.joint_names)
    assert images["auxiliary"]["state_names"] == list(TASK.input_names["cube_pose"])


def test_sim_node_loop_rate_defaults_to_the_tasks():
    assert SimParams(task="aloha_transfer_cube").physics_rate_hz == 50.0  # one tick per 50 Hz command row
    assert SimParams(task="reach").physics_rate_hz == 100.0
    assert SimParams(task="aloha_transfer_cube", physics_rate_hz=100.0).physics_rate_hz == 100.0
    with pytest.raises(ValueError, match="divide"):
        SimParams(task="aloha_transfer_cube", physics_rate_hz=300.0)


@needs_assets
def test_env_protocol_and_the_expert_from_the_first_observation_succeeds():
    env = TASK.make_env(render=False, episode_s=8.0)
    try:
        assert (env.joint_names, env.action_names) == (TASK.joint_names, TASK.action_names)
        assert dict(env.state_inputs) == TASK.input_names and tuple(env.camera_names) == TASK.camera_names
        obs = env.reset(seed=TASK.episode_seed(0, 4))
        state = TASK.state_vector(obs, TASK.state_names)  # [21]
        np.testing.assert_array_equal(state[14:], obs.inputs["cube_pose"])
        np.testing.assert_array_equal(TASK.hold_command(obs), obs.joint_positions)
        expert = TASK.make_expert(obs, np.random.default_rng(0))
        dt = TASK.control_dt
        ahead = expert.action(obs.time_s + dt * np.arange(1, 5))  # [4, 14]: what a trajectory message carries
        assert ahead.shape == (4, 14)
        for k in range(int(round(TASK.defaults.episode_s / dt))):
            command = expert.action(obs.time_s + dt)  # [14]
            if k == 0:
                np.testing.assert_array_equal(command, ahead[0])
            obs = env.step(command, dt, with_image=False)
        result = env.evaluate()
        assert result["success"] and result["mode"] == "success", result
        assert result["stages"] == {"grasped": True, "lifted": True, "transferred": True}
        # rows solved on demand equal the whole plan solved at once
        np.testing.assert_allclose(expert.action(dt * np.arange(400)), expert.plan.trajectory, atol=0)
    finally:
        env.close()
