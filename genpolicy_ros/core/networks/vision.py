"""Image encoders with spatial-softmax keypoint pooling: ``resnet18`` and ``keypoint_cnn``.

``backbone="resnet18"`` (the default):

* Backbone: He et al. 2016 ResNet-18 layout (4 stages × 2 BasicBlocks, channel widths
  w, 2w, 4w, 8w, stride 2 at the start of stages 2–4), with GroupNorm (Wu & He 2018)
  instead of BatchNorm, as Diffusion Policy does (Chi et al. 2023, sec. 3.4) because
  BatchNorm interacts badly with the EMA weights used at inference. The stem is a single
  3×3 conv of stride ``stem_stride`` (no max-pool) so small images (64×64, 96×96)
  keep a usable feature map: total stride = stem_stride · 8 (96×96 → 6×6 at default).
* Pooling: spatial softmax (Levine et al. 2016, "End-to-End Training of Deep
  Visuomotor Policies", sec. 4.2; Finn et al. 2016): a 1×1 conv makes K keypoint maps,
  each map is turned into a distribution over pixels by a softmax and its expected
  image coordinates (x, y) ∈ [−1, 1]² are the keypoint. The 2K numbers go through a
  Linear to ``feature_dim``.

``backbone="keypoint_cnn"``: the shallow network of Levine et al. 2016 (sec. 4.2) in
spirit — a 5×5 stride-2 conv and two 3×3 convs, then the same keypoint pooling on a
map of half the image's size. On a 64×64 camera the ResNet's map is 4×4 (stride 16),
so each keypoint can only interpolate between 16 cell centres 0.5 apart in [−1, 1];
the shallow net pools over 32×32 cells, and it costs about a tenth of the ResNet's
FLOPs at width 16 — what a small CPU-trained policy that must *locate* something
(a target) in the image needs. Wider context (several objects, clutter) is the
ResNet's job.

Input: ``[B, C, H, W]`` float in [0, 1] (mapped to [−1, 1] inside).
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Sequence

import torch
import torch.nn.functional as F
from torch import nn


@dataclass
class VisionEncoderConfig:
    in_channels: int = 3
    image_size: Sequence[int] = (96, 96)  # (H, W)
    feature_dim: int = 64
    width: int = 32  # channels of stage 1; stages use width · (1, 2, 4, 8)
    num_keypoints: int = 32
    stem_stride: int = 2  # resnet18: its 3×3 stem; keypoint_cnn: its 5×5 stem (the keypoint grid's stride)
    backbone: str = "resnet18"  # or "keypoint_cnn" (see the module docstring)

    def __post_init__(self):
        if self.backbone not in BACKBONES:
            raise ValueError(f"VisionEncoderConfig.backbone must be one of {BACKBONES}, got {self.backbone!r}")
        self.image_size = tuple(int(s) for s in self.image_size)
        if len(self.image_size) != 2:
            raise ValueError(f"VisionEncoderConfig.image_size must be (H, W), got {self.image_size}")
        for name in ("in_channels", "feature_dim", "width", "num_keypoints", "stem_stride"):
            if int(getattr(self, name)) < 1:
                raise ValueError(f"VisionEncoderConfig.{name} must be >= 1, got {getattr(self, name)}")
        stride = self.total_stride
        if min(self.image_size) < stride:
            raise ValueError(
                f"VisionEncoderConfig.image_size={self.image_size} is smaller than the encoder's "
                f"total stride {stride} (stem_stride={self.stem_stride} × 8); use larger images "
                f"or stem_stride=1"
            )

    @property
    def strides(self) -> tuple[int, ...]:
        """Strides of the backbone's strided layers, input to keypoint map."""
        return (self.stem_stride, 1, 2, 2, 2) if self.backbone == "resnet18" else (self.stem_stride,)

    @property
    def total_stride(self) -> int:
        return math.prod(self.strides)

    @property
    def feature_map_size(self) -> tuple[int, int]:
        """(h, w) of the last stage's output for ``image_size``."""
        h, w = self.image_size
        for s in self.strides:  # convs with padding (k − 1) / 2 and stride s map n -> ceil(n / s)
            h, w = -(-h // s), -(-w // s)
        return h, w


BACKBONES = ("resnet18", "keypoint_cnn")


def group_norm(channels: int, channels_per_group: int = 16) -> nn.GroupNorm:
    """GroupNorm with about ``channels_per_group`` channels per group (as DP's
    ``replace_bn_with_gn``), falling back to the largest group count dividing ``channels``."""
    groups = max(1, channels // channels_per_group)
    while channels % groups != 0:
        groups -= 1
    return nn.GroupNorm(groups, channels)


class BasicBlock(nn.Module):
    """ResNet BasicBlock: two 3×3 convs + identity (or 1×1 projection) shortcut.

    [B, C_in, H, W] -> [B, C_out, ceil(H/stride), ceil(W/stride)]
    """

    def __init__(self, in_channels: int, out_channels: int, stride: int):
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, out_channels, 3, stride=stride, padding=1, bias=False)
        self.norm1 = group_norm(out_channels)
        self.conv2 = nn.Conv2d(out_channels, out_channels, 3, padding=1, bias=False)
        self.norm2 = group_norm(out_channels)
        self.shortcut = nn.Identity()
        if stride != 1 or in_channels != out_channels:
            self.shortcut = nn.Sequential(
                nn.Conv2d(in_channels, out_channels, 1, stride=stride, bias=False), group_norm(out_channels)
            )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = F.relu(self.norm1(self.conv1(x)))  # [B, C_out, H', W']
        h = self.norm2(self.conv2(h))  # [B, C_out, H', W']
        return F.relu(h + self.shortcut(x))  # [B, C_out, H', W']


class SpatialSoftmax(nn.Module):
    """Per-channel expected image coordinates: [B, K, h, w] -> keypoints [B, K, 2] (x, y).

    p_k(i, j) = softmax_{i,j}(f_k(i, j) / temperature);  x_k = Σ p_k · x(j),  y_k = Σ p_k · y(i)
    with pixel-centre coordinates x(j), y(i) spanning [−1, 1] (left/top = −1). Being
    convex combinations of those coordinates, keypoints always lie in [−1, 1].
    The temperature is learned (stored as its log), as in Levine et al. 2016.
    """

    def __init__(self, height: int, width: int, temperature: float = 1.0, learnable_temperature: bool = True):
        super().__init__()
        ys = torch.linspace(-1.0, 1.0, height) if height > 1 else torch.zeros(1)  # [h]
        xs = torch.linspace(-1.0, 1.0, width) if width > 1 else torch.zeros(1)  # [w]
        grid_y, grid_x = torch.meshgrid(ys, xs, indexing="ij")  # each [h, w]
        self.register_buffer("pos_x", grid_x.reshape(-1), persistent=False)  # [h·w]
        self.register_buffer("pos_y", grid_y.reshape(-1), persistent=False)  # [h·w]
        log_t = torch.tensor(float(temperature)).log()
        self.log_temperature = nn.Parameter(log_t, requires_grad=learnable_temperature)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        B, K, h, w = features.shape
        if h * w != self.pos_x.numel():
            raise ValueError(f"SpatialSoftmax built for {self.pos_x.numel()} pixels, got a {h}×{w} map")
        logits = features.reshape(B, K, h * w) / self.log_temperature.exp()  # [B, K, h·w]
        attention = torch.softmax(logits, dim=-1)  # [B, K, h·w]
        x = (attention * self.pos_x).sum(dim=-1)  # [B, K]
        y = (attention * self.pos_y).sum(dim=-1)  # [B, K]
        return torch.stack([x, y], dim=-1)  # [B, K, 2]


class KeypointEncoder(nn.Module):
    """Shared part of the image encoders: [B, C, H, W] float in [0, 1] -> features [B, feature_dim].

    Subclasses build ``stem`` and ``stages`` (the backbone, ending in ``keypoint_channels``
    channels on a ``config.feature_map_size`` map) and call :meth:`_build_pooling`.
    """

    config: VisionEncoderConfig

    def _build_pooling(self, keypoint_channels: int) -> None:
        c = self.config
        self.keypoint_maps = nn.Conv2d(keypoint_channels, c.num_keypoints, 1)
        self.spatial_softmax = SpatialSoftmax(*c.feature_map_size)
        self.head = nn.Linear(2 * c.num_keypoints, c.feature_dim)

    def _check_images(self, images: torch.Tensor):
        c = self.config
        expected = (c.in_channels, *c.image_size)
        if images.dim() != 4 or tuple(images.shape[1:]) != expected:
            raise ValueError(
                f"{type(self).__name__}: images must be [B, C, H, W] with (C, H, W) = {expected} "
                f"(configured image_size={c.image_size}), got {tuple(images.shape)}; "
                f"resize/crop the camera images to the model's image size"
            )

    def keypoints(self, images: torch.Tensor) -> torch.Tensor:
        """[B, C, H, W] in [0, 1] -> spatial-softmax keypoints [B, K, 2] in [−1, 1]."""
        self._check_images(images)
        x = images * 2.0 - 1.0  # [B, C, H, W] in [−1, 1]
        x = self.stem(x)  # [B, w, H/s, W/s]
        x = self.stages(x)  # [B, C_last, h, w]
        return self.spatial_softmax(self.keypoint_maps(x))  # [B, K, 2]

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        kp = self.keypoints(images)  # [B, K, 2]
        return self.head(kp.flatten(1))  # [B, feature_dim]


class ResNetEncoder(KeypointEncoder):
    """``resnet18`` backbone (module docstring)."""

    def __init__(self, config: VisionEncoderConfig):
        super().__init__()
        self.config = c = config
        widths = [c.width * m for m in (1, 2, 4, 8)]
        self.stem = nn.Sequential(
            nn.Conv2d(c.in_channels, c.width, 3, stride=c.stem_stride, padding=1, bias=False),
            group_norm(c.width),
            nn.ReLU(),
        )
        stages = []
        in_ch = c.width
        for i, out_ch in enumerate(widths):
            stride = 1 if i == 0 else 2
            stages.append(nn.Sequential(BasicBlock(in_ch, out_ch, stride), BasicBlock(out_ch, out_ch, 1)))
            in_ch = out_ch
        self.stages = nn.Sequential(*stages)
        self._build_pooling(widths[-1])


class KeypointConvEncoder(KeypointEncoder):
    """Shallow ``keypoint_cnn`` backbone: conv 5×5 /s (C -> w) · conv 3×3 (w -> 2w) ·
    conv 3×3 (2w -> 2w), GroupNorm + ReLU after each; keypoints on the [H/s, W/s] grid
    (s = ``stem_stride``, default 2; 4 gives a grid with a quarter of the cells, on which a
    small object gets a larger share of each keypoint's softmax at the start of training)."""

    def __init__(self, config: VisionEncoderConfig):
        super().__init__()
        self.config = c = config
        w = c.width
        self.stem = nn.Sequential(
            nn.Conv2d(c.in_channels, w, 5, stride=c.stem_stride, padding=2, bias=False),  # [B, w, H/s, W/s]
            group_norm(w),
            nn.ReLU(),
        )
        self.stages = nn.Sequential(
            nn.Conv2d(w, 2 * w, 3, padding=1, bias=False),  # [B, 2w, H/s, W/s]
            group_norm(2 * w),
            nn.ReLU(),
            nn.Conv2d(2 * w, 2 * w, 3, padding=1, bias=False),  # [B, 2w, H/s, W/s]
            group_norm(2 * w),
            nn.ReLU(),
        )
        self._build_pooling(2 * w)


def build_vision_encoder(config: VisionEncoderConfig) -> KeypointEncoder:
    """The encoder ``config.backbone`` names."""
    return {"resnet18": ResNetEncoder, "keypoint_cnn": KeypointConvEncoder}[config.backbone](config)
