"""Proprioceptive encoder: a small MLP applied independently at each history step.

[B, T_o, D_s] -> [B, T_o, F_p]. The weights are shared across the T_o steps (the
time order is kept by the token position, not by the MLP), like the per-step low-dim
features of Diffusion Policy (Chi et al. 2023).
"""
from __future__ import annotations

from typing import Sequence

import torch
from torch import nn

from .embeddings import MLP


class ProprioMLP(nn.Module):
    """Linear → Mish → … → Linear over the last dimension of ``[B, T_o, state_dim]``."""

    def __init__(self, state_dim: int, feature_dim: int, hidden: Sequence[int] = (128,)):
        super().__init__()
        if state_dim < 1 or feature_dim < 1:
            raise ValueError(
                f"ProprioMLP needs state_dim >= 1 and feature_dim >= 1, got {state_dim}, {feature_dim}"
            )
        self.state_dim = int(state_dim)
        self.feature_dim = int(feature_dim)
        self.mlp = MLP(self.state_dim, self.feature_dim, hidden)

    def forward(self, state: torch.Tensor) -> torch.Tensor:
        if state.dim() != 3 or state.shape[-1] != self.state_dim:
            raise ValueError(
                f"ProprioMLP: state must be [B, T_o, D_s={self.state_dim}], got {tuple(state.shape)}"
            )
        return self.mlp(state)  # [B, T_o, feature_dim]
