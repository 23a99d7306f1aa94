"""ALOHA bimanual transfer-cube (``aloha_transfer_cube``): two ViperX 300 arms, 14 commanded
dimensions at 50 Hz; the right arm picks a randomly placed cube and hands it to the left
(ACT, Zhao et al. 2023; gym-aloha ``AlohaTransferCube-v0``). See ``docs/aloha.md``.

Environment: :class:`~genpolicy_ros.sim.aloha.env.AlohaTransferCubeEnv` (gym-aloha's MJCF,
2 ms physics step); joints ``left_waist … left_gripper, right_waist … right_gripper`` with
the grippers normalised (0 closed, 1 open; :mod:`genpolicy_ros.sim.aloha.robot`); the cube
pose is the non-joint input ``cube_pose`` (PoseStamped: ``cube_x … cube_qz``); camera
``top`` at 120x160. Expert: the scripted IK plan of
:class:`~genpolicy_ros.sim.aloha.expert.TransferCubeExpert`, planned from the episode's
first observation (start pose and cube position) and played open loop. Success:
:mod:`genpolicy_ros.sim.aloha.success` (stages grasped / lifted / transferred; the
benchmark's own score as ``benchmark_success``).
"""
from __future__ import annotations

import threading
from typing import Optional, Tuple

import numpy as np

from ..sim.aloha import robot
from ..sim.aloha.success import MODES
from .spec import CameraSpec, StateInputSpec, TaskDefaults, TaskSpec

NAME = "aloha_transfer_cube"
CUBE_INPUT = "cube_pose"
CUBE_POSE_NAMES = ("cube_x", "cube_y", "cube_z", "cube_qw", "cube_qx", "cube_qy", "cube_qz")
CONTROL_DT = 0.02  # s per command row (ACT / gym-aloha: 50 Hz)
PHYSICS_STEP_HZ = 500.0  # the MJCF's 2 ms step
EPISODE_S = 8.0  # ACT's episode_len 400 at 50 Hz
TOP_CAMERA = CameraSpec("top", 120, 160, rate_hz=50.0)
GRIPPER_TRACKING_TOLERANCE = 1.0  # policy node max_tracking_error for this task (see TaskDefaults below)


def task_config(episode_s: Optional[float] = None, image_size: Optional[Tuple[int, int]] = None,
                cameras: Optional[Tuple[str, ...]] = None):
    """The env's ``AlohaTaskConfig`` with the registry's overrides."""
    from ..sim.aloha.env import AlohaTaskConfig

    overrides = {}
    if episode_s is not None:
        overrides["episode_s"] = float(episode_s)
    if image_size is not None:
        overrides["image_size"] = tuple(int(v) for v in image_size)
    if cameras is not None:
        overrides["cameras"] = tuple(cameras)
    return AlohaTaskConfig(**overrides)


class _EnvFactory:
    def __call__(self, render: bool = False, **overrides):
        from ..sim.aloha.env import AlohaTransferCubeEnv

        return AlohaTransferCubeEnv(task_config(**overrides), render=render)


class PlannedExpert:
    """The scripted expert of one episode in the registry's shape: ``action(t)`` -> ``[..., 14]``
    (``t`` in s since the episode's first observation, scalar or array; the plan's rows are
    solved as they are first needed), ``mode`` ("")."""

    mode = ""

    def __init__(self, plan):
        self.plan = plan  # TransferCubeExpert

    def action(self, t):
        return self.plan.rows(np.round(np.asarray(t, dtype=float) / self.plan.dt).astype(int))  # [..., 14]


class _ExpertFactory:
    """Plans from the first observation: start joints and the cube's position. The IK needs
    the robot's kinematics only, so one compiled model (no renderer) serves every episode."""

    def __init__(self):
        self._model = None
        self._lock = threading.Lock()

    def warm_up(self):
        """Compile the model and import the planner now (about a second), not at the first
        observation of an episode (a driver over ROS must answer it within a tick or two)."""
        from ..sim.aloha.assets import build_model
        from ..sim.aloha.expert import TransferCubeExpert

        with self._lock:
            if self._model is None:
                self._model = build_model()
                TransferCubeExpert(self._model, robot.start_pose(), (0.1, 0.5, 0.02), dt=CONTROL_DT).rows(1)
        return self._model

    def __call__(self, first_obs, rng=None, config=None):
        from ..sim.aloha.expert import ExpertConfig, TransferCubeExpert

        self.warm_up()
        q0 = np.asarray(first_obs.joint_positions, dtype=float)  # [14]
        cube = np.asarray(first_obs.inputs[CUBE_INPUT], dtype=float)[:3]  # [3]
        return PlannedExpert(TransferCubeExpert(self._model, q0, cube, config or ExpertConfig(), dt=CONTROL_DT))


TASKS = (
    TaskSpec(
        name=NAME,
        description="ALOHA bimanual transfer-cube (gym-aloha scene): the right ViperX 300 picks the cube, hands "
                    "it to the left; 14 joints at 50 Hz, grippers normalised 0 closed / 1 open",
        make_env=_EnvFactory(),
        joint_names=robot.JOINT_NAMES,
        action_names=robot.JOINT_NAMES,
        lower_limits=tuple(robot.JOINT_LOWER.tolist()),
        upper_limits=tuple(robot.JOINT_UPPER.tolist()),
        make_expert=_ExpertFactory(),
        control_dt=CONTROL_DT,
        physics_step_hz=PHYSICS_STEP_HZ,
        state_inputs=(StateInputSpec(CUBE_INPUT, "pose", CUBE_POSE_NAMES),),
        cameras=(TOP_CAMERA,),
        defaults=TaskDefaults(
            episode_s=EPISODE_S, physics_rate_hz=50.0, camera_rate_hz=TOP_CAMERA.rate_hz, eval_episodes=50,
            # A gripper closed on the cube stays 0.5-0.75 (normalised) from its command of 0: the
            # node's tracking check (one tolerance for every joint, default 0.3) would hold the
            # robot at every grasp. 1.0 = the gripper's whole range (arms: 1 rad).
            node_parameters={"max_tracking_error": GRIPPER_TRACKING_TOLERANCE},
            model_configs={"state_flow": "config/models/aloha_state_flow.yaml",
                           "image_flow": "config/models/aloha_image_flow.yaml"}),
        reset_distribution="both arms at ALOHA's start pose; cube centre uniform in x 0..0.2 m, y 0.4..0.6 m "
                           "(gym-aloha / ACT sample_box_pose), axis-aligned, resting on the table",
        modes=MODES,
        path_xy=None,
        units={"timestamp": "s", "action": "rad|gripper opening 0-1", "state": "rad|gripper opening 0-1|m|quat"},
    ),
)
