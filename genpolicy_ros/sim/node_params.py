"""The sim node's parameters: ``SimParams`` (validated) and their ROS descriptors.

Every parameter is read-only after start. ``task`` picks the registered task
(:mod:`genpolicy_ros.tasks`); ``obstacle:=true`` is the older spelling of
``task:=reach_obstacle``. ``episode_s``, ``image_height`` / ``image_width`` of 0 mean the
task's defaults (its episode length, each camera's own size), and so does
``physics_rate_hz`` of 0 (the task's loop rate: 100 Hz for reach, 50 Hz for ALOHA).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional, Tuple

from rcl_interfaces.msg import FloatingPointRange, IntegerRange, ParameterDescriptor

from ..tasks import DEFAULT_TASK, TaskSpec, get_task


@dataclass(frozen=True)
class SimParams:
    """The sim node's parameters (all read-only after start); validated on construction."""

    task: str = DEFAULT_TASK
    seed: int = 0
    episode_s: float = 0.0  # 0 = the task's default
    # loop / joint_states rate (simulated time); divides the task's physics rate; 0 = the task's
    physics_rate_hz: float = 0.0
    camera_rate_hz: float = 10.0  # 0 = no camera (no rendering)
    image_height: int = 0  # 0 = each camera's own size
    image_width: int = 0
    compressed_format: str = "jpeg"  # png | jpeg
    publish_clock: bool = False
    rate_factor: float = 1.0  # simulated seconds per wall second
    auto_reset: bool = True
    max_episodes: int = 0  # stop starting new episodes after this many (0 = never stop)
    obstacle: bool = False  # = task reach_obstacle (the older parameter)
    legacy_target_joints: bool = False  # also publish the non-joint inputs' entries in JointState

    def __post_init__(self):
        task = self.task_spec()  # validates task / obstacle
        if self.physics_rate_hz == 0:
            object.__setattr__(self, "physics_rate_hz", float(task.defaults.physics_rate_hz))
        if self.seed < 0:
            raise ValueError(f"seed must be >= 0, got {self.seed}")
        substeps = task.physics_step_hz / self.physics_rate_hz if self.physics_rate_hz > 0 else 0.0
        if not (self.physics_rate_hz > 0 and substeps >= 1 and abs(substeps - round(substeps)) < 1e-9):
            raise ValueError(
                f"physics_rate_hz must divide the simulator's step rate {task.physics_step_hz:g} Hz "
                f"(e.g. 50, 100, 250, 500), got {self.physics_rate_hz}")
        if not (0.0 <= self.camera_rate_hz <= self.physics_rate_hz):
            raise ValueError(
                f"camera_rate_hz must be in [0, physics_rate_hz={self.physics_rate_hz}], got {self.camera_rate_hz}")
        if self.compressed_format not in ("png", "jpeg"):
            raise ValueError(f"compressed_format must be 'png' or 'jpeg', got {self.compressed_format!r}")
        if not (0.01 <= self.rate_factor <= 100.0):
            raise ValueError(f"rate_factor must be in [0.01, 100], got {self.rate_factor}")
        if self.max_episodes < 0:
            raise ValueError(f"max_episodes must be >= 0, got {self.max_episodes}")
        if self.episode_s < 0 or self.episode_length_s * self.physics_rate_hz < 2:
            raise ValueError(f"episode_s must span at least 2 physics ticks (0 = the task's "
                             f"{task.defaults.episode_s:g} s), got {self.episode_s}")
        size = self.image_size
        if size is not None and min(size) < 16:
            raise ValueError(f"image_size (image_height, image_width) must be >= 16 or 0 (the camera's own); "
                             f"got {size}")

    def task_spec(self) -> TaskSpec:
        """The registered task (``obstacle`` turns ``reach`` into ``reach_obstacle``)."""
        name = self.task
        if self.obstacle:
            if name not in ("reach", "reach_obstacle"):
                raise ValueError(f"obstacle:=true is the reach task's obstacle variant; task is {name!r}")
            name = "reach_obstacle"
        return get_task(name)

    @property
    def episode_length_s(self) -> float:
        return self.episode_s if self.episode_s > 0 else self.task_spec().defaults.episode_s

    @property
    def image_size(self) -> Optional[Tuple[int, int]]:
        """(H, W) for every camera, or None for each camera's own size."""
        if self.image_height == 0 and self.image_width == 0:
            return None
        return (self.image_height, self.image_width)

    def env_overrides(self) -> dict:
        """Keyword arguments of ``task.make_env``."""
        out = {"episode_s": self.episode_length_s}
        if self.image_size is not None:
            out["image_size"] = self.image_size
        return out


def _descriptor(description: str, *, int_range=None, float_range=None) -> ParameterDescriptor:
    d = ParameterDescriptor(description=description, read_only=True)
    if int_range is not None:
        d.integer_range = [IntegerRange(from_value=int_range[0], to_value=int_range[1], step=1)]
    if float_range is not None:
        d.floating_point_range = [FloatingPointRange(from_value=float(float_range[0]),
                                                     to_value=float(float_range[1]), step=0.0)]
    return d


DESCRIPTIONS = {
    "task": ("registered task (genpolicy_ros.tasks): reach, reach_obstacle, ...", {}),
    "seed": ("episode i uses seed * 100003 + i", dict(int_range=(0, 2**31 - 1))),
    "episode_s": ("episode length in simulated seconds (0 = the task's)", dict(float_range=(0.0, 3600.0))),
    "physics_rate_hz": ("loop and joint_states rate (simulated time); divides the simulator's step rate; "
                        "0 = the task's (reach 100, ALOHA 50)", dict(float_range=(0.0, 500.0))),
    "camera_rate_hz": ("camera frame rate, 0 = no camera", dict(float_range=(0.0, 2000.0))),
    "image_height": ("camera image height (pixels; 0 = each camera's own)", dict(int_range=(0, 4096))),
    "image_width": ("camera image width (pixels; 0 = each camera's own)", dict(int_range=(0, 4096))),
    "compressed_format": ("png or jpeg", {}),
    "publish_clock": ("publish /clock and stamp everything with simulated time", {}),
    "rate_factor": ("simulated seconds per wall-clock second", dict(float_range=(0.01, 100.0))),
    "auto_reset": ("start the next episode when one ends", {}),
    "max_episodes": ("start no new episode after this many ended (0 = unlimited)", dict(int_range=(0, 2**31 - 1))),
    "obstacle": ("= task reach_obstacle: start beside the target, a post to avoid; touching it fails the episode",
                 {}),
    "legacy_target_joints": ("also publish the non-joint inputs' entries (e.g. target_x, target_y) as JointState "
                             "entries, as before the inputs had topics", {}),
}


def descriptor(name: str) -> ParameterDescriptor:
    description, ranges = DESCRIPTIONS[name]
    return _descriptor(description, **ranges)
