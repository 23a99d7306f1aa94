"""The optional obstacle of the reach2d task: geometry, collision reporting, default off."""
import math

import numpy as np
import pytest

from genpolicy_ros.sim.expert import ReachExpert
from genpolicy_ros.sim.offline import expert_branch
from genpolicy_ros.sim.reach_env import (
    FINGERTIP_RADIUS,
    LINK_LENGTHS,
    ReachTaskConfig,
    fingertip_clearance,
    forward_kinematics,
    obstacle_position,
    obstacle_task,
)

TIMES = np.linspace(0.0, 1.6, 321)


def _targets(task, n_r=6, n_h=7):
    for r in np.linspace(*task.target_radius, n_r):
        for h in np.linspace(*task.target_heading, n_h):
            yield np.array([r * math.cos(h), r * math.sin(h)])


def _start(target, task):
    return np.array([math.atan2(target[1], target[0]) + task.start_offset_rad, 0.0])


def _mixture(target, task, c, times=TIMES, start=None):
    """w·(elbow-up expert) + (1−w)·(elbow-down expert), w = (1 + c)/2."""
    start = _start(target, task) if start is None else start
    up = ReachExpert(start, target, +1, **expert_branch(task))
    down = ReachExpert(start, target, -1, **expert_branch(task))
    w = (1.0 + c) / 2.0
    return w * up.action(times) + (1.0 - w) * down.action(times)


def test_default_task_has_no_obstacle_and_expert_one_profile():
    task = ReachTaskConfig()
    assert task.obstacle is False
    assert expert_branch(task) == {}
    expert = ReachExpert(np.array([0.3, 0.01]), np.array([0.1, 0.05]), +1)
    s = np.clip(TIMES / 1.6, 0, 1)
    s = s**3 * (10 - 15 * s + 6 * s**2)
    expected = expert.start_q + s[:, None] * (expert.goal_q - expert.start_q)
    np.testing.assert_array_equal(expert.action(TIMES), expected)


def test_post_lies_beyond_the_targets_within_reach_and_off_the_start_pose():
    task = obstacle_task()
    keep_out = task.obstacle_size + FINGERTIP_RADIUS
    for target in _targets(task):
        post = obstacle_position(target, task)
        assert np.linalg.norm(post) == pytest.approx(task.obstacle_distance)
        heading = math.atan2(post[1], post[0]) - math.atan2(target[1], target[0])
        assert heading == pytest.approx(task.obstacle_heading_fraction * task.start_offset_rad)
        assert np.linalg.norm(target) + keep_out < np.linalg.norm(post) < sum(LINK_LENGTHS)
        assert fingertip_clearance(_start(target, task), post, task) > 0.05


@pytest.mark.parametrize("sign", [+1, -1])
def test_both_expert_modes_clear_the_post(sign):
    task = obstacle_task()
    for target in _targets(task):
        expert = ReachExpert(_start(target, task), target, sign, **expert_branch(task))
        clearance = fingertip_clearance(expert.action(TIMES), obstacle_position(target, task), task)
        assert clearance.min() > 0.02
        assert np.linalg.norm(forward_kinematics(expert.action(1.6)) - target) < 1e-9


@pytest.mark.parametrize("c", [0.0, 0.1, 0.3])
def test_average_and_partial_commitments_of_the_modes_collide(c):
    task = obstacle_task()
    for target in _targets(task):
        q = _mixture(target, task, c)
        assert np.abs(q[:, 1]).max() <= c * 2.6 + 1e-9  # the elbow folds at most c of the way
        assert fingertip_clearance(q, obstacle_position(target, task), task).min() < 0


def test_modes_share_their_commands_until_the_branch():
    task = obstacle_task()
    for target in _targets(task, 3, 3):
        up, down = (ReachExpert(_start(target, task), target, s, **expert_branch(task)) for s in (+1, -1))
        before = TIMES[TIMES <= task.expert_branch_s]
        np.testing.assert_array_equal(up.action(before), down.action(before))
        assert np.all(up.action(before)[:, 1] == 0.0)  # the elbow is held: a stretched arm swinging
        after = TIMES[TIMES > task.expert_branch_s + 0.05]
        assert np.all(up.action(after)[:, 1] > 0) and np.all(down.action(after)[:, 1] < 0)


def test_stretched_arm_swinging_to_the_target_collides_and_expert_needs_its_branch():
    task = obstacle_task()
    for target in _targets(task):
        post = obstacle_position(target, task)
        start = _start(target, task)
        swing = np.stack([np.linspace(start[0], start[0] - task.start_offset_rad, 200), np.zeros(200)], -1)
        assert fingertip_clearance(swing, post, task).min() < 0
    # the plain joint-space expert of the default task (no late branch) would hit it too
    for target in _targets(task):
        plain = ReachExpert(_start(target, task), target, +1)
        half = 0.75 * plain.action(TIMES) + 0.25 * ReachExpert(_start(target, task), target, -1).action(TIMES)
        assert fingertip_clearance(half, obstacle_position(target, task), task).min() < 0


def test_obstacle_config_is_validated():
    with pytest.raises(ValueError):
        ReachTaskConfig(obstacle=True, target_radius=(0.07, 0.2))  # targets reach the post
    with pytest.raises(ValueError):
        ReachTaskConfig(obstacle=True, target_radius=(0.07, 0.15), obstacle_distance=0.23)  # out of reach
    with pytest.raises(ValueError):
        ReachTaskConfig(obstacle=True, target_radius=(0.07, 0.15), start_offset_rad=2.0)  # shoulder limit
    ReachTaskConfig(obstacle=True, target_radius=(0.07, 0.15))


mujoco = pytest.importorskip("mujoco")


def _run(env, commands_fn, dt=0.05):
    obs = env.observe(with_image=False)
    infos = []
    for _ in range(int(round(env.config.episode_s / dt))):
        obs = env.step(commands_fn(obs.time_s + dt), dt, with_image=False)
        infos.append(obs.info)
    return infos, env.evaluate()


def test_env_reports_collision_of_averaged_commands_and_not_of_expert():
    from genpolicy_ros.sim.reach_env import ReachEnv

    task = obstacle_task()
    env = ReachEnv(task)
    try:
        for seed in range(4):
            obs = env.reset(seed=seed)
            assert obs.info == {"collided": False}
            start, target = obs.joint_positions[:2].copy(), env.target.copy()
            np.testing.assert_allclose(env.obstacle_xy, obstacle_position(target, task))
            infos, result = _run(env, lambda t: _mixture(target, task, 0.0, np.array(t), start))
            assert result["collided"] is True and result["success"] is False
            assert infos[-1]["collided"] is True and result["min_clearance"] < 0

            env.reset(seed=seed)
            expert = ReachExpert(start, target, 1 if seed % 2 else -1, **expert_branch(task))
            infos, result = _run(env, expert.action)
            assert result["collided"] is False and result["success"] is True
            assert all(info["collided"] is False for info in infos) and result["min_clearance"] > 0
    finally:
        env.close()


def test_default_env_reports_no_collision_fields():
    from genpolicy_ros.sim.reach_env import ReachEnv

    env = ReachEnv()
    try:
        obs = env.reset(seed=0)
        assert obs.info == {} and env.model.nmocap == 0
        assert set(env.evaluate()) == {"success", "final_distance", "mode"}
    finally:
        env.close()


def test_offline_collection_and_rollout_with_the_obstacle(tmp_path):
    from genpolicy_ros.data.episodes import EpisodeDataset
    from genpolicy_ros.sim.offline import collect_expert_episodes, rollout

    task = obstacle_task()
    collect_expert_episodes(tmp_path / "data", 2, task=task, progress=False)
    dataset = EpisodeDataset(tmp_path / "data")
    assert len(dataset) == 2 and "obstacle" in dataset.metadata.description
    episode = dataset[0]
    # the demonstration ends at its goal: the recorded arm state is within the success radius
    assert np.linalg.norm(forward_kinematics(episode.state[-1, :2]) - episode.state[-1, 2:]) < task.success_radius

    def swing_without_folding(obs):  # the average of the two modes: stretched arm to the target heading
        target = obs["state"][-1, 2:]
        heading = math.atan2(target[1], target[0])
        return np.tile([heading, 0.0], (16, 1))

    result = rollout(swing_without_folding, seed=3, T_o=2, action_horizon=8, task=task)
    assert result.collided is True and result.success is False


def test_paired_collection_demonstrates_each_start_both_ways(tmp_path):
    from genpolicy_ros.data.episodes import EpisodeDataset
    from genpolicy_ros.sim.offline import collect_expert_episodes

    collect_expert_episodes(tmp_path / "data", 4, task=obstacle_task(), progress=False, paired_modes=True)
    dataset = EpisodeDataset(tmp_path / "data")
    for k in (0, 2):
        up, down = dataset[k], dataset[k + 1]
        np.testing.assert_array_equal(up.state[0], down.state[0])  # same target and start noise
        assert up.state[-1, 1] > 0.2 and down.state[-1, 1] < -0.2  # elbow up, then elbow down
    assert not np.array_equal(dataset[0].state[0], dataset[2].state[0])
