"""ALOHA bimanual transfer-cube in MuJoCo (ROS-free), in the shape of ENV_PROTOCOL (``ReachEnv``'s).

Two ViperX 300 arms (6 joints + parallel gripper each) face each other across a table; a
4 cm red cube lies at a random place on the right arm's side. The right arm picks it up and
hands it to the left arm (ACT, Zhao et al. 2023; gym-aloha ``AlohaTransferCube-v0``). The
scene is gym-aloha's MJCF (:mod:`.assets`): position actuators, 2 ms physics step; one
command row every ``control_dt`` = 0.02 s (50 Hz) as in ACT / gym-aloha (``DT``).

- **Commands** (``action_names``, 14): absolute arm joint targets (rad) and the normalised
  gripper opening (0 closed, 1 open; :mod:`.robot` states the mapping to the finger
  positions), left arm then right arm. Arm targets are clipped to the joint limits,
  grippers to [0, 1]; non-finite values or a wrong size raise ``ValueError``.
- **JointState** (``joint_names`` = the same 14): arm joint positions and the *normalised*
  gripper opening (from the left finger's slide joint), velocities likewise (gripper in
  opening/s).
- **Non-joint input** ``cube_pose``: ``cube_x, cube_y, cube_z`` (m, world frame: x from
  the left arm towards the right arm, y away from the arms' bases, z up from the table top)
  and the orientation quaternion ``cube_qw, cube_qx, cube_qy, cube_qz``.
- **Cameras**: any of the MJCF's (``top``, ``angle``, ``left_pillar``, ``right_pillar``,
  ``front_close``, ``left_wrist``, ``right_wrist``), all at ``image_size``; default ``top``
  at 120x160 (ACT and gym-aloha render 480x640; see :mod:`.assets` for the cost here).
  ``render=False`` creates no renderer.
- **Reset**: both arms at ALOHA's start pose; the cube's centre uniform in x ∈ [0, 0.2],
  y ∈ [0.4, 0.6] (gym-aloha ``utils.sample_box_pose`` and ACT ``sample_box_pose``: the same
  ranges), axis-aligned. gym-aloha puts it at z = 0.05 and lets it fall 3 cm onto the table;
  we place it resting (``cube_z`` = 0.02, its half size) so that the first observations are
  not a falling cube.
- **Outcome**: :meth:`AlohaTransferCubeEnv.evaluate` (:mod:`.success`): success and the
  stages grasped / lifted / transferred, failure mode, the benchmark's own score.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from . import robot
from .assets import TCP_SITES, build_model
from .success import CUBE_HALF_SIZE, ContactClassifier, TransferCubeMonitor

CUBE_POSE_NAMES = ("cube_x", "cube_y", "cube_z", "cube_qw", "cube_qx", "cube_qy", "cube_qz")
CUBE_JOINT = "red_box_joint"
CAMERAS = ("top", "angle", "left_pillar", "right_pillar", "front_close", "left_wrist", "right_wrist")
# gym-aloha / ACT cube ranges (sample_box_pose): x in [0.0, 0.2], y in [0.4, 0.6] m.
CUBE_X_RANGE = (0.0, 0.2)
CUBE_Y_RANGE = (0.4, 0.6)


@dataclass(frozen=True)
class AlohaTaskConfig:
    """Task parameters; validated on construction."""

    cube_x_range: tuple[float, float] = CUBE_X_RANGE
    cube_y_range: tuple[float, float] = CUBE_Y_RANGE
    cube_z: float = CUBE_HALF_SIZE  # spawn height of the cube's centre (m); 0.02 = resting
    episode_s: float = 8.0  # ACT's sim_transfer_cube episodes: 400 steps at 50 Hz
    control_dt: float = 0.02  # s per command row (50 Hz)
    cameras: tuple[str, ...] = ("top",)
    image_size: tuple[int, int] = (120, 160)  # (H, W) of every camera
    render_shadows: bool = False  # the scene's shadow map + multisampling: ~7x slower on a CPU
    min_lift_m: float = 0.01  # "lifted": cube centre this far above its resting height
    fail_on_arm_collision: bool = True

    def __post_init__(self):
        for name in ("cube_x_range", "cube_y_range"):
            lo, hi = getattr(self, name)
            if not lo <= hi:
                raise ValueError(f"{name} must be (low, high) with low <= high; got {getattr(self, name)}")
        if not (-0.2 <= self.cube_x_range[0] and self.cube_x_range[1] <= 0.3
                and 0.3 <= self.cube_y_range[0] and self.cube_y_range[1] <= 0.7):
            raise ValueError("the cube must lie on the table within the right arm's reach: "
                             f"x in [-0.2, 0.3], y in [0.3, 0.7]; got {self.cube_x_range}, {self.cube_y_range}")
        if not CUBE_HALF_SIZE <= self.cube_z <= 0.2:
            raise ValueError(f"cube_z must lie in [{CUBE_HALF_SIZE}, 0.2] m; got {self.cube_z}")
        if not (self.episode_s > 0 and self.control_dt > 0):
            raise ValueError("episode_s and control_dt must be > 0")
        if abs(self.control_dt / 0.002 - round(self.control_dt / 0.002)) > 1e-9:
            raise ValueError(f"control_dt must be a multiple of the 2 ms physics step; got {self.control_dt}")
        unknown = [c for c in self.cameras if c not in CAMERAS]
        if unknown or len(set(self.cameras)) != len(self.cameras):
            raise ValueError(f"cameras must be distinct names among {CAMERAS}; got {self.cameras}")
        if len(self.image_size) != 2 or min(self.image_size) < 16:
            raise ValueError(f"image_size must be (H, W) with both >= 16; got {self.image_size}")
        if self.min_lift_m < 0:
            raise ValueError("min_lift_m must be >= 0")

    @property
    def episode_steps(self) -> int:
        return int(round(self.episode_s / self.control_dt))


@dataclass
class StepResult:
    time_s: float
    joint_positions: np.ndarray  # [14] arm joints (rad), grippers normalised
    joint_velocities: np.ndarray  # [14] rad/s, grippers in opening/s
    inputs: dict  # "cube_pose" -> [7] x, y, z, qw, qx, qy, qz
    images: dict = field(default_factory=dict)  # camera -> [H, W, 3] uint8 RGB
    info: dict = field(default_factory=dict)


class AlohaTransferCubeEnv:
    """MuJoCo transfer-cube task. ``reset(seed)``, then ``step(q_target, duration_s)``.

    Time is simulated time (s) from the reset."""

    joint_names = robot.JOINT_NAMES
    action_names = robot.JOINT_NAMES
    state_inputs = {"cube_pose": CUBE_POSE_NAMES}

    def __init__(self, config: AlohaTaskConfig | None = None, render: bool = False):
        self.config = config or AlohaTaskConfig()
        if render:
            from ..reach_env import ensure_headless_gl

            ensure_headless_gl()  # MUJOCO_GL is read when mujoco is first imported
        import mujoco

        self._mj = mujoco
        self.model = build_model(render_shadows=self.config.render_shadows,
                                 offscreen_size=self.config.image_size if render else None)
        self.data = mujoco.MjData(self.model)
        self.timestep = float(self.model.opt.timestep)
        self.substeps_per_control = int(round(self.config.control_dt / self.timestep))
        self._index_model()
        self.contacts = ContactClassifier(self.model)
        self.monitor = TransferCubeMonitor(min_lift_m=self.config.min_lift_m,
                                           fail_on_arm_collision=self.config.fail_on_arm_collision)
        self._renderer = None
        if render and self.config.cameras:
            h, w = self.config.image_size
            self._renderer = mujoco.Renderer(self.model, h, w)
        self.rng = np.random.default_rng(0)
        self._substeps = 0

    def _index_model(self) -> None:
        m, mj = self.model, self._mj
        arm_joints = [robot.MJCF_PREFIX[arm] + j for arm in robot.ARMS for j in robot.ARM_JOINTS]  # 12
        fingers = [robot.MJCF_PREFIX[arm] + f for arm in robot.ARMS for f in robot.FINGER_JOINTS]  # 4: L l/r, R l/r
        joint_id = {n: mj.mj_name2id(m, mj.mjtObj.mjOBJ_JOINT, n) for n in arm_joints + fingers + [CUBE_JOINT]}
        missing = [n for n, i in joint_id.items() if i < 0]
        if missing:
            raise ValueError(f"ALOHA model lacks the joints {missing}")
        actuator_of = {int(m.actuator_trnid[a, 0]): a for a in range(m.nu)}
        self._arm_qadr = np.array([m.jnt_qposadr[joint_id[n]] for n in arm_joints])  # [12]
        self._arm_dadr = np.array([m.jnt_dofadr[joint_id[n]] for n in arm_joints])  # [12]
        self._arm_act = np.array([actuator_of[joint_id[n]] for n in arm_joints])  # [12]
        self._finger_qadr = np.array([m.jnt_qposadr[joint_id[n]] for n in fingers])  # [4]
        self._finger_dadr = np.array([m.jnt_dofadr[joint_id[n]] for n in fingers])  # [4]
        self._finger_act = np.array([actuator_of[joint_id[n]] for n in fingers])  # [4]
        self._cube_qadr = int(m.jnt_qposadr[joint_id[CUBE_JOINT]])
        self._cube_dadr = int(m.jnt_dofadr[joint_id[CUBE_JOINT]])
        # positions of the 12 arm joints inside the 14-vector (the grippers sit at 6 and 13)
        self._arm_slots = np.array([i for i in range(14) if i not in robot.GRIPPER_INDICES])
        self._tcp_site = {arm: mj.mj_name2id(m, mj.mjtObj.mjOBJ_SITE, TCP_SITES[arm]) for arm in robot.ARMS}

    # ------------------------------------------------------------------ episode control
    @property
    def camera_names(self) -> tuple[str, ...]:
        return tuple(self.config.cameras)

    @property
    def control_dt(self) -> float:
        return float(self.config.control_dt)

    @property
    def time(self) -> float:
        return float(self.data.time)

    def sample_cube_xy(self) -> np.ndarray:
        c = self.config
        return np.array([self.rng.uniform(*c.cube_x_range), self.rng.uniform(*c.cube_y_range)])  # [2]

    def reset(self, seed: int | None = None, cube_xy=None) -> StepResult:
        """Start pose, cube at ``cube_xy`` (m) or sampled from the configured ranges."""
        if seed is not None:
            self.rng = np.random.default_rng(seed)
        mj, d = self._mj, self.data
        mj.mj_resetData(self.model, d)
        xy = self.sample_cube_xy() if cube_xy is None else np.asarray(cube_xy, dtype=float).reshape(2)
        start = robot.start_pose()  # [14]
        d.qpos[self._arm_qadr] = start[self._arm_slots]
        d.qpos[self._finger_qadr] = [robot.START_FINGER, -robot.START_FINGER] * 2
        d.qpos[self._cube_qadr:self._cube_qadr + 7] = [xy[0], xy[1], self.config.cube_z, 1.0, 0.0, 0.0, 0.0]
        self._apply_command(start)
        mj.mj_forward(self.model, d)
        self.monitor.reset()
        self._substeps = 0
        return self.observe()

    def _apply_command(self, q_target: np.ndarray) -> None:
        q = np.clip(q_target, robot.JOINT_LOWER, robot.JOINT_UPPER)  # [14]
        self.data.ctrl[self._arm_act] = q[self._arm_slots]
        finger = robot.unnormalize_gripper(q[list(robot.GRIPPER_INDICES)])  # [2] left, right arm
        finger = np.clip(finger, *robot.FINGER_RANGE)
        self.data.ctrl[self._finger_act] = [finger[0], -finger[0], finger[1], -finger[1]]

    def step(self, q_target, duration_s: float, with_image: bool = True) -> StepResult:
        """Hold the 14 targets for ``duration_s`` of simulated time (whole physics steps);
        the stages are updated at every ``control_dt`` boundary."""
        q_target = np.asarray(q_target, dtype=float).reshape(-1)
        if q_target.shape != (14,) or not np.all(np.isfinite(q_target)):
            raise ValueError(f"command must be 14 finite values ({', '.join(self.action_names)}); got {q_target!r}")
        if not duration_s > 0:
            raise ValueError(f"duration_s must be > 0, got {duration_s}")
        self._apply_command(q_target)
        for _ in range(max(1, int(round(duration_s / self.timestep)))):
            self._mj.mj_step(self.model, self.data)
            self._substeps += 1
            if self._substeps % self.substeps_per_control == 0:
                self.monitor.update(self.contact_state())
        return self.observe(with_image=with_image)

    # ------------------------------------------------------------------ observation
    def contact_state(self):
        return self.contacts.classify(self.data, self.cube_pose()[2] - CUBE_HALF_SIZE)

    def cube_pose(self) -> np.ndarray:
        return self.data.qpos[self._cube_qadr:self._cube_qadr + 7].copy()  # [7] x y z qw qx qy qz

    def tcp_pose(self, arm: str) -> tuple[np.ndarray, np.ndarray]:
        """World position [3] and rotation matrix [3, 3] of an arm's tool centre point."""
        site = self._tcp_site[arm]
        return self.data.site_xpos[site].copy(), self.data.site_xmat[site].reshape(3, 3).copy()

    def joint_positions(self) -> np.ndarray:
        q = np.empty(14)
        q[self._arm_slots] = self.data.qpos[self._arm_qadr]
        q[list(robot.GRIPPER_INDICES)] = robot.normalize_gripper(self.data.qpos[self._finger_qadr[[0, 2]]])
        return q  # [14]

    def observe(self, with_image: bool = True) -> StepResult:
        qvel = np.empty(14)
        qvel[self._arm_slots] = self.data.qvel[self._arm_dadr]
        qvel[list(robot.GRIPPER_INDICES)] = robot.normalize_gripper_velocity(self.data.qvel[self._finger_dadr[[0, 2]]])
        images = {}
        if with_image and self._renderer is not None:
            images = {cam: self.render(cam) for cam in self.config.cameras}
        return StepResult(
            time_s=self.time,
            joint_positions=self.joint_positions(),
            joint_velocities=qvel,
            inputs={"cube_pose": self.cube_pose()},
            images=images,
            info={},
        )

    def render(self, camera: str = "top") -> np.ndarray:
        if self._renderer is None:
            raise RuntimeError("AlohaTransferCubeEnv was created with render=False (or without cameras)")
        self._renderer.update_scene(self.data, camera=camera)
        return self._renderer.render().copy()  # [H, W, 3] uint8 RGB

    def evaluate(self) -> dict:
        """Success, stages and failure mode of the episode so far (:mod:`.success`)."""
        return self.monitor.evaluate()

    def close(self) -> None:
        if self._renderer is not None:
            self._renderer.close()
            self._renderer = None
