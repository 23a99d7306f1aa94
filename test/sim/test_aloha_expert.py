"""The scripted transfer-cube expert: succeeds from fixed and extreme cube placements,
tracks its waypoints by IK, and stays inside the joint limits and the policy node's default
velocity envelope (2 rad/s per commanded dimension)."""
import numpy as np
import pytest

from genpolicy_ros.sim.reach_env import ensure_headless_gl

ensure_headless_gl()  # before the first `import mujoco`: other test files of this session render
mujoco = pytest.importorskip("mujoco")

from genpolicy_ros.sim.aloha import assets, robot  # noqa: E402
from genpolicy_ros.sim.aloha.env import CUBE_X_RANGE, CUBE_Y_RANGE, AlohaTransferCubeEnv  # noqa: E402
from genpolicy_ros.sim.aloha.expert import ExpertConfig, TransferCubeExpert, gripper_rotation  # noqa: E402
from genpolicy_ros.sim.aloha.offline import run_expert_episode  # noqa: E402

pytestmark = pytest.mark.skipif(not assets.assets_available(),
                                reason=f"gym-aloha assets not installed: {assets.INSTALL_HINT}")


@pytest.fixture(scope="module")
def env():
    e = AlohaTransferCubeEnv()
    yield e
    e.close()


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_expert_transfers_the_cube(env, seed):
    record = run_expert_episode(env, seed)
    result = record.evaluation
    assert result["success"] and result["mode"] == "success"
    assert result["stages"] == {"grasped": True, "lifted": True, "transferred": True}
    assert result["benchmark_success"] and not result["arm_collision"]
    # at the end the left gripper holds the cube in the air (opening 0.606 for 4 cm, less under
    # the squeeze of the soft contacts), the right gripper is open
    final = env.observe(with_image=False)
    assert 0.45 < final.joint_positions[6] < 0.65
    assert final.joint_positions[13] > 0.9
    assert final.inputs["cube_pose"][2] > 0.15


@pytest.mark.parametrize("corner", [(CUBE_X_RANGE[0], CUBE_Y_RANGE[0]), (CUBE_X_RANGE[1], CUBE_Y_RANGE[1])])
def test_expert_reaches_the_corners_of_the_cube_range(env, corner):
    env.reset(seed=0, cube_xy=corner)
    expert = TransferCubeExpert.for_env(env)
    for k in range(env.config.episode_steps):
        env.step(expert.action((k + 1) * env.control_dt), env.control_dt, with_image=False)
    assert env.evaluate()["success"]


def test_commands_respect_limits_and_the_default_velocity_envelope(env):
    env.reset(seed=5)
    expert = TransferCubeExpert.for_env(env)
    q = expert.trajectory  # [400, 14]
    assert q.shape == (400, 14) and np.all(np.isfinite(q))
    assert np.all(q >= robot.JOINT_LOWER) and np.all(q <= robot.JOINT_UPPER)
    velocity = np.diff(q, axis=0) / env.control_dt  # [399, 14]
    acceleration = np.diff(velocity, axis=0) / env.control_dt
    assert np.abs(velocity).max() < 2.0  # policy node default max_joint_velocity
    assert np.abs(acceleration).max() < 20.0  # ... and max_joint_acceleration
    assert q[0] == pytest.approx(robot.start_pose(), abs=1e-3)  # starts where the arms are


def test_ik_puts_the_tool_centre_point_on_the_waypoints(env):
    env.reset(seed=4)
    expert = TransferCubeExpert.for_env(env)
    assert expert.ik_errors.max() < 1e-3  # m, every row
    ik = expert.ik["right"]
    grasp = next(w for w in expert.waypoints["right"] if w.step == ExpertConfig().right_down)
    position, rotation = ik.forward(expert.trajectory[grasp.step, 7:13])
    assert position == pytest.approx(np.asarray(grasp.position), abs=1e-3)
    cube = env.cube_pose()[:3]
    assert position[:2] == pytest.approx(cube[:2], abs=1e-3)  # right above the cube's centre
    want = gripper_rotation(position[:2] - ik.base_xy, grasp.pitch, 0.0).as_matrix()
    assert rotation == pytest.approx(want, abs=1e-2)
    assert rotation[:, 1] @ [0.0, 0.0, 1.0] == pytest.approx(0.0, abs=1e-3)  # fingers close horizontally


def test_expert_timing_is_validated():
    with pytest.raises(ValueError, match="increase"):
        ExpertConfig(right_down=60)
    with pytest.raises(ValueError, match="pick_pitch_deg"):
        ExpertConfig(pick_pitch_deg=120)
