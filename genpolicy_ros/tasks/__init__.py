"""Robots and tasks: one :class:`~genpolicy_ros.tasks.spec.TaskSpec` per task, found by name.

    from genpolicy_ros.tasks import get_task, task_names
    task = get_task("reach_obstacle")
    env = task.make_env(render=False)

Registered tasks come from the modules of this package: every module (other than
``spec``, ``plant``, ``model_task`` and private ones) that defines ``TASKS`` (a tuple of ``TaskSpec``) adds
them. Adding a task is one new module here; nothing else is edited. Task modules import
their simulator lazily (inside the factories), so listing the tasks stays cheap.
Only the CLI wiring, ``sim/`` and ``tasks/`` import this package (test_no_ros_in_core).
"""
from __future__ import annotations

import importlib
import pkgutil
import threading
from typing import Dict, Tuple

from .spec import CameraSpec, StateInputSpec, TaskDefaults, TaskSpec

DEFAULT_TASK = "reach"
_NOT_TASK_MODULES = {"spec", "plant", "model_task"}
_registry: Dict[str, TaskSpec] = {}
_lock = threading.Lock()


def _load() -> Dict[str, TaskSpec]:
    with _lock:
        if not _registry:
            found: Dict[str, TaskSpec] = {}
            for info in sorted(pkgutil.iter_modules(__path__), key=lambda m: m.name):
                if info.name.startswith("_") or info.name in _NOT_TASK_MODULES:
                    continue
                module = importlib.import_module(f"{__name__}.{info.name}")
                for task in getattr(module, "TASKS", ()):
                    if not isinstance(task, TaskSpec):
                        raise TypeError(f"{module.__name__}.TASKS holds {type(task).__name__}, not a TaskSpec")
                    if task.name in found:
                        raise ValueError(f"task {task.name!r} is registered twice ({module.__name__})")
                    found[task.name] = task
            _registry.update(found)
        return _registry


def task_names() -> Tuple[str, ...]:
    """Names of the registered tasks, sorted."""
    return tuple(sorted(_load()))


def get_task(name: str) -> TaskSpec:
    """The registered task ``name``; ``ValueError`` naming the known ones otherwise."""
    tasks = _load()
    if name not in tasks:
        raise ValueError(f"unknown task {name!r}; registered tasks: {', '.join(sorted(tasks))}")
    return tasks[name]


__all__ = ["CameraSpec", "DEFAULT_TASK", "StateInputSpec", "TaskDefaults", "TaskSpec", "get_task", "task_names"]
