"""Min/max normaliser mapping each feature dimension to [-1, 1].

Diffusion Policy (Chi et al. 2023, arXiv 2303.04137, Sec. 4 / its ``LinearNormalizer``)
normalises actions and low-dimensional observations by their min/max range rather than
by mean/std: the samplers clip x̂0 to [-1, 1], and a z-score normaliser would leave part
of the action space unreachable after clipping.

For every feature d (the last axis)::

    center_d = (max_d + min_d) / 2
    half_d   = (max_d - min_d) / 2            if max_d - min_d >= eps
             = 1                              otherwise (constant dimension)
    normalize(x)   = (x - center) / half       -> [-1, 1] on the fitted data
    unnormalize(y) =  y * half + center

A constant dimension therefore maps to exactly 0 and back to exactly its value.
The statistics are registered buffers, so they travel in ``state_dict()`` (and in the
``model.safetensors`` file) together with the weights.
"""
from __future__ import annotations

import torch
from torch import nn

RANGE_EPS = 1e-4


class MinMaxNormalizer(nn.Module):
    """Per-feature min/max normaliser over the last axis; statistics are buffers.

    An unfitted normaliser has ``min = -1`` and ``max = 1`` and is the identity.
    """

    def __init__(self, dim: int, eps: float = RANGE_EPS):
        super().__init__()
        if not isinstance(dim, int) or dim < 0:
            raise ValueError(f"MinMaxNormalizer: dim must be a non-negative int, got {dim!r}")
        if not eps > 0:
            raise ValueError(f"MinMaxNormalizer: eps must be > 0, got {eps!r}")
        self.dim = dim
        self.eps = float(eps)
        self.register_buffer("min", -torch.ones(dim))  # [D]
        self.register_buffer("max", torch.ones(dim))  # [D]
        self.register_load_state_dict_post_hook(_validate_after_load)

    # ---------------------------------------------------------------- statistics
    @torch.no_grad()
    def fit(self, data) -> "MinMaxNormalizer":
        """Set min/max from ``data`` of shape [N, ..., D] (reduced over all but the last axis)."""
        data = torch.as_tensor(data, dtype=torch.float64)
        if data.ndim < 1 or data.shape[-1] != self.dim:
            raise ValueError(
                f"MinMaxNormalizer.fit: expected data [..., {self.dim}], got shape {tuple(data.shape)}"
            )
        flat = data.reshape(-1, self.dim)  # [N*..., D]
        if flat.shape[0] == 0:
            raise ValueError("MinMaxNormalizer.fit: data is empty")
        if not torch.isfinite(flat).all():
            bad = (~torch.isfinite(flat)).any(dim=0).nonzero().flatten().tolist()
            raise ValueError(f"MinMaxNormalizer.fit: data has non-finite values in dims {bad}")
        self.set_stats(flat.min(dim=0).values, flat.max(dim=0).values)
        return self

    @torch.no_grad()
    def set_stats(self, min_values, max_values) -> "MinMaxNormalizer":
        """Set the statistics explicitly (e.g. from joint limits); both [D]."""
        lo = torch.as_tensor(min_values, dtype=torch.float64).reshape(-1)  # [D]
        hi = torch.as_tensor(max_values, dtype=torch.float64).reshape(-1)  # [D]
        _check_stats(lo, hi, self.dim)
        self.min.copy_(lo.to(self.min.dtype))
        self.max.copy_(hi.to(self.max.dtype))
        return self

    def _scale_offset(self):
        span = self.max - self.min  # [D]
        half = torch.where(span >= self.eps, span / 2, torch.ones_like(span))  # [D]
        center = (self.max + self.min) / 2  # [D]
        return half, center

    # ---------------------------------------------------------------- mapping
    def normalize(self, x: torch.Tensor) -> torch.Tensor:
        """Robot units [..., D] -> normalised [..., D] ([-1, 1] on the fitted data)."""
        self._check_input(x, "normalize")
        half, center = self._scale_offset()
        return (x - center.to(x.dtype)) / half.to(x.dtype)

    def unnormalize(self, y: torch.Tensor) -> torch.Tensor:
        """Normalised [..., D] -> robot units [..., D]."""
        self._check_input(y, "unnormalize")
        half, center = self._scale_offset()
        return y * half.to(y.dtype) + center.to(y.dtype)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.normalize(x)

    def _check_input(self, x: torch.Tensor, what: str) -> None:
        if x.shape[-1:] != (self.dim,):
            raise ValueError(
                f"MinMaxNormalizer.{what}: expected last dim {self.dim}, got shape {tuple(x.shape)}"
            )

    def extra_repr(self) -> str:
        return f"dim={self.dim}, eps={self.eps}"


def _check_stats(lo: torch.Tensor, hi: torch.Tensor, dim: int) -> None:
    if lo.shape != (dim,) or hi.shape != (dim,):
        raise ValueError(
            f"MinMaxNormalizer: stats must have shape [{dim}], got min {tuple(lo.shape)}, "
            f"max {tuple(hi.shape)}"
        )
    if not (torch.isfinite(lo).all() and torch.isfinite(hi).all()):
        raise ValueError(f"MinMaxNormalizer: non-finite statistics (min={lo.tolist()}, max={hi.tolist()})")
    if (lo > hi).any():
        bad = (lo > hi).nonzero().flatten().tolist()
        raise ValueError(f"MinMaxNormalizer: min > max in dims {bad}")


def _validate_after_load(module: MinMaxNormalizer, incompatible_keys) -> None:
    """Reject non-finite or inverted statistics arriving through ``load_state_dict``."""
    _check_stats(module.min.detach().double(), module.max.detach().double(), module.dim)
