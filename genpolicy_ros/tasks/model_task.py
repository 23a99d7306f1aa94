"""The task a model was trained on: ``metadata.task`` of its ``config.json``.

``genpolicy train`` records it (``--task``, or the data set's ``task``); ``genpolicy eval``
and ``genpolicy bench`` use it to pick the simulation. Models trained before it was recorded
have none (``None``).
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Optional


def model_task(model_dir) -> Optional[str]:
    """``metadata.task`` of the model directory's config.json, or None (unreadable, or not recorded)."""
    try:
        doc = json.loads((Path(model_dir) / "config.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    task = (doc.get("metadata") or {}).get("task") if isinstance(doc, dict) else None
    return task if isinstance(task, str) and task else None


def resolve_eval_task(model_dir, requested: Optional[str], force: bool = False, fallback: str = "reach") -> str:
    """The task to evaluate ``model_dir`` on: ``requested`` (``--task``) or the model's own.

    A ``requested`` task that differs from the one the model records is an error (a model
    evaluated on a task it never saw fails for the wrong reason) unless ``force``. A model
    that records none runs ``requested`` or ``fallback``."""
    recorded = model_task(model_dir)
    if requested is None:
        return recorded or fallback
    if recorded is not None and requested != recorded and not force:
        raise ValueError(f"{model_dir} was trained on task {recorded!r}, not {requested!r}; "
                         "omit --task (and --obstacle) to use the model's, or pass --force")
    return requested
