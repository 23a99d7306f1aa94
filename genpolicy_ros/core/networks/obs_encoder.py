"""Observation encoder: proprioception + any number of cameras -> tokens [B, T_o, F].

At each of the T_o history steps the token is the concatenation

    token_t = ProprioMLP(state_t) ⊕ Vision_cam1(image_cam1,t) ⊕ … ⊕ Vision_camN(image_camN,t)

so F = proprio_feature_dim + n_cameras · image_feature_dim. Cameras are concatenated in
the order of ``camera_names``. Each camera gets its own image encoder (``vision_backbone``) unless
``share_camera_encoder`` (then one encoder sees all cameras; they stay distinguishable
by their slot in the token). As in Diffusion Policy (Chi et al. 2023) the encoder is
trained end to end with the denoiser and runs once per chunk, not once per denoising
step.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Mapping, Sequence

import torch
from torch import nn

from .proprio import ProprioMLP
from .vision import VisionEncoderConfig, build_vision_encoder


@dataclass
class ObsEncoderConfig:
    state_dim: int  # D_s
    T_o: int  # observation history length
    camera_names: Sequence[str] = ()
    image_size: Sequence[int] = (96, 96)  # (H, W) of every camera
    proprio_feature_dim: int = 64
    image_feature_dim: int = 64
    share_camera_encoder: bool = False
    proprio_hidden: Sequence[int] = (128,)
    vision_width: int = 32
    num_keypoints: int = 32
    stem_stride: int = 2
    vision_backbone: str = "resnet18"  # or "keypoint_cnn" (vision.py)

    def __post_init__(self):
        self.camera_names = tuple(str(n) for n in self.camera_names)
        self.image_size = tuple(int(s) for s in self.image_size)
        self.proprio_hidden = tuple(int(h) for h in self.proprio_hidden)
        for name in ("state_dim", "T_o", "proprio_feature_dim", "image_feature_dim"):
            if int(getattr(self, name)) < 1:
                raise ValueError(f"ObsEncoderConfig.{name} must be >= 1, got {getattr(self, name)}")
        if len(set(self.camera_names)) != len(self.camera_names):
            raise ValueError(f"ObsEncoderConfig.camera_names has duplicates: {self.camera_names}")
        for name in self.camera_names:
            if not name or "." in name:
                raise ValueError(
                    f"ObsEncoderConfig.camera_names: {name!r} is not a valid camera name "
                    f"(must be non-empty and contain no '.')"
                )
        if self.camera_names:
            self.vision_config()  # validates image size, width, keypoints

    def vision_config(self) -> VisionEncoderConfig:
        return VisionEncoderConfig(
            in_channels=3,
            image_size=self.image_size,
            feature_dim=self.image_feature_dim,
            width=self.vision_width,
            num_keypoints=self.num_keypoints,
            stem_stride=self.stem_stride,
            backbone=self.vision_backbone,
        )

    @property
    def token_dim(self) -> int:
        return self.proprio_feature_dim + len(self.camera_names) * self.image_feature_dim


class ObservationEncoder(nn.Module):
    """``{"state": [B,T_o,D_s], "images": {name: [B,T_o,3,H,W]}}`` -> tokens ``[B, T_o, F]``."""

    def __init__(self, config: ObsEncoderConfig):
        super().__init__()
        self.config = c = config
        self.proprio = ProprioMLP(c.state_dim, c.proprio_feature_dim, c.proprio_hidden)
        self.shared_camera_encoder = None
        self.camera_encoders = nn.ModuleDict()
        if c.camera_names:
            if c.share_camera_encoder:
                self.shared_camera_encoder = build_vision_encoder(c.vision_config())
            else:
                for name in c.camera_names:
                    self.camera_encoders[name] = build_vision_encoder(c.vision_config())

    @property
    def token_dim(self) -> int:
        """F, the width of one observation token."""
        return self.config.token_dim

    def _check_state(self, state: torch.Tensor):
        c = self.config
        if state.dim() != 3 or state.shape[1:] != (c.T_o, c.state_dim):
            raise ValueError(
                f"ObservationEncoder: obs['state'] must be [B, T_o={c.T_o}, D_s={c.state_dim}], "
                f"got {tuple(state.shape)}"
            )

    def _check_images(self, images: Mapping[str, torch.Tensor], batch: int):
        c = self.config
        missing = [n for n in c.camera_names if n not in images]
        extra = sorted(n for n in images if n not in c.camera_names)
        if missing or extra:
            raise KeyError(
                f"ObservationEncoder: camera images do not match the model's cameras "
                f"{list(c.camera_names)}: missing {missing}, unexpected {extra}"
            )
        expected = (batch, c.T_o, 3, *c.image_size)
        for name in c.camera_names:
            shape = tuple(images[name].shape)
            if shape != expected:
                raise ValueError(
                    f"ObservationEncoder: images[{name!r}] must be [B, T_o, 3, H, W] = {expected} "
                    f"(model image_size (H, W) = {c.image_size}), got {shape}"
                )

    def forward(self, obs: Mapping[str, object]) -> torch.Tensor:
        c = self.config
        if "state" not in obs:
            raise KeyError("ObservationEncoder: obs has no 'state' entry")
        state = obs["state"]
        self._check_state(state)
        B = state.shape[0]
        images = obs.get("images") or {}
        self._check_images(images, B)

        parts = [self.proprio(state)]  # [B, T_o, F_p]
        if c.camera_names:
            # fold time (and cameras, when shared) into the batch: [N·B·T_o, 3, H, W]
            flat = [images[n].reshape(B * c.T_o, *images[n].shape[2:]) for n in c.camera_names]
            if self.shared_camera_encoder is not None:
                feats = self.shared_camera_encoder(torch.cat(flat, dim=0))  # [N·B·T_o, F_i]
                feats = feats.split(B * c.T_o, dim=0)  # N × [B·T_o, F_i]
            else:
                feats = [self.camera_encoders[n](x) for n, x in zip(c.camera_names, flat)]  # N × [B·T_o, F_i]
            parts += [f.reshape(B, c.T_o, -1) for f in feats]  # N × [B, T_o, F_i]
        return torch.cat(parts, dim=-1)  # [B, T_o, F_p + N·F_i]
