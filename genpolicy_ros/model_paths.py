"""Where shipped models are found: one search used by the policy node, the demo and replay.

Search order for a shipped model ``NAME`` (the first directory holding ``NAME/config.json``):

1. the colcon-installed share directory ``share/genpolicy_ros/models`` (``ament_index_python``,
   when a ROS 2 workspace is sourced);
2. the pip-installed data files under ``sys.prefix/share/genpolicy_ros/models``;
3. the source tree's ``models/`` (an editable install or a checkout).

No ROS import unless ``ament_index_python`` is installed, and then only inside the search.
"""
from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import List, Optional

DEFAULT_MODEL_NAME = "reach_flow"  # the policy node's model when ``model_path`` is ""
PACKAGE = "genpolicy_ros"


def shipped_model_dirs() -> List[Path]:
    """The directories that may hold shipped models, in search order (see the module docstring)."""
    dirs = []
    try:
        from ament_index_python.packages import get_package_share_directory

        dirs.append(Path(get_package_share_directory(PACKAGE)) / "models")
    except Exception:  # noqa: BLE001 - not installed through colcon (or no ROS 2 sourced)
        pass
    dirs.append(Path(sys.prefix) / "share" / PACKAGE / "models")
    dirs.append(Path(__file__).resolve().parents[1] / "models")
    return dirs


def find_shipped_model(name: str) -> Optional[Path]:
    """The first ``<dir>/name`` holding a ``config.json`` in :func:`shipped_model_dirs`, or None."""
    for d in shipped_model_dirs():
        if (d / name / "config.json").is_file():
            return d / name
    return None


def resolve_model_path(model_path: str, default_name: str = DEFAULT_MODEL_NAME) -> str:
    """``model_path`` as given (``~`` expanded), or for ``""`` the shipped ``default_name``;
    ``FileNotFoundError`` naming the directories searched when there is none."""
    if model_path:
        return os.path.expanduser(model_path)
    found = find_shipped_model(default_name)
    if found is None:
        looked = [str(d / default_name) for d in shipped_model_dirs()]
        raise FileNotFoundError(f"model_path is empty and no shipped default model was found (looked in "
                                f"{looked}); set model_path to a model directory")
    return str(found)
