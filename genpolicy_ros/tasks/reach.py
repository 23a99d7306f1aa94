"""The planar two-link reaching task (``reach``) and its obstacle variant (``reach_obstacle``).

Environment: :class:`~genpolicy_ros.sim.reach_env.ReachEnv` (MuJoCo, 500 Hz physics);
expert: :class:`~genpolicy_ros.sim.expert.ReachExpert` (one random elbow mode per episode;
with the obstacle the branching profile of ``offline.expert_branch``). The target is the
non-joint input ``target`` (PointStamped x, y -> ``target_x``, ``target_y``).
"""
from __future__ import annotations

from typing import Optional, Tuple

from ..sim.reach_env import (
    ARM_JOINTS,
    CONTROL_DT,
    JOINT_LOWER,
    JOINT_UPPER,
    MODES,
    TARGET_INPUT,
    TARGET_NAMES,
    ReachTaskConfig,
    forward_kinematics,
)
from .spec import CameraSpec, StateInputSpec, TaskDefaults, TaskSpec


def task_config(obstacle: bool, episode_s: Optional[float] = None,
                image_size: Optional[Tuple[int, int]] = None) -> ReachTaskConfig:
    """The env's ``ReachTaskConfig`` (``obstacle_task()`` for the variant) with overrides."""
    from ..sim.reach_env import obstacle_task

    overrides = {}
    if episode_s is not None:
        overrides["episode_s"] = float(episode_s)
    if image_size is not None:
        overrides["image_size"] = tuple(int(v) for v in image_size)
    return obstacle_task(**overrides) if obstacle else ReachTaskConfig(**overrides)


class _EnvFactory:
    def __init__(self, obstacle: bool):
        self.obstacle = obstacle

    def __call__(self, render: bool = False, **overrides):
        from ..sim.reach_env import ReachEnv

        return ReachEnv(task_config(self.obstacle, **overrides), render=render)


class _ExpertFactory:
    def __init__(self, obstacle: bool):
        self.obstacle = obstacle

    def __call__(self, first_obs, rng, move_s: float = 1.6):
        from ..sim.expert import ReachExpert
        from ..sim.offline import expert_branch

        start = first_obs.joint_positions[:2]  # [2] shoulder, elbow (the env's joint order)
        target = first_obs.inputs[TARGET_INPUT]  # [2]
        return ReachExpert.random(start, target.copy(), rng, move_s=move_s,
                                  **expert_branch(task_config(self.obstacle)))


def _spec(name: str, obstacle: bool, description: str, reset: str, configs: dict) -> TaskSpec:
    plain = ReachTaskConfig()
    return TaskSpec(
        name=name,
        description=description,
        make_env=_EnvFactory(obstacle),
        joint_names=ARM_JOINTS,
        action_names=ARM_JOINTS,
        lower_limits=tuple(JOINT_LOWER.tolist()),
        upper_limits=tuple(JOINT_UPPER.tolist()),
        make_expert=_ExpertFactory(obstacle),
        control_dt=CONTROL_DT,
        physics_step_hz=float(plain.physics_substeps_per_s),
        state_inputs=(StateInputSpec(TARGET_INPUT, "point", TARGET_NAMES),),
        cameras=(CameraSpec(plain.camera, *plain.image_size, rate_hz=10.0),),
        defaults=TaskDefaults(episode_s=plain.episode_s, physics_rate_hz=100.0, camera_rate_hz=10.0,
                              model_configs=configs, eval_episodes=50),
        reset_distribution=reset,
        modes=MODES,
        path_xy=forward_kinematics,
        units={"timestamp": "s", "action": "rad", "state": "rad|m"},
    )


TASKS = (
    _spec("reach", False,
          "2-link planar arm reaches a target inside its workspace, elbow up or down (two modes)",
          "target 0.07-0.16 m from the base at heading -1.6..1.6 rad; arm stretched towards it, "
          "start noise 0.05 rad",
          {"flow": "config/models/reach_flow.yaml", "ddim": "config/models/reach_ddim.yaml",
           "mse": "config/models/reach_mse.yaml", "image_flow": "config/models/reach_image_flow.yaml"}),
    _spec("reach_obstacle", True,
          "reach with a post where the average of the two modes passes; touching it fails the episode",
          "target 0.17-0.19 m from the base; arm stretched 0.8 rad beside it, start noise 0.02 rad; "
          "post r 3 cm at 0.246 m, 0.28 rad off the target line",
          {"flow": "config/models/obstacle_flow.yaml", "ddim": "config/models/obstacle_ddim.yaml",
           "mse": "config/models/obstacle_mse.yaml"}),
)
