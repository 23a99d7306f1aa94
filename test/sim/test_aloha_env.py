"""ALOHA transfer-cube scene: loads from the gym-aloha wheel, steps, normalises the grippers
as ALOHA does, places the cube as the benchmark does, renders only when asked."""
import numpy as np
import pytest

from genpolicy_ros.sim.reach_env import ensure_headless_gl

ensure_headless_gl()  # before the first `import mujoco`: a test below renders
mujoco = pytest.importorskip("mujoco")

from genpolicy_ros.sim.aloha import assets, robot  # noqa: E402
from genpolicy_ros.sim.aloha.env import (  # noqa: E402
    CUBE_POSE_NAMES,
    CUBE_X_RANGE,
    CUBE_Y_RANGE,
    AlohaTaskConfig,
    AlohaTransferCubeEnv,
)

pytestmark = pytest.mark.skipif(not assets.assets_available(),
                                reason=f"gym-aloha assets not installed: {assets.INSTALL_HINT}")


@pytest.fixture(scope="module")
def env():
    e = AlohaTransferCubeEnv()
    yield e
    e.close()


def test_missing_assets_name_the_install_command(monkeypatch):
    monkeypatch.setattr(assets.importlib.util, "find_spec", lambda name: None)
    with pytest.raises(assets.AlohaAssetsMissing, match="make install.*--no-deps gym-aloha=="):
        assets.assets_dir()
    assert not assets.assets_available()


def test_scene_matches_the_protocol_and_the_benchmark_timing(env):
    assert env.joint_names == env.action_names == robot.JOINT_NAMES
    assert env.joint_names[:7] == ("left_waist", "left_shoulder", "left_elbow", "left_forearm_roll",
                                   "left_wrist_angle", "left_wrist_rotate", "left_gripper")
    assert env.joint_names[7:] == tuple(n.replace("left_", "right_") for n in env.joint_names[:7])
    assert env.state_inputs == {"cube_pose": CUBE_POSE_NAMES} and len(CUBE_POSE_NAMES) == 7
    assert env.camera_names == ("top",)
    assert env.model.opt.timestep == pytest.approx(0.002)  # the MJCF's 2 ms step, unchanged
    assert env.control_dt == pytest.approx(0.02) and env.substeps_per_control == 10
    assert env.config.episode_steps == 400
    assert all(env.model.actuator_biastype[a] == mujoco.mjtBias.mjBIAS_AFFINE for a in range(env.model.nu))


def test_stated_joint_limits_are_the_mjcf_ones(env):
    for k, arm in enumerate(robot.ARMS):
        for j, name in enumerate(robot.ARM_JOINTS):
            low, high = env.model.joint(robot.MJCF_PREFIX[arm] + name).range
            assert (robot.JOINT_LOWER[7 * k + j], robot.JOINT_UPPER[7 * k + j]) == pytest.approx((low, high))
        finger = env.model.joint(robot.MJCF_PREFIX[arm] + "left_finger").range
        assert tuple(finger) == pytest.approx(robot.FINGER_RANGE)


def test_gripper_normalisation_round_trip_and_aloha_constants():
    g = np.linspace(-0.5, 1.5, 41)
    assert robot.normalize_gripper(robot.unnormalize_gripper(g)) == pytest.approx(g)
    assert robot.normalize_gripper(0.01844) == pytest.approx(0.0)
    assert robot.normalize_gripper(0.05800) == pytest.approx(1.0)
    assert robot.unnormalize_gripper(0.5) == pytest.approx((0.01844 + 0.058) / 2)


@pytest.mark.parametrize("opening", [0.3, 0.8])
def test_commanded_gripper_opening_is_what_joint_state_reports(env, opening):
    obs = env.reset(seed=0)
    command = robot.start_pose()
    command[list(robot.GRIPPER_INDICES)] = opening
    for _ in range(50):  # 1 s
        obs = env.step(command, env.control_dt, with_image=False)
    assert obs.joint_positions[list(robot.GRIPPER_INDICES)] == pytest.approx([opening, opening], abs=0.02)
    fingers = env.data.qpos[env._finger_qadr]  # left/right finger of each arm mirror each other
    assert fingers[0] == pytest.approx(-fingers[1], abs=1e-3) and fingers[2] == pytest.approx(-fingers[3], abs=1e-3)


def test_gripper_opens_to_the_finger_limit_and_closes_until_the_pads_meet(env):
    env.reset(seed=0)
    command = robot.start_pose()
    for opening, expected in ((1.0, robot.normalize_gripper(robot.FINGER_RANGE[1])), (0.0, 0.100)):
        command[list(robot.GRIPPER_INDICES)] = opening
        for _ in range(50):
            obs = env.step(command, env.control_dt, with_image=False)
        assert obs.joint_positions[list(robot.GRIPPER_INDICES)] == pytest.approx([expected] * 2, abs=0.005)


def test_holding_the_start_pose_keeps_arms_and_cube_still(env):
    obs = env.reset(seed=3)
    start_cube = obs.inputs["cube_pose"].copy()
    assert obs.joint_positions == pytest.approx(robot.start_pose(), abs=1e-9)
    assert obs.time_s == 0.0
    for _ in range(50):
        obs = env.step(robot.start_pose(), env.control_dt, with_image=False)
    assert obs.time_s == pytest.approx(1.0)
    assert obs.joint_positions == pytest.approx(robot.start_pose(), abs=0.02)  # position servo holds it
    assert obs.inputs["cube_pose"] == pytest.approx(start_cube, abs=1e-3)  # resting, not falling
    result = env.evaluate()
    assert not result["success"] and result["mode"] == "never_grasped"


def test_cube_placement_uses_the_benchmark_ranges(env):
    xy = np.array([env.reset(seed=s).inputs["cube_pose"][:2] for s in range(200)])  # [200, 2]
    assert np.all((xy[:, 0] >= CUBE_X_RANGE[0]) & (xy[:, 0] <= CUBE_X_RANGE[1]))
    assert np.all((xy[:, 1] >= CUBE_Y_RANGE[0]) & (xy[:, 1] <= CUBE_Y_RANGE[1]))
    # spread over the whole range (uniform), not a corner of it
    assert xy[:, 0].min() < 0.02 and xy[:, 0].max() > 0.18 and xy[:, 1].min() < 0.42 and xy[:, 1].max() > 0.58
    assert CUBE_X_RANGE == (0.0, 0.2) and CUBE_Y_RANGE == (0.4, 0.6)  # gym-aloha sample_box_pose
    again = env.reset(seed=7).inputs["cube_pose"]
    assert env.reset(seed=7).inputs["cube_pose"] == pytest.approx(again)
    assert env.reset(seed=0, cube_xy=[0.05, 0.45]).inputs["cube_pose"][:3] == pytest.approx([0.05, 0.45, 0.02])


def test_bad_commands_and_configs_are_refused(env):
    env.reset(seed=0)
    with pytest.raises(ValueError, match="14 finite"):
        env.step(np.zeros(13), env.control_dt)
    bad = robot.start_pose()
    bad[3] = np.nan
    with pytest.raises(ValueError, match="14 finite"):
        env.step(bad, env.control_dt)
    with pytest.raises(ValueError, match="cameras"):
        AlohaTaskConfig(cameras=("nope",))
    with pytest.raises(ValueError, match="control_dt"):
        AlohaTaskConfig(control_dt=0.003)
    with pytest.raises(ValueError, match="cube_x_range"):
        AlohaTaskConfig(cube_x_range=(0.2, 0.0))


def test_no_renderer_without_render(env):
    assert env._renderer is None
    assert env.observe(with_image=True).images == {}
    with pytest.raises(RuntimeError, match="render=False"):
        env.render("top")


def test_top_camera_sees_the_red_cube():
    env = AlohaTransferCubeEnv(AlohaTaskConfig(cameras=("top", "right_wrist")), render=True)
    try:
        obs = env.reset(seed=1)
        assert set(obs.images) == {"top", "right_wrist"}
        top = obs.images["top"]
        assert top.shape == (120, 160, 3) and top.dtype == np.uint8
        red = (top[..., 0] > 150) & (top[..., 1] < 60) & (top[..., 2] < 60)
        assert 2 <= red.sum() <= 100  # the 4 cm cube: a few pixels at 120x160
        assert env.step(robot.start_pose(), env.control_dt, with_image=False).images == {}
    finally:
        env.close()
