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
    ensure_headless_gl,
    fingertip_clearance,
    forward_kinematics,
    obstacle_position,
    obstacle_task,
)

TIMES = np.linspace(0.0, 3.0, 601)


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


def test_post_edge_lies_beyond_the_targets_within_reach_and_off_the_start_pose():
    task = obstacle_task()
    keep_out = task.obstacle_size + FINGERTIP_RADIUS
    for target in _targets(task):
        post = obstacle_position(target, task)
        assert np.linalg.norm(post) == pytest.approx(task.obstacle_distance)
        heading = math.atan2(post[1], post[0]) - math.atan2(target[1], target[0])
        assert heading == pytest.approx(task.obstacle_heading_fraction * task.start_offset_rad)
        assert np.linalg.norm(target) < np.linalg.norm(post) - keep_out < sum(LINK_LENGTHS)  # inner edge
        assert fingertip_clearance(_start(target, task), post, task) > 0.04


@pytest.mark.parametrize("sign", [+1, -1])
def test_both_expert_modes_clear_the_post(sign):
    task = obstacle_task()
    for target in _targets(task):
        expert = ReachExpert(_start(target, task), target, sign, **expert_branch(task))
        clearance = fingertip_clearance(expert.action(TIMES), obstacle_position(target, task), task)
        assert clearance.min() > 0.01
        assert np.linalg.norm(forward_kinematics(expert.action(task.episode_s)) - target) < 1e-9


@pytest.mark.parametrize("c", [0.0, 0.1, 0.3])
def test_average_and_partial_commitments_of_the_modes_collide(c):
    task = obstacle_task()
    for target in _targets(task):
        q = _mixture(target, task, c)
        assert np.abs(q[:, 1]).max() <= c * 2.6 + 1e-9  # the elbow folds at most c of the way
        assert fingertip_clearance(q, obstacle_position(target, task), task).min() < 0


def test_modes_part_from_the_start_and_their_average_is_the_stretched_arm_swinging():
    task = obstacle_task()
    for target in _targets(task, 3, 3):
        up, down = (ReachExpert(_start(target, task), target, s, **expert_branch(task)) for s in (+1, -1))
        moving = TIMES[TIMES > 0]
        # no common prefix: from the first command on, the elbow bends its mode's way
        assert np.all(up.action(moving)[:, 1] > 0) and np.all(down.action(moving)[:, 1] < 0)
        average = 0.5 * (up.action(TIMES) + down.action(TIMES))
        np.testing.assert_allclose(average[:, 1], 0.0, atol=1e-12)  # the average never folds ...
        heading = math.atan2(target[1], target[0])
        np.testing.assert_allclose(average[-1, 0], heading, atol=1e-12)  # ... and swings to the target line


@pytest.mark.parametrize("noise", [(0, 0), (2, 2), (-2, -2), (2, -2)])
def test_expert_stays_inside_the_default_safety_envelope(noise):
    """Commanded joint velocity and acceleration stay well below the policy node's defaults
    (max_joint_velocity 2 rad/s, max_joint_acceleration 20 rad/s²), also from starts 2σ off."""
    task = obstacle_task()
    t = np.linspace(0.0, task.episode_s, 3001)
    for target in _targets(task):
        for sign in (+1, -1):
            start = _start(target, task) + task.start_noise_rad * np.asarray(noise)
            expert = ReachExpert(start, target, sign, **expert_branch(task))
            v = np.gradient(expert.action(t), t, axis=0)
            a = np.gradient(v, t, axis=0)
            assert np.abs(v).max() < 1.8
            assert np.abs(a).max() < 15.0


@pytest.mark.parametrize("sign", [+1, -1])
def test_expert_clears_the_post_from_starts_2_sigma_off(sign):
    task = obstacle_task()
    for target in _targets(task, 4, 5):
        for noise in ((-2, -2), (-2, 2), (2, 2)):
            start = _start(target, task) + task.start_noise_rad * np.asarray(noise)
            expert = ReachExpert(start, target, sign, **expert_branch(task))
            assert fingertip_clearance(expert.action(TIMES), obstacle_position(target, task), task).min() > 0.003


def test_ramped_profile_reaches_its_velocity_quickly_and_ends_at_the_goal():
    from genpolicy_ros.sim.expert import ramped_profile

    t = np.linspace(-0.1, 2.0, 21001)
    for distance in (1.06, 1.37, -1.2):
        s = ramped_profile(t, distance, 1.7, 0.2)
        assert s[0] == 0.0 and s[-1] == 1.0 and np.all(np.diff(s) >= 0)
        v = np.gradient(s * abs(distance), t)
        a = np.gradient(v, t)
        assert v.max() == pytest.approx(1.7, rel=1e-3)
        assert np.abs(a).max() == pytest.approx(1.5 * 1.7 / 0.2, rel=1e-2)
        assert s[t <= 0.2 + 1e-9][-1] * abs(distance) == pytest.approx(1.7 * 0.2 / 2, rel=1e-3)  # ramp: half of v·T_r
        done = t[np.argmax(s >= 1.0)]
        assert done == pytest.approx(abs(distance) / 1.7 + 0.2, abs=1e-3)
    short = ramped_profile(t, 0.1, 1.7, 0.2)  # too short for a plateau: lower peak, same ramps
    v = np.gradient(short * 0.1, t)
    assert short[-1] == 1.0 and v.max() == pytest.approx(0.1 / 0.2, rel=1e-3)
    assert t[np.argmax(short >= 1.0)] == pytest.approx(0.4, abs=1e-3)


def test_stretched_arm_swinging_to_the_target_collides():
    task = obstacle_task()
    for target in _targets(task):
        post = obstacle_position(target, task)
        start = _start(target, task)
        swing = np.stack([np.linspace(start[0], start[0] - task.start_offset_rad, 200), np.zeros(200)], -1)
        assert fingertip_clearance(swing, post, task).min() < 0


def test_obstacle_config_is_validated():
    with pytest.raises(ValueError):
        obstacle_task(target_radius=(0.17, 0.21))  # targets beyond the post's inner edge
    with pytest.raises(ValueError):
        obstacle_task(obstacle_distance=0.26)  # inner edge out of the straight arm's reach
    with pytest.raises(ValueError):
        obstacle_task(start_offset_rad=2.0)  # shoulder limit
    with pytest.raises(ValueError):
        obstacle_task(expert_fold_velocity=0.0)
    task = obstacle_task()
    # the post's centre may lie beyond the arm's reach, its inner edge may not
    assert task.obstacle_distance > sum(LINK_LENGTHS) > task.obstacle_distance - task.obstacle_size - FINGERTIP_RADIUS
    assert ReachTaskConfig(obstacle=True, target_radius=(0.07, 0.15)).obstacle is True


ensure_headless_gl()  # before the first `import mujoco`: other test modules of this session render
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
