"""Offline transfer-cube demonstrations in the project's episode format, loaded by the
training data loader, and the ROS-free roll-out loop around a chunk policy."""
import numpy as np
import pytest

from genpolicy_ros.sim.reach_env import ensure_headless_gl

ensure_headless_gl()  # before the first `import mujoco`: a test below renders
mujoco = pytest.importorskip("mujoco")

from genpolicy_ros.data.dataset import WindowDataset  # noqa: E402
from genpolicy_ros.data.episodes import EpisodeDataset  # noqa: E402
from genpolicy_ros.sim.aloha import assets, robot  # noqa: E402
from genpolicy_ros.sim.aloha.collect_offline import main as collect_main  # noqa: E402
from genpolicy_ros.sim.aloha.env import CUBE_POSE_NAMES, AlohaTaskConfig, AlohaTransferCubeEnv  # noqa: E402
from genpolicy_ros.sim.aloha.expert import TransferCubeExpert  # noqa: E402
from genpolicy_ros.sim.aloha.offline import STATE_NAMES, collect_expert_episodes, episode_seed, resample_chunk, rollout  # noqa: E402

pytestmark = pytest.mark.skipif(not assets.assets_available(),
                                reason=f"gym-aloha assets not installed: {assets.INSTALL_HINT}")


def test_collected_demonstrations_load_as_training_windows(tmp_path):
    out = tmp_path / "aloha"
    assert collect_main(["--episodes", "2", "--out", str(out), "--no-progress"]) == 0
    data = EpisodeDataset(out)
    meta = data.metadata
    assert len(data) == 2
    assert tuple(meta.joint_names) == robot.JOINT_NAMES
    assert tuple(meta.state_names) == STATE_NAMES == robot.JOINT_NAMES + CUBE_POSE_NAMES
    assert meta.dt == pytest.approx(0.02) and meta.cameras == {}
    assert meta.joint_lower_limits == pytest.approx(robot.JOINT_LOWER.tolist())
    episode = data[0]
    assert episode.state.shape == (400, 21) and episode.action.shape == (400, 14)
    assert np.diff(episode.timestamp) == pytest.approx(np.full(399, 0.02))
    # row 0: the start pose and the cube at its reset place; the action is the expert's next target
    env = AlohaTransferCubeEnv()
    try:
        env.reset(seed=episode_seed(0, 0))
        expert = TransferCubeExpert.for_env(env)
        assert episode.state[0, :14] == pytest.approx(robot.start_pose(), abs=1e-5)
        assert episode.state[0, 14:] == pytest.approx(env.cube_pose(), abs=1e-5)
        assert episode.action == pytest.approx(np.vstack([expert.trajectory[1:], expert.trajectory[-1:]]), abs=1e-5)
    finally:
        env.close()
    # the cube lifted off the table and ended in the air
    assert episode.state[:, 16].max() > 0.2 and episode.state[-1, 16] > 0.15
    windows = WindowDataset(data, T_o=2, T_p=16)
    item = windows[100]
    assert item["obs"]["state"].shape == (2, 21) and item["action"].shape == (16, 14)
    assert collect_main(["--episodes", "1", "--out", str(out)]) == 1  # refuses an existing directory


def test_demonstrations_with_camera_frames(tmp_path):
    task = AlohaTaskConfig(episode_s=0.2)  # 10 rows: the format, not the task
    data, evaluations = collect_expert_episodes(tmp_path / "img", 1, task=task, with_images=True, progress=False,
                                                keep_failures=True)
    assert len(evaluations) == 1 and not evaluations[0]["success"]  # 0.2 s is too short to succeed
    assert data.metadata.cameras == {"top": [120, 160]}
    frames = data[0].images["top"]
    assert frames.shape == (10, 120, 160, 3) and frames.dtype == np.uint8
    item = WindowDataset(data, T_o=2, T_p=4)[5]
    assert item["obs"]["images"]["top"].shape == (2, 3, 120, 160)


def test_failed_demonstrations_are_left_out(tmp_path):
    data, evaluations = collect_expert_episodes(tmp_path / "short", 1, task=AlohaTaskConfig(episode_s=0.1),
                                                progress=False)
    assert len(data) == 0 and not evaluations[0]["success"]


def test_rollout_executes_chunks_receding_horizon():
    env = AlohaTransferCubeEnv()
    try:
        env.reset(seed=21)
        plan = TransferCubeExpert.for_env(env).trajectory  # [400, 14] the oracle for this seed
        calls = []

        def oracle(observation):  # replays the plan from the current step, T_p = 20 rows
            assert observation["state"].shape == (3, 21)
            k = 8 * len(calls)
            calls.append(observation["state"][-1].copy())
            return np.vstack([plan[1:], plan[-1:]])[k:k + 20]

        result = rollout(oracle, env, seed=21, T_o=3, action_horizon=8)
        assert len(calls) == 50  # 400 steps / 8 rows per chunk
        assert result.success and result.evaluation["stages"]["transferred"]
        assert result.commands.shape == (400, 14) and result.states.shape == (400, 21)
        assert calls[1] == pytest.approx(result.states[8])  # the second chunk saw the state at step 8
        with pytest.raises(ValueError, match="T_p, 14"):
            rollout(lambda obs: np.zeros((4, 13)), env, seed=0, T_o=1, action_horizon=2)
    finally:
        env.close()


def test_chunks_with_coarser_rows_are_interpolated_onto_the_control_steps():
    chunk = np.array([[0.0, 10.0], [2.0, 10.0], [4.0, 6.0]])  # rows 0.04 s apart
    fine = resample_chunk(chunk, 0.04, 0.02)
    assert fine == pytest.approx(np.array([[0, 10], [1, 10], [2, 10], [3, 8], [4, 6]], dtype=float))
    assert resample_chunk(chunk, 0.02, 0.02) is chunk
    with pytest.raises(ValueError, match="whole number"):
        resample_chunk(chunk, 0.03, 0.02)
    env = AlohaTransferCubeEnv()
    try:
        env.reset(seed=22)
        plan = TransferCubeExpert.for_env(env).trajectory
        targets = np.vstack([plan[1:], plan[-1:], plan[-1:]])  # [401, 14]
        seen = []

        def oracle(observation):  # rows 0.04 s apart: every second target
            seen.append(observation["state"].copy())
            k = 16 * (len(seen) - 1)  # T_a = 8 rows = 16 control steps per chunk
            return targets[k:k + 40:2]

        result = rollout(oracle, env, seed=22, T_o=2, action_horizon=8, chunk_dt=0.04)
        assert len(seen) == 25 and result.success
        assert seen[1][0] == pytest.approx(result.states[14]) and seen[1][1] == pytest.approx(result.states[16])
    finally:
        env.close()
