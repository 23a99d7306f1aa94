"""`TaskSpec`: everything the CLI verbs need to know about one robot and task.

A task names its simulated environment (a factory of an env that follows
:mod:`genpolicy_ros.sim.protocol`), the robot's joints and limits, the observation's state
entries (joints and the named entries of non-joint inputs such as an object position),
its cameras, the control period of its demonstrations, the scripted expert, the success
predicate (``env.evaluate()["success"]``), how episodes are seeded, and the defaults of
``genpolicy collect / train / eval``. Generic layers never see a ``TaskSpec``: the verbs
turn it into plain arguments (names, limits, callbacks).
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Callable, Dict, Mapping, Optional, Tuple

import numpy as np

from ..core.config import STATE_INPUT_TYPES

#: Episode ``i`` of a run with seed ``s`` resets with seed ``s * SEED_STRIDE + i`` (the sim node's rule).
SEED_STRIDE = 100_003


@dataclass(frozen=True)
class CameraSpec:
    """One camera: its name in the model and the data, frame size and publishing rate."""

    name: str
    height: int
    width: int
    rate_hz: float = 10.0

    def __post_init__(self):
        if not (isinstance(self.name, str) and self.name and "/" not in self.name):
            raise ValueError(f"CameraSpec.name must be a non-empty name without '/', got {self.name!r}")
        if min(self.height, self.width) < 16:
            raise ValueError(f"CameraSpec {self.name}: height and width must be >= 16, got {self.height}x{self.width}")
        if not (math.isfinite(self.rate_hz) and self.rate_hz > 0):
            raise ValueError(f"CameraSpec {self.name}: rate_hz must be > 0, got {self.rate_hz}")


@dataclass(frozen=True)
class StateInputSpec:
    """A non-joint low-dimensional input: a ``point`` (PointStamped) or ``pose`` (PoseStamped)
    on the topic ``name``; ``names`` are its state entries, mapped in order to the fields of
    the type (:data:`~genpolicy_ros.core.config.STATE_INPUT_TYPES`)."""

    name: str
    type: str
    names: Tuple[str, ...]

    def __post_init__(self):
        if self.type not in STATE_INPUT_TYPES:
            raise ValueError(f"StateInputSpec {self.name}: type must be one of {list(STATE_INPUT_TYPES)}, "
                             f"got {self.type!r}")
        if not (1 <= len(self.names) <= len(STATE_INPUT_TYPES[self.type])):
            raise ValueError(f"StateInputSpec {self.name}: a {self.type} maps 1..{len(STATE_INPUT_TYPES[self.type])} "
                             f"names, got {list(self.names)}")
        object.__setattr__(self, "names", tuple(self.names))


@dataclass(frozen=True)
class TaskDefaults:
    """Defaults of the verbs for one task (each can be overridden on the command line)."""

    episode_s: float = 3.0  # simulated seconds per episode (collect, eval, sim)
    physics_rate_hz: float = 100.0  # the sim node's loop / joint_states rate (simulated time)
    camera_rate_hz: float = 10.0  # the sim node's camera rate when cameras are on
    #: model label -> training config (``config/models/*.yaml``, relative to the repository)
    model_configs: Mapping[str, str] = field(default_factory=dict)
    eval_episodes: int = 50
    #: policy-node parameters ``genpolicy eval`` sets for this task (``-p name:=value``), e.g.
    #: a tracking tolerance that admits grippers held open by the object they close on
    node_parameters: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class TaskSpec:
    """One registered task (see the module docstring); validated on construction.

    ``make_env(render=False, **overrides)`` builds the environment (``overrides``:
    ``episode_s``, ``image_size`` (H, W)); ``make_expert(first_obs, rng)`` the scripted
    expert of one episode from its first observation: an object with ``action(t)`` ->
    ``[..., D_a]`` target positions for ``t`` seconds after the episode's start, and
    optionally ``mode`` (str) and ``follows(obs) -> bool`` (False once ``obs`` cannot
    belong to its episode, which tells a driver that a new one began).
    """

    name: str
    description: str
    make_env: Callable[..., Any]
    joint_names: Tuple[str, ...]  # published in JointState (robot joints only)
    action_names: Tuple[str, ...]  # commanded joints, in command order
    lower_limits: Tuple[float, ...]  # per action joint (robot units)
    upper_limits: Tuple[float, ...]
    make_expert: Callable[[Any, np.random.Generator], Any]
    control_dt: float  # seconds per action row of the expert / the demonstrations
    physics_step_hz: float  # simulator steps per simulated second (the node's rate must divide it)
    state_inputs: Tuple[StateInputSpec, ...] = ()
    cameras: Tuple[CameraSpec, ...] = ()
    defaults: TaskDefaults = field(default_factory=TaskDefaults)
    reset_distribution: str = ""  # what env.reset(seed) draws, in words
    modes: Tuple[str, ...] = ()  # outcome labels env.evaluate()["mode"] may take (histograms)
    #: joint positions [..., len(joint_names)] -> [..., 2] point drawn per episode (reports); None = none
    path_xy: Optional[Callable[[np.ndarray], np.ndarray]] = None
    units: Mapping[str, str] = field(default_factory=lambda: {"timestamp": "s", "action": "rad", "state": "rad"})

    def __post_init__(self):
        if not (isinstance(self.name, str) and self.name.replace("_", "").isalnum()):
            raise ValueError(f"TaskSpec.name must be an identifier-like name, got {self.name!r}")
        for key in ("joint_names", "action_names", "lower_limits", "upper_limits", "state_inputs", "cameras",
                    "modes"):
            object.__setattr__(self, key, tuple(getattr(self, key)))
        if not self.action_names or len(set(self.action_names)) != len(self.action_names):
            raise ValueError(f"TaskSpec {self.name}: action_names must be unique and non-empty")
        if not (len(self.lower_limits) == len(self.upper_limits) == len(self.action_names)):
            raise ValueError(f"TaskSpec {self.name}: one lower and upper limit per action joint")
        if any(not lo < hi for lo, hi in zip(self.lower_limits, self.upper_limits)):
            raise ValueError(f"TaskSpec {self.name}: lower_limits must be < upper_limits")
        names = self.state_names
        if len(set(names)) != len(names):
            raise ValueError(f"TaskSpec {self.name}: joint and input names overlap: {list(names)}")
        if len({c.name for c in self.cameras}) != len(self.cameras):
            raise ValueError(f"TaskSpec {self.name}: camera names must be unique")
        if not (self.control_dt > 0 and self.physics_step_hz > 0):
            raise ValueError(f"TaskSpec {self.name}: control_dt and physics_step_hz must be > 0")

    # ------------------------------------------------------------------ names
    @property
    def state_names(self) -> Tuple[str, ...]:
        """Every state entry: the joints, then each input's names."""
        return self.joint_names + tuple(n for i in self.state_inputs for n in i.names)

    @property
    def input_names(self) -> Dict[str, Tuple[str, ...]]:
        """``{input: names}`` (the env's ``state_inputs``)."""
        return {i.name: i.names for i in self.state_inputs}

    @property
    def camera_names(self) -> Tuple[str, ...]:
        return tuple(c.name for c in self.cameras)

    def state_inputs_config(self, observed=None) -> Dict[str, dict]:
        """``observation.state_inputs`` of a model (``core.config``) that observes ``observed``
        (default: every state entry): the inputs it observes, with their observed names."""
        observed = self.state_names if observed is None else tuple(observed)
        out = {}
        for spec in self.state_inputs:
            names = [n for n in spec.names if n in observed]
            if names:
                out[spec.name] = {"type": spec.type, "names": names}
        return out

    # ------------------------------------------------------------------ episodes
    def episode_seed(self, seed: int, episode: int) -> int:
        """The reset seed of episode ``episode`` in a run with seed ``seed``."""
        return int(seed) * SEED_STRIDE + int(episode)

    def state_vector(self, obs, names) -> np.ndarray:
        """Entries ``names`` of one env observation, in that order -> [len(names)]."""
        from ..sim.protocol import state_vector

        return state_vector(obs, names, self.joint_names, self.input_names)

    def hold_command(self, obs) -> np.ndarray:
        """The command [D_a] that holds the robot where ``obs`` found it (action joints by name)."""
        return self.state_vector(obs, self.action_names)

    # ------------------------------------------------------------------ training defaults
    def train_defaults(self, images: bool) -> dict:
        """Plain values for ``genpolicy train --task``: the meaning of a recording's streams
        (``data.bag_mapping.infer_bag_mapping``'s ``task_defaults``) and what a model observes."""
        return {
            "task": self.name,
            "action_joints": list(self.action_names),
            "joint_state_names": list(self.joint_names),
            "state_inputs": self.state_inputs_config(),
            "cameras": {c.name: None for c in self.cameras},
            "dt": self.control_dt,
            "joint_limits": (list(self.lower_limits), list(self.upper_limits)),
            "units": dict(self.units),
            "observation_defaults": self.observation_defaults(images),
        }

    def observation_defaults(self, images: bool) -> dict:
        """``PolicyConfig`` sections for a model trained on this task's recordings.

        State-based: it observes every state entry (joints and inputs). With images: it
        observes the joints and *sees* the rest in the cameras; the inputs' recorded values
        become training-only auxiliary targets (``core.config.AuxiliaryConfig``). A config
        file's ``observation`` / ``auxiliary`` entries override these.
        """
        if not images:
            return {"observation": {"state_names": list(self.state_names)}}
        inputs = [n for i in self.state_inputs for n in i.names]
        out = {"observation": {"state_names": list(self.joint_names)}}
        if inputs:
            out["auxiliary"] = {"state_names": inputs}
        return out
