"""Observations in the layout the policy takes: batched tensors, and a neutral example for warm-up."""
from __future__ import annotations

from typing import Any, Mapping

import numpy as np


def to_policy_obs(obs: Mapping[str, Any]) -> dict:
    """Single observation (numpy) -> batched float32 tensors ``[1, ...]`` in the policy's layout;
    uint8 HWC images ``[T_o, H, W, 3]`` become float CHW in [0, 1]."""
    import torch

    out: dict = {}
    for key, value in obs.items():
        if isinstance(value, Mapping):
            out[key] = {}
            for cam, img in value.items():
                img = np.asarray(img)
                t = torch.from_numpy(np.ascontiguousarray(img))
                if img.dtype == np.uint8:
                    if img.ndim == 4 and img.shape[-1] == 3:
                        t = t.permute(0, 3, 1, 2)  # [T_o, 3, H, W]
                    t = t.float() / 255.0
                out[key][cam] = t.float().unsqueeze(0)  # [1, T_o, 3, H, W]
        else:
            out[key] = torch.as_tensor(np.asarray(value), dtype=torch.float32).unsqueeze(0)  # [1, T_o, D]
    return out


def example_obs_from_config(config) -> dict:
    """A neutral single observation matching the policy config (for warm-up)."""
    T_o = config.horizon.T_o
    obs: dict = {}
    if config.observation.state_dim > 0:
        obs["state"] = np.zeros((T_o, config.observation.state_dim), np.float32)  # [T_o, D_s]
    if config.observation.camera_names:
        H, W = config.observation.image_size
        obs["images"] = {cam: np.full((T_o, 3, H, W), 0.5, np.float32)  # [T_o, 3, H, W]
                         for cam in config.observation.camera_names}
    return obs
