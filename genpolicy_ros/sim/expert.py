"""Scripted multimodal expert for the reaching task (ROS-free).

Per episode the expert picks one of the two inverse-kinematics solutions at random
(elbow up or elbow down, probability 1/2 each) and moves there along a minimum-jerk
profile in joint space, then holds. Its demonstrations are therefore genuinely bimodal:
for the same observation (stretched arm pointing at the target) half of them bend the
elbow one way and half the other.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .reach_env import JOINT_LOWER, JOINT_UPPER, inverse_kinematics


def minimum_jerk(s: np.ndarray | float) -> np.ndarray:
    """Minimum-jerk position profile on s ∈ [0, 1] (Flash & Hogan 1985): 10s³ − 15s⁴ + 6s⁵."""
    s = np.clip(np.asarray(s, dtype=float), 0.0, 1.0)
    return s**3 * (10.0 - 15.0 * s + 6.0 * s**2)


def ramped_profile(t: np.ndarray | float, distance: float, velocity: float, ramp_s: float) -> np.ndarray:
    """Normalised position (0 → 1) of a move over ``distance`` at peak ``velocity``: the
    velocity rises from 0 to ``velocity`` along a smoothstep (3x² − 2x³) in ``ramp_s``, holds,
    and falls back the same way; duration ``distance / velocity + ramp_s`` (peak acceleration
    1.5 · velocity / ramp_s). Moves too short for a plateau use a proportionally lower peak."""
    t = np.asarray(t, dtype=float)
    distance = abs(float(distance))
    if distance == 0.0:
        return np.ones_like(t)
    velocity = min(velocity, distance / ramp_s)  # short move: no plateau, lower peak velocity
    duration = distance / velocity + ramp_s
    x = np.clip(t / ramp_s, 0.0, 1.0)
    y = np.clip((t - (duration - ramp_s)) / ramp_s, 0.0, 1.0)
    plateau = np.clip(t - ramp_s, 0.0, duration - 2.0 * ramp_s)
    position = velocity * (ramp_s * (x**3 - x**4 / 2) + plateau + ramp_s * (y - (y**3 - y**4 / 2)))
    return np.where(t >= duration, 1.0, np.clip(position / distance, 0.0, 1.0))


@dataclass
class ReachExpert:
    """Joint-space minimum-jerk reach to the elbow-up or elbow-down IK solution."""

    start_q: np.ndarray  # [2] arm joint positions at the start
    target_xy: np.ndarray  # [2]
    elbow_sign: int  # +1 elbow up, -1 elbow down
    move_s: float = 1.6  # duration of the reach
    # Obstacle variant: the shoulder swings towards the target heading (the average of the
    # two IK shoulder angles) — on the move_s minimum-jerk profile, or, with swing_velocity
    # (rad/s), on `ramped_profile` (constant swing_velocity between smooth ramps of
    # swing_ramp_s); from branch_at_s (s) the elbow folds to its mode's goal and the shoulder
    # adds its mode's offset, both on one fold profile: minimum jerk over branch_move_s, or,
    # with fold_velocity (rad/s), `ramped_profile` with ramps of fold_ramp_s (fast early
    # motion within a velocity limit). branch_at_s None = one joint-space profile.
    branch_at_s: float | None = None
    branch_move_s: float = 0.3
    fold_velocity: float | None = None
    fold_ramp_s: float = 0.2
    swing_velocity: float | None = None
    swing_ramp_s: float = 0.2

    def __post_init__(self):
        self.start_q = np.asarray(self.start_q, dtype=float)
        goal = inverse_kinematics(self.target_xy, self.elbow_sign)
        # Take the shoulder's short way round.
        delta = (goal[0] - self.start_q[0] + np.pi) % (2 * np.pi) - np.pi
        self.goal_q = np.clip(np.array([self.start_q[0] + delta, goal[1]]), JOINT_LOWER, JOINT_UPPER)

    @classmethod
    def random(
        cls, start_q, target_xy, rng: np.random.Generator, move_s: float = 1.6, **branch
    ) -> "ReachExpert":
        return cls(
            start_q=start_q,
            target_xy=target_xy,
            elbow_sign=int(rng.choice([-1, 1])),
            move_s=move_s,
            **branch,
        )

    @property
    def mode(self) -> str:
        return "elbow_up" if self.elbow_sign > 0 else "elbow_down"

    def follows(self, obs) -> bool:
        """Whether the observation ``obs`` (a StepResult) can belong to this expert's episode:
        its target is this expert's (a new target means a new episode)."""
        target = np.asarray(obs.inputs["target"], dtype=float)  # [2]
        return bool(np.allclose(target, self.target_xy, atol=1e-9, rtol=0.0))

    def action(self, t: float | np.ndarray) -> np.ndarray:
        """Position target [.., 2] at time t (s) since the start of the episode."""
        s = minimum_jerk(np.asarray(t, dtype=float) / self.move_s)[..., None]
        if self.branch_at_s is None:
            return self.start_q + s * (self.goal_q - self.start_q)
        heading = np.arctan2(self.target_xy[1], self.target_xy[0])
        common = self.start_q[0] + (heading - self.start_q[0] + np.pi) % (2 * np.pi) - np.pi  # [] shoulder
        if self.swing_velocity is not None:
            s = ramped_profile(np.asarray(t, dtype=float), common - self.start_q[0], self.swing_velocity,
                               self.swing_ramp_s)[..., None]
        if self.fold_velocity is None:
            s_branch = minimum_jerk((np.asarray(t, dtype=float) - self.branch_at_s) / self.branch_move_s)
        else:
            s_branch = ramped_profile(np.asarray(t, dtype=float) - self.branch_at_s,
                                      self.goal_q[1] - self.start_q[1], self.fold_velocity, self.fold_ramp_s)
        shoulder = self.start_q[0] + s[..., 0] * (common - self.start_q[0]) + s_branch * (self.goal_q[0] - common)
        elbow = self.start_q[1] + s_branch * (self.goal_q[1] - self.start_q[1])
        return np.stack([shoulder, elbow], axis=-1)
