"""``genpolicy train``: :mod:`genpolicy_ros.training.cli_train` plus ``--task``.

``--task NAME`` (a registered task, ``genpolicy_ros.tasks``) supplies that task's defaults
as plain values: the meaning of a bag's streams (joints, inputs, cameras, dt, joint
limits), what its models observe (state-based: every entry; with images: the joints, the
inputs as auxiliary targets) and the task recorded in the model's ``metadata.task``.
Without it nothing task-specific is assumed (the mapping is recorded or inferred).
"""
from __future__ import annotations

import argparse

from ..training import cli_train


def add_arguments(p: argparse.ArgumentParser) -> None:
    from ..tasks import task_names

    cli_train.add_arguments(p)
    p.add_argument("--task", choices=task_names(),
                   help="use this registered task's defaults (bag mapping, what the model observes) and record it "
                        "in the model (default: none; a bag's recorded mapping or the data set's task)")


def run(args) -> int:
    from ..tasks import get_task

    if args.task:
        args.task_defaults = get_task(args.task).train_defaults(images=bool(args.images))
    return cli_train.run(args)
