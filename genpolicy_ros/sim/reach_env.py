"""A two-link planar reaching task with two equally valid solutions (ROS-free).

The arm (`assets/reach2d.xml`, shoulder + elbow, position-controlled) starts stretched out
towards a red target that lies *inside* its workspace. Every such target can be reached
with the elbow bent one way or the other (two inverse-kinematics solutions, mirror images
of each other about the line from the base to the target)::

        elbow "up"   o                      target x
                    / \\                   ...
      base o-------o   x   target          straight arm (the *average* of the
                    \\ /                   two modes) overshoots the target
        elbow "down" o

The average of the two joint-space solutions is the straight arm pointing at the target,
whose fingertip is `L1 + L2 - r` away from a target at distance `r`: with `r <= 0.16 m`
that is at least 6 cm, three times the success radius. A regression policy that averages
the modes therefore misses; a generative policy that commits to one succeeds.

**Success criterion**: at the end of the episode (``episode_s``, default 3 s) the
fingertip is within ``success_radius`` (default 2 cm) of the target. The **mode** of an
episode is the sign of the elbow angle at its end: ``elbow_up`` (q_elbow > +0.2 rad),
``elbow_down`` (< -0.2 rad), otherwise ``between``.

Names (the environment protocol, :mod:`genpolicy_ros.sim.protocol`): the robot's joints
``shoulder``, ``elbow`` (actuated; ``joint_names`` = ``action_names``) and one non-joint
input ``target`` with the entries ``target_x``, ``target_y`` (its position in metres; on
ROS a ``geometry_msgs/PointStamped`` on the topic ``target``). In the MJCF the target is a
body on two passive slide joints of those names; older recordings carry them as JointState
entries, which is still what :data:`ALL_JOINTS` names.

**Obstacle variant** (optional, off by default: ``ReachTaskConfig(obstacle=True)``, or
:func:`obstacle_task` for the measured parameters, which this paragraph quotes). Targets lie
0.17–0.19 m from the base. The arm starts stretched out ``start_offset_rad`` (0.8 rad)
counter-clockwise of the target's heading instead of pointing at it, and a low post of radius
``obstacle_size`` (3 cm) stands with its centre ``obstacle_distance`` (0.246 m) from the base
at the heading ``target heading + obstacle_heading_fraction · start_offset_rad`` (0.28 rad
off the target line): on the arc that the stretched fingertip (0.22 m) sweeps when the arm
swings towards the target without folding. Its inner edge (for the fingertip probe's centre:
``obstacle_distance − obstacle_size − FINGERTIP_RADIUS`` = 0.208 m) lies inside that arc and
outside the targets; the centre itself may lie beyond the arm's reach. The post is short:
the links pass over it, only the fingertip (a probe of radius ``FINGERTIP_RADIUS``) can
touch it. Its position is a function of the target, so a state-based policy that observes
``target_x``/``target_y`` knows where it is; no new joints. It is drawn in the camera image
(a brown cylinder) and is checked geometrically after every physics step: the fingertip
coming closer than ``obstacle_size + FINGERTIP_RADIUS`` to the post's axis is a
**collision**. The arm is not stopped (no contact forces); the episode is failed.
**Success criterion with the obstacle**: the fingertip ends within ``success_radius`` of
the target *and* never collided during the episode; ``evaluate()`` and ``StepResult.info``
report ``collided``.

Why it punishes averaging: the fingertip's distance from the base depends on the elbow
only, ``sqrt(0.0244 + 0.024 cos q_elbow)`` — 0.22 m at 0 and flat there (0.2175 m at
±0.3 rad, 0.208 m at ±0.67 rad) — so only a clearly folded elbow passes inside the post.
The expert of this variant (``ReachExpert(branch_at_s=0, swing_velocity=..., fold_velocity=...)``)
has **no common prefix**: from t = 0 the elbow folds towards its mode's goal at
``expert_fold_velocity`` (1.75 rad/s, reached along a smooth ramp of ``expert_fold_ramp_s`` =
0.2 s; the 1.06–1.38 rad folds take 0.81–0.99 s) while the shoulder swings towards the target
heading at ``expert_swing_velocity`` (0.9 rad/s after a 0.2 s ramp) plus its mode's IK offset
on the fold's profile. Both modes' fingertips cross the post's heading at about 0.68 s with
the elbow folded past ±1.0 rad (≥ 1.1 cm clearance kinematically, ≥ 2.7 mm in the
position-controlled sim with start noise). The average of the two modes folds nothing (elbow
0, the two folds cancel) — the stretched arm swinging to the target heading, fast from the
start — and hits the post at 0.55 s; so does every partial commitment c ≤ 0.5 (elbow at c of
either mode's path), by 0.58 s. A policy that averages the modes for its first chunk (0.4 s)
has by then swung the stretched arm most of the way to the post (the swing is fast from the
start; with a slow minimum-jerk start the averaged chunk barely moves and a state-feedback
regression policy simply resumes from an early-looking state) and would have to fold about
0.7 rad within about 0.2 s, beyond the node's velocity limit. Every
commanded joint velocity stays at or below 1.75 rad/s and every acceleration below 13.2 rad/s²
(also from starts 2σ of ``start_noise_rad`` = 0.02 rad off): inside the policy node's default
safety envelope (2 rad/s, 20 rad/s²). Demonstrations are collected *paired*
(each start shown both ways, ``collect_expert_episodes(..., paired_modes=True)``), so at the
start state a regression policy sees both modes with equal weight. Why no common prefix:
the policy node generates asynchronously — the next chunk is requested from an observation
taken while the current chunk executes and spliced onto it — so a shared prefix would let a
generative policy re-draw its mode mid-motion and blend two modes' chunks; with the modes
parting at once, every observation after the first chunk carries the mode.
``scripts/obstacle_geometry.py`` prints the clearances, contact times and the velocity
envelope. (With the start beside the target line the two modes are no longer exact mirror
images; the expert still picks each with probability 1/2, and the mode of an episode is
classified as above.)
"""
from __future__ import annotations

import math
import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .protocol import StepResult

ASSET = Path(__file__).with_name("assets") / "reach2d.xml"
ARM_JOINTS = ("shoulder", "elbow")  # the robot's joints (JointState) = the commanded joints
TARGET_INPUT = "target"  # the non-joint input: the target's position (PointStamped)
TARGET_NAMES = ("target_x", "target_y")  # its named entries (x, y)
STATE_INPUTS = {TARGET_INPUT: TARGET_NAMES}
STATE_NAMES = ARM_JOINTS + TARGET_NAMES  # everything a state-based policy observes
TARGET_JOINTS = TARGET_NAMES  # legacy name: the target as two JointState entries (old bags)
ALL_JOINTS = STATE_NAMES  # legacy name: every MJCF joint, as the JointState of old bags held them
CONTROL_DT = 0.05  # seconds per action row of the expert's demonstrations
LINK_LENGTHS = (0.12, 0.10)  # metres, must match assets/reach2d.xml
JOINT_LOWER = np.array([-math.pi, -2.6])
JOINT_UPPER = np.array([math.pi, 2.6])
MODES = ("elbow_up", "elbow_down", "between")
FINGERTIP_RADIUS = 0.008  # metres, the fingertip site's size in assets/reach2d.xml


@dataclass(frozen=True)
class ReachTaskConfig:
    """Task parameters; validated on construction."""

    target_radius: tuple[float, float] = (0.07, 0.16)  # distance of target from base (m)
    # Direction of the target from the base (rad); kept away from ±π so that both IK
    # solutions stay inside the shoulder's joint limits.
    target_heading: tuple[float, float] = (-1.6, 1.6)
    start_noise_rad: float = 0.05  # std of the start pose around the straight arm
    episode_s: float = 3.0
    success_radius: float = 0.02
    physics_substeps_per_s: int = 500  # = 1 / MJCF timestep
    image_size: tuple[int, int] = (64, 64)  # (H, W)
    camera: str = "overhead"
    # Optional obstacle (see the module docstring); off by default.
    obstacle: bool = False
    obstacle_distance: float = 0.246  # post centre's distance from the base (m; may exceed the reach)
    obstacle_size: float = 0.030  # post radius (m)
    start_offset_rad: float = 0.8  # with the obstacle: start heading = target heading + this
    obstacle_heading_fraction: float = 0.35  # post heading = target heading + this * start_offset_rad
    expert_swing_velocity: float = 0.9  # with the obstacle: the expert's shoulder swing velocity (rad/s) ...
    expert_swing_ramp_s: float = 0.2  # ... reached (and left) along smooth ramps of this (s)
    expert_branch_s: float = 0.0  # its modes part at this time (s)
    expert_fold_velocity: float = 1.75  # ... and fold the elbow at this velocity (rad/s)
    expert_fold_ramp_s: float = 0.2  # ... reached (and left) along smooth ramps of this (s)

    def __post_init__(self):
        lo, hi = self.target_radius
        reach = sum(LINK_LENGTHS)
        if not (0.0 < lo < hi < reach):
            raise ValueError(f"target_radius must satisfy 0 < lo < hi < {reach} (arm reach); got {self.target_radius}")
        if not (-math.pi / 2 - 0.2 <= self.target_heading[0] < self.target_heading[1] <= math.pi / 2 + 0.2):
            raise ValueError(f"target_heading must lie within ±(π/2 + 0.2) rad; got {self.target_heading}")
        if self.episode_s <= 0 or self.success_radius <= 0 or self.start_noise_rad < 0:
            raise ValueError("episode_s and success_radius must be > 0, start_noise_rad >= 0")
        if len(self.image_size) != 2 or min(self.image_size) < 16:
            raise ValueError(f"image_size must be (H, W) with both >= 16; got {self.image_size}")
        if self.obstacle:
            keep_out = self.obstacle_size + FINGERTIP_RADIUS
            if min(self.obstacle_size, self.expert_swing_velocity, self.expert_swing_ramp_s, self.expert_fold_velocity,
                   self.expert_fold_ramp_s) <= 0 or self.expert_branch_s < 0:
                raise ValueError("obstacle_size, expert_swing_velocity, expert_swing_ramp_s, expert_fold_velocity, "
                                 "expert_fold_ramp_s must be > 0, expert_branch_s >= 0")
            if not (0 < self.obstacle_heading_fraction < 1):
                raise ValueError("obstacle_heading_fraction must lie in (0, 1)")
            # The post's inner edge (as the fingertip probe's centre sees it) must lie beyond the
            # targets and within the straight arm's reach; the centre itself may be out of reach.
            if not (hi < self.obstacle_distance - keep_out < reach):
                raise ValueError(
                    f"with the obstacle, target_radius[1] < obstacle_distance - {keep_out} < {reach} "
                    f"(post outside the targets, its inner edge within the arm's reach); got {self.target_radius}, "
                    f"{self.obstacle_distance}"
                )
            if not (0 < self.start_offset_rad and self.target_heading[1] + self.start_offset_rad < math.pi):
                raise ValueError("start_offset_rad must be > 0 and keep the start heading below +π")


def obstacle_task(**overrides) -> ReachTaskConfig:
    """The obstacle variant with the parameters measured in ``scripts/obstacle_geometry.py``:
    targets 0.17–0.19 m from the base (elbow folds of 1.06–1.37 rad, small enough for the
    expert to fold within the node's default velocity limit), start 0.8 rad beside the
    target (start noise 0.02 rad), post of radius 3 cm centred 0.246 m from the base (its
    inner edge, for the fingertip probe's centre, at 0.208 m: inside the straight arm's
    0.22 m, outside the targets) 0.28 rad off the target line; expert: modes part at t = 0,
    shoulder swing at 0.9 rad/s, elbow fold at 1.75 rad/s, both after 0.2 s ramps."""
    params = dict(
        obstacle=True,
        target_radius=(0.17, 0.19),
        start_noise_rad=0.02,
        obstacle_distance=0.246,
        obstacle_size=0.03,
        start_offset_rad=0.8,
        obstacle_heading_fraction=0.35,
        expert_swing_velocity=0.9,
        expert_swing_ramp_s=0.2,
        expert_branch_s=0.0,
        expert_fold_velocity=1.75,
        expert_fold_ramp_s=0.2,
    )
    params.update(overrides)
    return ReachTaskConfig(**params)


def obstacle_position(target_xy: np.ndarray, config: ReachTaskConfig) -> np.ndarray:
    """Centre (x, y) of the post for a target: ``obstacle_distance`` from the base at the
    heading ``target heading + obstacle_heading_fraction · start_offset_rad``."""
    heading = math.atan2(float(target_xy[1]), float(target_xy[0]))
    heading += config.obstacle_heading_fraction * config.start_offset_rad
    return config.obstacle_distance * np.array([math.cos(heading), math.sin(heading)])


def fingertip_clearance(q: np.ndarray, post_xy: np.ndarray, config: ReachTaskConfig) -> np.ndarray:
    """Distance (m) between the fingertip probe's surface and the post's surface for joint
    angles q [..., 2]; negative = collision."""
    tip = forward_kinematics(q)
    return np.linalg.norm(tip - np.asarray(post_xy, dtype=float), axis=-1) - config.obstacle_size - FINGERTIP_RADIUS


def forward_kinematics(q: np.ndarray) -> np.ndarray:
    """Fingertip (x, y) of joint angles q = [shoulder, elbow] (any leading dims)."""
    q = np.asarray(q, dtype=float)
    l1, l2 = LINK_LENGTHS
    x = l1 * np.cos(q[..., 0]) + l2 * np.cos(q[..., 0] + q[..., 1])
    y = l1 * np.sin(q[..., 0]) + l2 * np.sin(q[..., 0] + q[..., 1])
    return np.stack([x, y], axis=-1)


def inverse_kinematics(target_xy: np.ndarray, elbow_sign: int) -> np.ndarray:
    """Joint angles [shoulder, elbow] putting the fingertip on target_xy (law of cosines).

    elbow_sign=+1 gives the elbow-up (q_elbow > 0) solution, -1 the elbow-down one.
    """
    if elbow_sign not in (-1, 1):
        raise ValueError("elbow_sign must be +1 or -1")
    l1, l2 = LINK_LENGTHS
    x, y = float(target_xy[0]), float(target_xy[1])
    r2 = x * x + y * y
    cos_q2 = np.clip((r2 - l1 * l1 - l2 * l2) / (2 * l1 * l2), -1.0, 1.0)
    q2 = elbow_sign * math.acos(cos_q2)
    q1 = math.atan2(y, x) - math.atan2(l2 * math.sin(q2), l1 + l2 * math.cos(q2))
    q1 = (q1 + math.pi) % (2 * math.pi) - math.pi
    return np.array([q1, q2])


def classify_mode(q_elbow: float, threshold: float = 0.2) -> str:
    if q_elbow > threshold:
        return "elbow_up"
    if q_elbow < -threshold:
        return "elbow_down"
    return "between"


def ensure_headless_gl() -> None:
    """Pick a headless OpenGL backend for MuJoCo rendering (OSMesa when installed, else EGL)
    if the user set none. MuJoCo reads ``MUJOCO_GL`` once, at its first import: call this
    before anything imports ``mujoco``."""
    if "MUJOCO_GL" in os.environ:
        return
    import ctypes.util

    os.environ["MUJOCO_GL"] = "osmesa" if ctypes.util.find_library("OSMesa") else "egl"


@dataclass
class ReachStepResult(StepResult):
    """:class:`~genpolicy_ros.sim.protocol.StepResult` plus the fingertip (reach task)."""

    fingertip: np.ndarray = field(default_factory=lambda: np.zeros(2))  # [2] m
    distance: float = math.inf  # fingertip to target (m)


class ReachEnv:
    """MuJoCo reaching task. `reset(seed)`, then `step(q_target, duration_s)` repeatedly.

    Time is simulated time in seconds from the reset. Commands are absolute position
    targets for [shoulder, elbow] (rad); non-finite commands are refused (ValueError) —
    a real position controller would also refuse them. Follows the environment protocol
    (:mod:`genpolicy_ros.sim.protocol`).
    """

    joint_names = ARM_JOINTS
    action_names = ARM_JOINTS
    state_inputs = STATE_INPUTS
    control_dt = CONTROL_DT

    def __init__(self, config: ReachTaskConfig | None = None, render: bool = False):
        if render:
            ensure_headless_gl()  # MUJOCO_GL is read when mujoco is first imported
        import mujoco  # imported here so the module itself imports without mujoco

        self.config = config or ReachTaskConfig()
        self._mj = mujoco
        if self.config.obstacle:
            self.model = self._model_with_obstacle()
        else:
            self.model = mujoco.MjModel.from_xml_path(str(ASSET))
        self.data = mujoco.MjData(self.model)
        self.timestep = float(self.model.opt.timestep)
        self._qadr = {n: int(self.model.joint(n).qposadr[0]) for n in ALL_JOINTS}
        self._dadr = {n: int(self.model.joint(n).dofadr[0]) for n in ALL_JOINTS}
        self._renderer = None
        if render:
            h, w = self.config.image_size
            self._renderer = mujoco.Renderer(self.model, h, w)
        self.target = np.zeros(2)
        self.rng = np.random.default_rng(0)
        self.obstacle_xy = None  # [2] post centre while the obstacle is on
        self.collided = False
        self.min_clearance = math.inf

    @property
    def camera_names(self) -> tuple:
        return (self.config.camera,)

    def _model_with_obstacle(self):
        """The MJCF plus the post: a mocap body moved to its place at every reset; no
        contacts (contype 0), collisions are checked geometrically in `step`."""
        mj = self._mj
        spec = mj.MjSpec.from_file(str(ASSET))
        body = spec.worldbody.add_body(name="obstacle", mocap=True)
        body.add_geom(
            name="obstacle",
            type=mj.mjtGeom.mjGEOM_CYLINDER,
            size=[self.config.obstacle_size, 0.006, 0.0],
            pos=[0.0, 0.0, 0.0],
            rgba=[0.55, 0.35, 0.15, 1.0],
            contype=0,
            conaffinity=0,
        )
        return spec.compile()

    # ------------------------------------------------------------------ episode control
    def reset(self, seed: int | None = None, target_xy: np.ndarray | None = None) -> StepResult:
        if seed is not None:
            self.rng = np.random.default_rng(seed)
        mj = self._mj
        mj.mj_resetData(self.model, self.data)
        if target_xy is None:
            radius = self.rng.uniform(*self.config.target_radius)
            angle = self.rng.uniform(*self.config.target_heading)
            target_xy = np.array([radius * math.cos(angle), radius * math.sin(angle)])
        self.target = np.asarray(target_xy, dtype=float)
        # Stretched arm pointing at the target: both elbow solutions are equally close
        # (with the obstacle: pointing start_offset_rad beside it).
        heading = math.atan2(self.target[1], self.target[0])
        if self.config.obstacle:
            heading += self.config.start_offset_rad  # stretched out beside the target, see above
        q0 = np.array([heading, 0.0]) + self.rng.normal(0.0, self.config.start_noise_rad, size=2)
        q0 = np.clip(q0, JOINT_LOWER, JOINT_UPPER)
        self.data.qpos[self._qadr["shoulder"]] = q0[0]
        self.data.qpos[self._qadr["elbow"]] = q0[1]
        self.data.qpos[self._qadr["target_x"]] = self.target[0]
        self.data.qpos[self._qadr["target_y"]] = self.target[1]
        self.data.ctrl[:] = q0
        if self.config.obstacle:
            self.obstacle_xy = obstacle_position(self.target, self.config)
            self.data.mocap_pos[0] = [self.obstacle_xy[0], self.obstacle_xy[1], 0.0]
            self.collided = False
            self.min_clearance = math.inf
            self._check_obstacle()
        mj.mj_forward(self.model, self.data)
        return self.observe()

    def _check_obstacle(self) -> None:
        l1, l2 = LINK_LENGTHS
        q1 = self.data.qpos[self._qadr["shoulder"]]
        q12 = q1 + self.data.qpos[self._qadr["elbow"]]
        dx = l1 * math.cos(q1) + l2 * math.cos(q12) - self.obstacle_xy[0]
        dy = l1 * math.sin(q1) + l2 * math.sin(q12) - self.obstacle_xy[1]
        clearance = math.hypot(dx, dy) - self.config.obstacle_size - FINGERTIP_RADIUS
        self.min_clearance = min(self.min_clearance, clearance)
        if clearance < 0.0:
            self.collided = True

    def step(self, q_target: np.ndarray, duration_s: float, with_image: bool = True) -> StepResult:
        """Hold position target q_target [2] for duration_s of simulated time; the result
        carries a rendered frame when the env renders and ``with_image`` is set."""
        q_target = np.asarray(q_target, dtype=float).reshape(-1)
        if q_target.shape != (2,) or not np.all(np.isfinite(q_target)):
            raise ValueError(f"command must be 2 finite joint positions; got {q_target!r}")
        self.data.ctrl[:] = np.clip(q_target, JOINT_LOWER, JOINT_UPPER)
        n = max(1, int(round(duration_s / self.timestep)))
        for _ in range(n):
            self._mj.mj_step(self.model, self.data)
            # The target is passive and must not drift (no actuator, gravity off).
            self.data.qpos[self._qadr["target_x"]] = self.target[0]
            self.data.qpos[self._qadr["target_y"]] = self.target[1]
            self.data.qvel[self._dadr["target_x"]] = 0.0
            self.data.qvel[self._dadr["target_y"]] = 0.0
            if self.obstacle_xy is not None:
                self._check_obstacle()
        return self.observe(with_image=with_image)

    # ------------------------------------------------------------------ observation
    @property
    def time(self) -> float:
        return float(self.data.time)

    def arm_positions(self) -> np.ndarray:
        return np.array([self.data.qpos[self._qadr[n]] for n in ARM_JOINTS])

    def observe(self, with_image: bool = True) -> ReachStepResult:
        qpos = np.array([self.data.qpos[self._qadr[n]] for n in ARM_JOINTS])  # [2]
        qvel = np.array([self.data.qvel[self._dadr[n]] for n in ARM_JOINTS])  # [2]
        target = np.array([self.data.qpos[self._qadr[n]] for n in TARGET_NAMES])  # [2]
        tip = forward_kinematics(qpos)  # [2]
        images = {self.config.camera: self.render()} if (with_image and self._renderer is not None) else {}
        info = {"collided": self.collided} if self.config.obstacle else {}
        return ReachStepResult(
            time_s=self.time,
            joint_positions=qpos,
            joint_velocities=qvel,
            inputs={TARGET_INPUT: target},
            images=images,
            info=info,
            fingertip=tip,
            distance=float(np.linalg.norm(tip - self.target)),
        )

    def render(self) -> np.ndarray:
        if self._renderer is None:
            raise RuntimeError("ReachEnv was created with render=False")
        self._renderer.update_scene(self.data, camera=self.config.camera)
        return self._renderer.render().copy()  # [H, W, 3] uint8 RGB

    def evaluate(self) -> dict:
        """Success and mode of the episode so far (call at the end of the episode)."""
        obs = self.observe(with_image=False)
        result = {
            "success": bool(obs.distance <= self.config.success_radius),
            "final_distance": obs.distance,
            "mode": classify_mode(float(obs.joint_positions[1])),
        }
        if self.config.obstacle:
            result["collided"] = bool(self.collided)
            result["min_clearance"] = float(self.min_clearance)
            result["success"] = result["success"] and not self.collided
        return result

    def close(self) -> None:
        if self._renderer is not None:
            self._renderer.close()
            self._renderer = None
