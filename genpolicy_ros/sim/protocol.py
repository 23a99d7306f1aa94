"""What every simulated environment returns from ``reset`` / ``step`` / ``observe`` (ROS-free).

The environment shape (``notes/ENV_PROTOCOL.md``, the lead's decision)::

    env.joint_names   tuple[str]              names published in JointState (robot joints only)
    env.action_names  tuple[str]              commanded joints, in command order
    env.state_inputs  dict[str, tuple[str]]   non-joint low-dim inputs by input name
    env.camera_names  tuple[str]
    env.control_dt    float                   seconds per action row of the expert / data
    env.reset(seed=None) -> StepResult
    env.step(q_target [D_a], duration_s, with_image=True) -> StepResult
    env.observe(with_image=True) -> StepResult
    env.evaluate() -> dict                    {"success": bool, ...task-specific}
    env.time; env.close()

:func:`state_values` flattens one result into ``{name: value}`` over the joints and the
inputs' named entries, which is how a data set row or a policy observation is assembled
by name (``state_vector``).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Dict, Mapping, Sequence

import numpy as np


@dataclass
class StepResult:
    """One observation of an environment (shapes on each field)."""

    time_s: float
    joint_positions: np.ndarray  # [len(env.joint_names)]
    joint_velocities: np.ndarray  # [len(env.joint_names)]
    inputs: Dict[str, np.ndarray] = field(default_factory=dict)  # input name -> [k] (env.state_inputs order)
    images: Dict[str, np.ndarray] = field(default_factory=dict)  # camera -> [H, W, 3] uint8 RGB; {} = none
    info: dict = field(default_factory=dict)

    @property
    def image(self):
        """The first camera's frame [H, W, 3] (or None): the single-camera shorthand."""
        return next(iter(self.images.values()), None)


def state_values(obs: StepResult, joint_names: Sequence[str],
                 state_inputs: Mapping[str, Sequence[str]]) -> Dict[str, float]:
    """``{name: value}`` of every joint and every named entry of the non-joint inputs."""
    values = {n: float(v) for n, v in zip(joint_names, np.asarray(obs.joint_positions).reshape(-1))}
    for input_name, names in state_inputs.items():
        data = np.asarray(obs.inputs[input_name], dtype=float).reshape(-1)  # [k]
        if data.shape[0] != len(names):
            raise ValueError(f"input {input_name!r} has {data.shape[0]} values for names {list(names)}")
        values.update({n: float(v) for n, v in zip(names, data)})
    return values


def state_vector(obs: StepResult, names: Sequence[str], joint_names: Sequence[str],
                 state_inputs: Mapping[str, Sequence[str]]) -> np.ndarray:
    """The entries ``names`` of one observation, in that order -> [len(names)] float64."""
    values = state_values(obs, joint_names, state_inputs)
    missing = [n for n in names if n not in values]
    if missing:
        raise KeyError(f"state entries {missing} are neither joints {list(joint_names)} nor inputs "
                       f"{ {k: list(v) for k, v in state_inputs.items()} }")
    return np.array([values[n] for n in names], dtype=np.float64)  # [len(names)]
