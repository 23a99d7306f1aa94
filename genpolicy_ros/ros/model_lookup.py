"""Finding a model directory: the one given, or the shipped default (ROS-free).

The default is searched where a user's install puts it: the colcon-installed
``share/genpolicy_ros/models/<name>``, the pip-installed one under ``sys.prefix``, then the
source tree's ``models/<name>``.
"""
from __future__ import annotations

import os
import sys

DEFAULT_MODEL_NAME = "reach_flow"  # share/genpolicy_ros/models/<name> when model_path is ""


def resolve_model_path(model_path: str) -> str:
    """``model_path`` as given, or (``""``) the shipped default model: the colcon-installed
    ``share/genpolicy_ros/models/reach_flow``, the pip-installed one under ``sys.prefix``,
    or the source tree's ``models/reach_flow``."""
    if model_path:
        return os.path.expanduser(model_path)
    candidates = []
    try:
        from ament_index_python.packages import get_package_share_directory

        candidates.append(os.path.join(get_package_share_directory("genpolicy_ros"), "models",
                                       DEFAULT_MODEL_NAME))
    except Exception:  # noqa: BLE001 - not installed through colcon: use the source tree
        pass
    candidates.append(os.path.join(sys.prefix, "share", "genpolicy_ros", "models", DEFAULT_MODEL_NAME))
    here = os.path.dirname(os.path.abspath(__file__))
    candidates.append(os.path.normpath(os.path.join(here, "..", "..", "models", DEFAULT_MODEL_NAME)))
    for path in candidates:
        if os.path.isdir(path):
            return path
    raise FileNotFoundError(f"model_path is empty and no shipped default model was found (looked in "
                            f"{candidates}); set model_path to a model directory")
