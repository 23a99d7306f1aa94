"""``genpolicy bench``: :mod:`genpolicy_ros.runtime.cli_bench` with the task's closed-loop plant.

The seam measurement runs the model in closed loop in its task's simulation: the task
recorded in the model (``metadata.task``), else the first registered task whose plant fits
the model's joints, state entries and cameras; otherwise a synthetic stream.
"""
from __future__ import annotations

from ..runtime import cli_bench


def add_arguments(p) -> None:
    cli_bench.add_arguments(p)


def task_plant_for(model_dir):
    """The plant factory of the model's task (``metadata.task``, else the first that fits), or None."""
    from ..core.checkpoint import read_model_config
    from ..runtime.engine import ModelInfo
    from ..tasks import get_task, task_names
    from ..tasks.model_task import model_task
    from ..tasks.plant import TaskPlantFactory

    try:
        cfg, _ = read_model_config(model_dir)
    except ValueError:
        return None  # the bench reports the unreadable model itself
    model = ModelInfo.from_policy_config(cfg)
    named = model_task(model_dir)
    candidates = [named] if named in task_names() else list(task_names())
    for name in candidates:
        factory = TaskPlantFactory(get_task(name))
        if factory.fits(model):
            return factory
    return None


def run(args) -> int:
    args.task_plant = task_plant_for(args.model)
    return cli_bench.run(args)
