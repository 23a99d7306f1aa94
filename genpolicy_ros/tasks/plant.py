"""A task's simulation as the closed-loop plant of ``genpolicy bench``'s seam measurement.

:class:`TaskPlantFactory` is what ``runtime.bench.seams.measure_seams(task_plant=...)``
takes: ``fits(model)`` (the model commands the task's action joints and observes only its
state entries and cameras) and ``factory(model, seed)`` -> one episode's plant: the task's
environment, reset with ``seed``, observed by name.
"""
from __future__ import annotations

from typing import Dict, Optional

import numpy as np

from .spec import TaskSpec


class TaskPlantFactory:
    def __init__(self, task: TaskSpec):
        self.task = task
        self.name = task.name

    def fits(self, model) -> bool:
        """Whether ``model`` (a ``runtime.engine.ModelInfo``) runs in this task's environment."""
        try:
            import mujoco  # noqa: F401
        except ImportError:
            return False
        return (tuple(model.joint_names) == tuple(self.task.action_names)
                and set(model.state_names) <= set(self.task.state_names)
                and set(model.camera_names) <= set(self.task.camera_names))

    def __call__(self, model, seed: int) -> "TaskPlant":
        return TaskPlant(self.task, model, seed)


class TaskPlant:
    """One episode of the task's environment in closed loop (state entries by name)."""

    def __init__(self, task: TaskSpec, model, seed: int):
        self.task, self.model = task, model
        self.env = task.make_env(render=bool(model.camera_names))
        self.obs = self.env.reset(seed=seed)

    def state(self) -> np.ndarray:
        return self.task.state_vector(self.obs, self.model.state_names)  # [D_s]

    def images(self) -> Dict[str, np.ndarray]:
        return {c: self.obs.images[c] for c in self.model.camera_names}

    def step(self, command: Optional[np.ndarray], period: float) -> None:
        q = self.task.hold_command(self.obs) if command is None else np.asarray(command, dtype=float)  # [D_a]
        self.obs = self.env.step(q, period)

    def close(self) -> None:
        self.env.close()
