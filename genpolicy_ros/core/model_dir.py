"""Reading a model directory's ``config.json`` without torch.

The real-time process (the policy node) needs the model's joints, horizons and
observation spec but must not import torch or load the weights: the generation child
owns them (core/checkpoint.py loads the full model there). This module holds what both
share: the file names, the errors, :func:`read_model_config` and :func:`check_compatible`.
"""
from __future__ import annotations

from pathlib import Path
from typing import Mapping

from .config import FORMAT_VERSION, PolicyConfig
from .json_file import read_json_object

CONFIG_FILE = "config.json"
WEIGHTS_FILE = "model.safetensors"
_ARTIFACT_KEYS = ("weights", "created_by", "metadata")


class ModelLoadError(ValueError):
    """A model directory cannot be loaded; the message names the file and the problem."""


class IncompatibleModelError(ValueError):
    """The model's action/observation dimensions do not match the robot."""


def read_model_config(path) -> tuple[PolicyConfig, dict]:
    """Read and validate ``config.json`` of a model directory -> (PolicyConfig, full document)."""
    cfg_path = Path(path) / CONFIG_FILE
    doc = read_json_object(cfg_path, ModelLoadError, f"a model directory needs {CONFIG_FILE} and {WEIGHTS_FILE}")
    version = doc.get("format_version")
    if version != FORMAT_VERSION:
        raise ModelLoadError(f"{cfg_path}: unsupported format_version {version!r} "
                             f"(this build reads version {FORMAT_VERSION})")
    try:
        cfg = PolicyConfig.from_dict({k: v for k, v in doc.items() if k not in _ARTIFACT_KEYS})
    except (ValueError, TypeError) as exc:
        raise ModelLoadError(f"{cfg_path}: invalid policy configuration: {exc}") from None
    weights = doc.get("weights")
    if not (isinstance(weights, dict) and isinstance(weights.get("sha256"), str)):
        raise ModelLoadError(f"{cfg_path}: missing \"weights\": {{\"sha256\": ...}} entry")
    return cfg, doc


def check_compatible(policy_or_config, *, joint_names=None, state_dim=None, state_names=None,
                     image_sizes=None) -> None:
    """Raise :class:`IncompatibleModelError` if the model does not fit the robot.

    ``joint_names``: the robot joints the node commands; must be the same set as the
    model's (order may differ: the node maps by name). ``state_dim`` / ``state_names``:
    the low-dim observation. ``image_sizes``: ``{camera: (H, W)}`` of the images the node
    will feed (after any resize), or one ``(H, W)`` for all cameras.
    """
    cfg = getattr(policy_or_config, "config", policy_or_config)
    if not isinstance(cfg, PolicyConfig):
        raise TypeError(f"check_compatible: expected a GenerativePolicy or PolicyConfig, got {type(cfg).__name__}")
    problems = []
    if joint_names is not None:
        model_joints = list(cfg.action.joint_names)
        robot = list(joint_names)
        missing = [j for j in model_joints if j not in robot]
        extra = [j for j in robot if j not in model_joints]
        if missing or extra:
            problems.append(f"action joints: model has {len(model_joints)} joints {model_joints}, robot has "
                            f"{len(robot)} {robot} (missing on robot: {missing}, not in model: {extra})")
    if state_dim is not None and int(state_dim) != cfg.observation.state_dim:
        problems.append(f"state dim: model expects {cfg.observation.state_dim} "
                        f"{list(cfg.observation.state_names)}, robot provides {int(state_dim)}")
    if state_names is not None and list(state_names) != list(cfg.observation.state_names):
        problems.append(f"state names: model expects {list(cfg.observation.state_names)}, "
                        f"robot provides {list(state_names)}")
    if image_sizes is not None:
        want = tuple(cfg.observation.image_size)
        if isinstance(image_sizes, Mapping):
            for cam in cfg.observation.camera_names:
                if cam not in image_sizes:
                    problems.append(f"camera {cam!r}: required by the model ({want[0]}x{want[1]}), not provided")
                elif tuple(int(s) for s in image_sizes[cam]) != want:
                    got = tuple(int(s) for s in image_sizes[cam])
                    problems.append(f"camera {cam!r}: model expects image size (H, W) = {want}, got {got}")
        else:
            got = tuple(int(s) for s in image_sizes)
            if cfg.observation.camera_names and got != want:
                problems.append(f"image size: model expects (H, W) = {want}, got {got}")
    if problems:
        raise IncompatibleModelError("model does not match the robot: " + "; ".join(problems))
