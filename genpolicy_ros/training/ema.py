"""Exponential moving average of model weights, used for inference and saved.

Follows Diffusion Policy's ``EMAModel`` (Chi et al. 2023), itself the warm-up form of
the EMA in ``@crowsonkb``'s k-diffusion: after ``k`` counted optimiser steps the decay is

    decay(k) = clamp(1 − (1 + k / inv_gamma)^(−power), min_decay, max_decay),   decay(k<=0) = 0

with ``k = step − update_after_step − 1`` and ``step`` the 0-based index of the optimiser
step just taken (the first two updates copy the weights), so early averages follow the weights closely and
late ones average over ~1/(1 − decay) steps. Each update does, per floating parameter,
``ema ← decay · ema + (1 − decay) · param``; buffers (e.g. normaliser statistics) and
non-float or frozen (``requires_grad=False``) tensors are copied.
"""
from __future__ import annotations

import copy

import torch
from torch import nn

from .config import EMAConfig


def ema_decay(step: int, power: float = 0.75, max_decay: float = 0.9999, min_decay: float = 0.0,
              inv_gamma: float = 1.0, update_after_step: int = 0) -> float:
    """Decay for the update after 0-based optimiser step ``step`` (see module docstring)."""
    k = step - update_after_step - 1
    if k <= 0:
        return 0.0
    value = 1.0 - (1.0 + k / inv_gamma) ** (-power)
    return max(min_decay, min(value, max_decay))


class EMA:
    """Holds ``self.model``, an averaged copy of the trained model (eval mode, no grads)."""

    def __init__(self, model: nn.Module, config: EMAConfig = EMAConfig()):
        self.config = config
        self.model = copy.deepcopy(model).eval()
        self.model.requires_grad_(False)
        self.num_updates = 0  # optimiser steps seen
        self.last_decay = 0.0

    def decay(self, step: int) -> float:
        c = self.config
        return ema_decay(step, c.power, c.max_decay, c.min_decay, c.inv_gamma, c.update_after_step)

    @torch.no_grad()
    def update(self, model: nn.Module) -> float:
        """Fold the current weights of ``model`` into the average; returns the decay used."""
        d = self.decay(self.num_updates)
        self.num_updates += 1
        self.last_decay = d
        src = dict(model.named_parameters())
        for name, p_ema in self.model.named_parameters():
            p = src[name].detach()
            if p_ema.is_floating_point() and src[name].requires_grad:
                p_ema.mul_(d).add_(p.to(p_ema.dtype), alpha=1.0 - d)
            else:
                p_ema.copy_(p)
        src_buffers = dict(model.named_buffers())
        for name, b_ema in self.model.named_buffers():
            b_ema.copy_(src_buffers[name])
        return d

    def state_dict(self) -> dict:
        """Tensors only: the averaged weights (``model.``-prefixed) and the update count."""
        out = {f"model.{k}": v for k, v in self.model.state_dict().items()}
        out["num_updates"] = torch.tensor(self.num_updates, dtype=torch.int64)
        return out

    def load_state_dict(self, state: dict) -> None:
        weights = {k[len("model."):]: v for k, v in state.items() if k.startswith("model.")}
        self.model.load_state_dict(weights, strict=True)
        self.num_updates = int(state["num_updates"])
