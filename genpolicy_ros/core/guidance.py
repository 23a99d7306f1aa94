"""Classifier-free guidance (Ho & Salimans, "Classifier-Free Diffusion Guidance", 2022).

Training drops the observation condition with probability ``p`` (≈ 0.1–0.2), replacing
it by a learned null embedding (:func:`drop_condition_mask` draws which samples). At
inference the network is evaluated with and without the condition and combined as

    out = out_uncond + w · (out_cond − out_uncond)

for a velocity (flow), an ε or an x̂0 prediction (diffusion) alike. ``w = 1`` is plain
conditional sampling, ``w = 0`` unconditional; ``w > 1`` follows the condition more
tightly at the cost of diversity (and can leave the data range — the policy clips).
"""
from __future__ import annotations

import math
from typing import Optional

import torch


def cfg_combine(out_uncond: torch.Tensor, out_cond: torch.Tensor, scale: float) -> torch.Tensor:
    """``out_uncond + scale·(out_cond − out_uncond)``; shapes must match."""
    if out_uncond.shape != out_cond.shape:
        raise ValueError(
            f"cfg_combine: unconditional {tuple(out_uncond.shape)} and conditional "
            f"{tuple(out_cond.shape)} outputs must have the same shape"
        )
    if isinstance(scale, bool) or not isinstance(scale, (int, float)) or not math.isfinite(scale):
        raise ValueError(f"cfg_combine: scale must be a finite number, got {scale!r}")
    if scale == 1.0:
        return out_cond
    if scale == 0.0:
        return out_uncond
    return out_uncond + scale * (out_cond - out_uncond)


def drop_condition_mask(
    batch: int, p: float, generator: Optional[torch.Generator] = None, device=None
) -> torch.Tensor:
    """Bool ``[batch]``: True where the condition is dropped (replaced by the null token).

    Each entry is independently True with probability ``p``; ``p = 0`` drops nothing,
    ``p = 1`` drops everything. Deterministic given ``generator``.
    """
    if isinstance(batch, bool) or not isinstance(batch, int) or batch < 1:
        raise ValueError(f"drop_condition_mask: batch must be an int >= 1, got {batch!r}")
    if isinstance(p, bool) or not isinstance(p, (int, float)) or not (0.0 <= p <= 1.0):
        raise ValueError(f"drop_condition_mask: p must be a probability in [0, 1], got {p!r}")
    return torch.rand(batch, generator=generator, device=device) < p  # [B] bool
