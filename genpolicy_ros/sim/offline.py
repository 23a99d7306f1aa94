"""ROS-free data collection and policy roll-outs in the reaching task.

These run the MuJoCo task directly (no topics, simulated time), which makes them fast
and deterministic: `collect_expert_episodes` writes an episode data set in the format of
:mod:`genpolicy_ros.data.episodes`; `rollout` closes the loop around any chunk policy
with receding-horizon execution. The ROS closed loop (sim node + policy node) lives in
the sim node; this module is what quick experiments and unit tests use.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Optional

import numpy as np

from ..data.episodes import DatasetMetadata, Episode, EpisodeDataset
from .expert import ReachExpert
from .protocol import state_vector
from .reach_env import (
    ARM_JOINTS,
    JOINT_LOWER,
    JOINT_UPPER,
    STATE_INPUTS,
    STATE_NAMES,
    TARGET_INPUT,
    TARGET_NAMES,
    ReachEnv,
    ReachTaskConfig,
)

CAMERA = "overhead"


def reach_state(obs) -> np.ndarray:
    """The reach task's full state [4] (``STATE_NAMES``: shoulder, elbow, target_x, target_y)."""
    return state_vector(obs, STATE_NAMES, ARM_JOINTS, STATE_INPUTS)


def dataset_metadata(dt: float, with_images: bool, task: ReachTaskConfig) -> DatasetMetadata:
    return DatasetMetadata(
        joint_names=list(ARM_JOINTS),
        state_names=list(STATE_NAMES),
        dt=dt,
        cameras={CAMERA: list(task.image_size)} if with_images else {},
        units={"timestamp": "s", "action": "rad", "state": "rad|m"},
        joint_lower_limits=JOINT_LOWER.tolist(),
        joint_upper_limits=JOINT_UPPER.tolist(),
        state_inputs={TARGET_INPUT: {"type": "point", "names": list(TARGET_NAMES)}},
        task="reach_obstacle" if task.obstacle else "reach",
        description="genpolicy_ros reach2d: scripted expert, elbow-up/elbow-down chosen at random per episode"
        + (
            f"; obstacle variant (start {task.start_offset_rad} rad beside the target, post r={task.obstacle_size} m "
            f"at {task.obstacle_distance} m, {task.obstacle_heading_fraction * task.start_offset_rad:.2f} rad off "
            f"the target line; expert branches at {task.expert_branch_s} s, swings at {task.expert_swing_velocity} "
            f"rad/s, folds at {task.expert_fold_velocity} rad/s)"
            if task.obstacle
            else ""
        ),
    )


def collect_expert_episodes(
    out_dir,
    num_episodes: int,
    *,
    seed: int = 0,
    dt: float = 0.05,
    with_images: bool = False,
    task: Optional[ReachTaskConfig] = None,
    progress: bool = True,
    paired_modes: bool = False,
) -> EpisodeDataset:
    """Record `num_episodes` expert demonstrations at period `dt` into `out_dir`.

    Row i holds the observation at t_i and the command issued at t_i (the expert's
    minimum-jerk target one period ahead), matching the runtime's "row i is due at
    t0 + i·dt" convention.

    ``paired_modes``: episodes 2k and 2k+1 share one start (same reset seed: target and start
    noise) and demonstrate it elbow-up and elbow-down. Independent random episodes let a
    large regression network memorise a mode per start (a spurious function of the start
    noise) instead of learning the average; in paired data the same observation carries
    both modes, as the task intends.
    """
    task = task or ReachTaskConfig()
    env = ReachEnv(task, render=with_images)
    dataset = EpisodeDataset.create(Path(out_dir), dataset_metadata(dt, with_images, task), exist_ok=True)
    steps = int(round(task.episode_s / dt))
    iterator = range(num_episodes)
    if progress:
        from tqdm import tqdm

        iterator = tqdm(iterator, desc="collect", unit="episode")
    try:
        for episode_index in iterator:
            if paired_modes:
                obs = env.reset(seed=seed * 100_003 + episode_index // 2)
                sign = 1 if episode_index % 2 == 0 else -1
                expert = ReachExpert(obs.joint_positions[:2], env.target, sign, **expert_branch(task))
            else:
                obs = env.reset(seed=seed * 100_003 + episode_index)
                expert = ReachExpert.random(obs.joint_positions[:2], env.target, env.rng, **expert_branch(task))
            stamps, states, actions, images = [], [], [], []
            for k in range(steps):
                command = expert.action(obs.time_s + dt)  # [2]
                stamps.append(obs.time_s)
                states.append(reach_state(obs).astype(np.float32))  # [4]
                actions.append(command.astype(np.float32))  # [2]
                if with_images:
                    images.append(obs.image)  # [H, W, 3] uint8
                obs = env.step(command, dt)
            episode = Episode(
                timestamp=np.asarray(stamps, dtype=np.float64),  # [N]
                action=np.stack(actions),  # [N, 2]
                state=np.stack(states),  # [N, 4]
                images={CAMERA: np.stack(images)} if with_images else {},  # [N, H, W, 3]
            )
            dataset.append(episode)
    finally:
        env.close()
    return dataset


def expert_branch(task: ReachTaskConfig) -> dict:
    """`ReachExpert` keyword arguments of this task's expert: a branching profile only with the obstacle."""
    if not task.obstacle:
        return {}
    return {"branch_at_s": task.expert_branch_s, "swing_velocity": task.expert_swing_velocity,
            "swing_ramp_s": task.expert_swing_ramp_s, "fold_velocity": task.expert_fold_velocity,
            "fold_ramp_s": task.expert_fold_ramp_s}


ChunkPolicy = Callable[[dict], np.ndarray]  # obs dict -> [T_p, 2] chunk (row 0 = now)


@dataclass
class RolloutResult:
    success: bool
    mode: str
    final_distance: float
    fingertip_path: np.ndarray  # [N, 2]
    commands: np.ndarray  # [N, 2]
    collided: bool = False  # obstacle variant: the fingertip touched the post (success is then False)


def rollout(
    policy: ChunkPolicy,
    *,
    seed: int,
    T_o: int,
    action_horizon: int,
    dt: float = 0.05,
    with_images: bool = False,
    task: Optional[ReachTaskConfig] = None,
    env: Optional[ReachEnv] = None,
) -> RolloutResult:
    """One receding-horizon episode in simulated time (no latency): observe the last
    `T_o` samples, ask `policy` for a chunk, execute its first `action_horizon` rows."""
    task = task or ReachTaskConfig()
    own_env = env is None
    env = env or ReachEnv(task, render=with_images)
    try:
        obs = env.reset(seed=seed)
        history = [obs] * T_o
        path, commands = [], []
        steps = int(round(task.episode_s / dt))
        queue: list[np.ndarray] = []
        for _ in range(steps):
            if not queue:
                state = np.stack([reach_state(o) for o in history[-T_o:]]).astype(np.float32)  # [T_o, 4]
                observation = {"state": state}
                if with_images:
                    observation["images"] = {CAMERA: np.stack([o.image for o in history[-T_o:]])}  # [T_o,H,W,3]
                chunk = np.asarray(policy(observation), dtype=float)  # [T_p, 2]
                queue = list(chunk[:action_horizon])
            command = np.clip(queue.pop(0), JOINT_LOWER, JOINT_UPPER)
            commands.append(command)
            obs = env.step(command, dt)
            history.append(obs)
            path.append(obs.fingertip)
        result = env.evaluate()
        return RolloutResult(
            success=result["success"],
            mode=result["mode"],
            final_distance=result["final_distance"],
            fingertip_path=np.asarray(path),
            commands=np.asarray(commands),
            collided=bool(result.get("collided", False)),
        )
    finally:
        if own_env:
            env.close()
