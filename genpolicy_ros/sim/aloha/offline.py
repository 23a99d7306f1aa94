"""ROS-free episodes of the transfer-cube task: the scripted expert recorded into the
project's episode format, and closed-loop roll-outs of a chunk policy (simulated time, no
latency), like :mod:`genpolicy_ros.sim.offline` for the reaching task.

Rows (``docs/episode_format.md``): row i holds the observation at ``t_i = i * dt`` — the 14
joints (grippers normalised) followed by the 7 ``cube_pose`` values — and the command issued
then, the expert's target for ``t_i + dt`` (the runtime's "row i is due at t0 + i·dt").
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Optional

import numpy as np

from ...data.episodes import DatasetMetadata, Episode, EpisodeDataset
from . import robot
from .env import CUBE_POSE_NAMES, AlohaTaskConfig, AlohaTransferCubeEnv
from .expert import ExpertConfig, TransferCubeExpert

STATE_NAMES = robot.JOINT_NAMES + CUBE_POSE_NAMES  # 21


def episode_seed(seed: int, index: int) -> int:
    """Reset seed of episode ``index`` of a collection or evaluation run with ``seed``."""
    return seed * 100_003 + index


def dataset_metadata(task: AlohaTaskConfig, with_images: bool) -> DatasetMetadata:
    h, w = task.image_size
    return DatasetMetadata(
        joint_names=list(robot.JOINT_NAMES),
        state_names=list(STATE_NAMES),
        dt=task.control_dt,
        cameras={cam: [h, w] for cam in task.cameras} if with_images else {},
        units={"timestamp": "s", "action": "rad|gripper opening 0-1", "state": "rad|gripper opening 0-1|m|quat"},
        joint_lower_limits=robot.JOINT_LOWER.tolist(),
        joint_upper_limits=robot.JOINT_UPPER.tolist(),
        state_inputs={"cube_pose": {"type": "pose", "names": list(CUBE_POSE_NAMES)}},
        task="aloha_transfer_cube",
        description=("genpolicy_ros ALOHA transfer-cube (gym-aloha scene): scripted IK expert, right arm picks "
                     "the cube and hands it to the left arm; grippers normalised 0 closed / 1 open (ALOHA's "
                     f"puppet finger positions {robot.GRIPPER_POSITION_CLOSE} / {robot.GRIPPER_POSITION_OPEN} m); "
                     f"cube x in {list(task.cube_x_range)}, y in {list(task.cube_y_range)} m"),
    )


@dataclass(frozen=True)
class CommandNoise:
    """Perturbation of the *executed* expert commands while the data keeps the plan (DART,
    Laskey et al. 2017): the recorded states wander off the planned path, and the recorded
    actions (the plan) lead back to it, so the data covers the recovery a closed-loop
    policy needs after its own small errors. Per arm joint an Ornstein-Uhlenbeck process
    (stationary std ``std_rad``, correlation time ``tau_s``); grippers get none."""

    std_rad: float = 0.0
    tau_s: float = 0.3

    def __post_init__(self):
        if not (np.isfinite(self.std_rad) and 0.0 <= self.std_rad <= 0.2):
            raise ValueError(f"CommandNoise.std_rad must lie in [0, 0.2] rad, got {self.std_rad}")
        if not (np.isfinite(self.tau_s) and self.tau_s > 0):
            raise ValueError(f"CommandNoise.tau_s must be > 0 s, got {self.tau_s}")

    def offsets(self, steps: int, dt: float, rng: np.random.Generator) -> np.ndarray:
        """Command offsets [steps, 14] (zero on the grippers), starting at 0."""
        out = np.zeros((steps, 14))
        if self.std_rad == 0.0:
            return out
        a = float(np.exp(-dt / self.tau_s))
        kick = self.std_rad * np.sqrt(1.0 - a * a)
        arm = [i for i in range(14) if i not in robot.GRIPPER_INDICES]
        x = np.zeros(len(arm))
        for k in range(steps):
            out[k, arm] = x
            x = a * x + kick * rng.standard_normal(len(arm))
        return out


@dataclass
class EpisodeRecord:
    episode: Episode
    evaluation: dict  # env.evaluate() at the end
    commands: np.ndarray  # [N, 14] the planned commands (= episode.action, float64; sent unless noise)


def run_expert_episode(env: AlohaTransferCubeEnv, seed: int, expert_config: Optional[ExpertConfig] = None,
                       with_images: bool = False, noise: Optional[CommandNoise] = None) -> EpisodeRecord:
    """Reset ``env`` with ``seed``, plan the expert and play it for the task's episode
    (with ``noise``: executing plan + offsets, recording the plan; :class:`CommandNoise`)."""
    obs = env.reset(seed=seed)
    expert = TransferCubeExpert.for_env(env, expert_config)
    dt = env.control_dt
    offsets = (noise or CommandNoise()).offsets(env.config.episode_steps, dt, np.random.default_rng([seed, 7]))
    stamps, states, commands, frames = [], [], [], {cam: [] for cam in env.camera_names}
    for k in range(env.config.episode_steps):
        command = expert.action(obs.time_s + dt)  # [14]
        stamps.append(obs.time_s)
        states.append(np.concatenate([obs.joint_positions, obs.inputs["cube_pose"]]))  # [21]
        commands.append(command)
        for cam in frames if with_images else ():
            frames[cam].append(obs.images[cam])  # [H, W, 3] uint8
        obs = env.step(command + offsets[k], dt, with_image=with_images)
    commands = np.asarray(commands)  # [N, 14]
    episode = Episode(
        timestamp=np.asarray(stamps, dtype=np.float64),  # [N]
        action=commands.astype(np.float32),  # [N, 14]
        state=np.asarray(states, dtype=np.float32),  # [N, 21]
        images={cam: np.stack(f) for cam, f in frames.items()} if with_images else {},  # [N, H, W, 3]
    )
    return EpisodeRecord(episode=episode, evaluation=env.evaluate(), commands=commands)


def collect_expert_episodes(out_dir, num_episodes: int, *, seed: int = 0, with_images: bool = False,
                            task: Optional[AlohaTaskConfig] = None, expert_config: Optional[ExpertConfig] = None,
                            progress: bool = True, keep_failures: bool = False,
                            noise: Optional[CommandNoise] = None) -> tuple[EpisodeDataset, list[dict]]:
    """Record ``num_episodes`` expert demonstrations into a new data set at ``out_dir``.

    Episode i uses reset seed :func:`episode_seed`\\ (seed, i). Failed demonstrations are
    left out unless ``keep_failures`` (so the data set may hold fewer episodes); the
    evaluations of all episodes are returned."""
    task = task or AlohaTaskConfig()
    env = AlohaTransferCubeEnv(task, render=with_images)
    dataset = EpisodeDataset.create(Path(out_dir), dataset_metadata(task, with_images))
    evaluations = []
    iterator = range(num_episodes)
    if progress:
        from tqdm import tqdm

        iterator = tqdm(iterator, desc="collect", unit="episode")
    try:
        for index in iterator:
            record = run_expert_episode(env, episode_seed(seed, index), expert_config, with_images, noise)
            evaluations.append(record.evaluation)
            if record.evaluation["success"] or keep_failures:
                dataset.append(record.episode)
    finally:
        env.close()
    return dataset, evaluations


ChunkPolicy = Callable[[dict], np.ndarray]  # observation dict -> [T_p, 14] chunk (row 0 = now)


@dataclass
class RolloutResult:
    evaluation: dict  # env.evaluate() at the end of the episode
    commands: np.ndarray  # [N, 14]
    states: np.ndarray  # [N, 21] observed before each command

    @property
    def success(self) -> bool:
        return bool(self.evaluation["success"])


def resample_chunk(chunk: np.ndarray, chunk_dt: float, control_dt: float) -> np.ndarray:
    """Chunk rows ``chunk_dt`` apart [T_p, D] -> rows ``control_dt`` apart over the same span
    (linear interpolation; row 0 stays row 0) [1 + floor((T_p - 1) * chunk_dt / control_dt), D]."""
    ratio = chunk_dt / control_dt
    if abs(ratio - round(ratio)) > 1e-6 or round(ratio) < 1:
        raise ValueError(f"chunk rows must be a whole number of control steps apart; got {chunk_dt} s vs "
                         f"{control_dt} s")
    ratio = int(round(ratio))
    if ratio == 1:
        return chunk
    t_rows = np.arange(len(chunk)) * ratio  # [T_p] in control steps
    t_out = np.arange((len(chunk) - 1) * ratio + 1)  # [T_out]
    return np.stack([np.interp(t_out, t_rows, chunk[:, j]) for j in range(chunk.shape[1])], axis=1)


def rollout(policy: ChunkPolicy, env: AlohaTransferCubeEnv, *, seed: int, T_o: int, action_horizon: int,
            with_images: bool = False, chunk_dt: Optional[float] = None,
            on_step: Optional[Callable[[int], None]] = None) -> RolloutResult:
    """One receding-horizon episode in simulated time (no latency): from the last ``T_o``
    observations (``{"state": [T_o, 21]}``, plus ``"images": {camera: [T_o, H, W, 3]}``,
    ``chunk_dt`` apart) ask ``policy`` for a chunk and execute its first ``action_horizon``
    rows. Chunk rows ``chunk_dt`` apart (default: the env's control period; a whole multiple
    of it) are interpolated linearly onto the 50 Hz control steps. ``on_step(k)`` runs after
    control step k (e.g. to render a frame)."""
    if T_o < 1 or action_horizon < 1:
        raise ValueError("T_o and action_horizon must be >= 1")
    dt = env.control_dt
    stride = int(round((chunk_dt or dt) / dt))  # control steps per chunk row
    obs = env.reset(seed=seed)
    history = [obs]
    queue: list[np.ndarray] = []
    commands, states = [], []
    for k in range(env.config.episode_steps):
        if not queue:
            # observations at t, t - chunk_dt, ... (the first one repeated before the episode start)
            window = [history[max(len(history) - 1 - stride * i, 0)] for i in reversed(range(T_o))]
            observation = {"state": np.stack([np.concatenate([o.joint_positions, o.inputs["cube_pose"]])
                                              for o in window]).astype(np.float32)}  # [T_o, 21]
            if with_images:
                observation["images"] = {cam: np.stack([o.images[cam] for o in window])  # [T_o, H, W, 3]
                                         for cam in env.camera_names}
            chunk = np.asarray(policy(observation), dtype=float)  # [T_p, 14]
            if chunk.ndim != 2 or chunk.shape[1] != 14 or len(chunk) < 1:
                raise ValueError(f"policy returned a chunk of shape {chunk.shape}; expected [T_p, 14]")
            queue = list(resample_chunk(chunk, stride * dt, dt)[:action_horizon * stride])
        command = np.clip(queue.pop(0), robot.JOINT_LOWER, robot.JOINT_UPPER)  # [14]
        states.append(np.concatenate([obs.joint_positions, obs.inputs["cube_pose"]]))
        commands.append(command)
        obs = env.step(command, dt, with_image=with_images)
        history.append(obs)
        history = history[-(stride * T_o + 1):]
        if on_step is not None:
            on_step(k)
    return RolloutResult(evaluation=env.evaluate(), commands=np.asarray(commands), states=np.asarray(states))
