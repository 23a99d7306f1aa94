"""Transformer denoiser with adaLN-Zero conditioning (DiT) over an action chunk.

Peebles & Xie 2023, "Scalable Diffusion Models with Transformers" (DiT), sec. 3.2:
each block regresses shift/scale/gate vectors from a conditioning vector ``c`` and uses
them around its sub-layers,

    x = x + gate_a ⊙ Attn(LN(x) ⊙ (1 + scale_a) + shift_a)
    x = x + gate_m ⊙ MLP (LN(x) ⊙ (1 + scale_m) + shift_m)

The regression layer is zero-initialised ("adaLN-Zero"), so every gate is 0 and every
block is the identity at initialisation; the final adaLN + linear head is zero too, so
the untrained network outputs exactly 0.

Here the tokens are the T_p actions of the chunk (+ learned positional embedding) and
    c = time_embedding(timestep) + Linear(mean over T_o of the observation tokens).
The observation tokens ``cond [B, T_o, F]`` also enter each block either
  * ``cross_attention``: as keys/values of a (gated, modulated) cross-attention
    sub-layer between self-attention and MLP, or
  * ``in_context``: projected and prepended to the action tokens, so self-attention
    sees ``[obs_1..obs_T_o, act_1..act_T_p]``; only the action positions are read out.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from .base import Denoiser
from .embeddings import SinusoidalTimeEmbedding

COND_MODES = ("cross_attention", "in_context")


@dataclass
class DiTConfig:
    action_dim: int  # D_a
    horizon: int  # T_p
    cond_dim_per_token: int  # F
    n_obs_tokens: int  # T_o
    d_model: int = 128
    n_layers: int = 4
    n_heads: int = 4
    mlp_ratio: float = 4.0
    cond_mode: str = "cross_attention"
    dropout: float = 0.0

    def __post_init__(self):
        for name in ("action_dim", "horizon", "cond_dim_per_token", "n_obs_tokens", "n_layers", "n_heads"):
            if int(getattr(self, name)) < 1:
                raise ValueError(f"DiTConfig.{name} must be >= 1, got {getattr(self, name)}")
        if self.d_model < 2 or self.d_model % 2 != 0:
            raise ValueError(f"DiTConfig.d_model must be even and >= 2, got {self.d_model}")
        if self.d_model % self.n_heads != 0:
            raise ValueError(
                f"DiTConfig.d_model={self.d_model} must be divisible by n_heads={self.n_heads}"
            )
        if self.mlp_ratio <= 0:
            raise ValueError(f"DiTConfig.mlp_ratio must be > 0, got {self.mlp_ratio}")
        if self.cond_mode not in COND_MODES:
            raise ValueError(f"DiTConfig.cond_mode must be one of {COND_MODES}, got {self.cond_mode!r}")
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"DiTConfig.dropout must be in [0, 1), got {self.dropout}")


def modulate(x: torch.Tensor, shift: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
    """adaLN: x [B, N, d], shift/scale [B, d] -> x·(1 + scale) + shift, [B, N, d]."""
    return x * (1 + scale[:, None, :]) + shift[:, None, :]


class Attention(nn.Module):
    """Multi-head attention of queries x [B, N, d] over context [B, M, d] (self if None)."""

    def __init__(self, d_model: int, n_heads: int, dropout: float):
        super().__init__()
        self.n_heads = n_heads
        self.dropout = dropout
        self.q = nn.Linear(d_model, d_model)
        self.kv = nn.Linear(d_model, 2 * d_model)
        self.proj = nn.Linear(d_model, d_model)

    def forward(self, x: torch.Tensor, context: torch.Tensor | None = None) -> torch.Tensor:
        context = x if context is None else context
        B, N, d = x.shape
        M = context.shape[1]
        h = self.n_heads
        q = self.q(x).view(B, N, h, d // h).transpose(1, 2)  # [B, h, N, d/h]
        k, v = self.kv(context).view(B, M, 2, h, d // h).permute(2, 0, 3, 1, 4)  # each [B, h, M, d/h]
        y = F.scaled_dot_product_attention(q, k, v, dropout_p=self.dropout if self.training else 0.0)  # [B, h, N, d/h]
        y = y.transpose(1, 2).reshape(B, N, d)  # [B, N, d]
        return self.proj(y)  # [B, N, d]


class DiTBlock(nn.Module):
    """One adaLN-Zero block. x [B, N, d], c [B, d], obs [B, T_o, d] or None -> [B, N, d]."""

    def __init__(self, d_model: int, n_heads: int, mlp_ratio: float, dropout: float, cross_attention: bool):
        super().__init__()
        self.cross_attention = cross_attention
        self.norm_attn = nn.LayerNorm(d_model, elementwise_affine=False, eps=1e-6)
        self.attn = Attention(d_model, n_heads, dropout)
        if cross_attention:
            self.norm_cross = nn.LayerNorm(d_model, elementwise_affine=False, eps=1e-6)
            self.cross = Attention(d_model, n_heads, dropout)
        self.norm_mlp = nn.LayerNorm(d_model, elementwise_affine=False, eps=1e-6)
        hidden = int(round(mlp_ratio * d_model))
        self.mlp = nn.Sequential(
            nn.Linear(d_model, hidden), nn.GELU(approximate="tanh"), nn.Dropout(dropout), nn.Linear(hidden, d_model)
        )
        n_sublayers = 3 if cross_attention else 2
        self.n_mod = 3 * n_sublayers  # (shift, scale, gate) per sub-layer
        self.adaLN = nn.Sequential(nn.SiLU(), nn.Linear(d_model, self.n_mod * d_model))
        nn.init.zeros_(self.adaLN[-1].weight)  # adaLN-Zero: all gates start at 0 → identity block
        nn.init.zeros_(self.adaLN[-1].bias)

    def forward(self, x: torch.Tensor, c: torch.Tensor, obs: torch.Tensor | None = None) -> torch.Tensor:
        mods = self.adaLN(c).chunk(self.n_mod, dim=-1)  # n_mod tensors of [B, d]
        shift_a, scale_a, gate_a = mods[0:3]
        x = x + gate_a[:, None, :] * self.attn(modulate(self.norm_attn(x), shift_a, scale_a))  # [B, N, d]
        if self.cross_attention:
            shift_c, scale_c, gate_c = mods[3:6]
            x = x + gate_c[:, None, :] * self.cross(modulate(self.norm_cross(x), shift_c, scale_c), obs)  # [B, N, d]
        shift_m, scale_m, gate_m = mods[-3:]
        x = x + gate_m[:, None, :] * self.mlp(modulate(self.norm_mlp(x), shift_m, scale_m))  # [B, N, d]
        return x


class FinalLayer(nn.Module):
    """adaLN (shift, scale) + zero-initialised linear head: [B, N, d], c [B, d] -> [B, N, D_a]."""

    def __init__(self, d_model: int, out_dim: int):
        super().__init__()
        self.norm = nn.LayerNorm(d_model, elementwise_affine=False, eps=1e-6)
        self.adaLN = nn.Sequential(nn.SiLU(), nn.Linear(d_model, 2 * d_model))
        self.linear = nn.Linear(d_model, out_dim)
        for layer in (self.adaLN[-1], self.linear):
            nn.init.zeros_(layer.weight)
            nn.init.zeros_(layer.bias)

    def forward(self, x: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
        shift, scale = self.adaLN(c).chunk(2, dim=-1)  # each [B, d]
        return self.linear(modulate(self.norm(x), shift, scale))  # [B, N, D_a]


class TransformerDenoiser(Denoiser):
    """Denoiser ``forward(sample [B,T_p,D_a], timestep [B], cond [B,T_o,F]) -> [B,T_p,D_a]``."""

    def __init__(self, config: DiTConfig):
        super().__init__()
        self.config = c = config
        d = c.d_model
        self.action_in = nn.Linear(c.action_dim, d)
        self.action_pos = nn.Parameter(torch.zeros(1, c.horizon, d))  # [1, T_p, d]
        self.obs_in = nn.Linear(c.cond_dim_per_token, d)
        self.obs_pos = nn.Parameter(torch.zeros(1, c.n_obs_tokens, d))  # [1, T_o, d]
        self.time_embedding = SinusoidalTimeEmbedding(d)
        self.obs_pool = nn.Linear(c.cond_dim_per_token, d)  # pooled observation → conditioning vector
        cross = c.cond_mode == "cross_attention"
        self.blocks = nn.ModuleList(
            [DiTBlock(d, c.n_heads, c.mlp_ratio, c.dropout, cross_attention=cross) for _ in range(c.n_layers)]
        )
        self.final = FinalLayer(d, c.action_dim)
        nn.init.normal_(self.action_pos, std=0.02)
        nn.init.normal_(self.obs_pos, std=0.02)

    def check_inputs(self, sample: torch.Tensor, timestep: torch.Tensor, cond: torch.Tensor):
        c = self.config
        if sample.dim() != 3 or sample.shape[1:] != (c.horizon, c.action_dim):
            raise ValueError(
                f"TransformerDenoiser: sample must be [B, T_p={c.horizon}, D_a={c.action_dim}], "
                f"got {tuple(sample.shape)}"
            )
        if timestep.shape != (sample.shape[0],):
            raise ValueError(
                f"TransformerDenoiser: timestep must be [B={sample.shape[0]}], got {tuple(timestep.shape)}"
            )
        expected = (sample.shape[0], c.n_obs_tokens, c.cond_dim_per_token)
        if cond is None or tuple(cond.shape) != expected:
            got = None if cond is None else tuple(cond.shape)
            raise ValueError(f"TransformerDenoiser: cond must be [B, T_o, F] = {expected}, got {got}")

    def denoise(self, sample: torch.Tensor, timestep: torch.Tensor, cond: torch.Tensor) -> torch.Tensor:
        T_p = self.config.horizon
        x = self.action_in(sample) + self.action_pos  # [B, T_p, d]
        obs = self.obs_in(cond) + self.obs_pos  # [B, T_o, d]
        c = self.time_embedding(timestep) + self.obs_pool(cond.mean(dim=1))  # [B, d]

        if self.config.cond_mode == "in_context":
            x = torch.cat([obs, x], dim=1)  # [B, T_o + T_p, d]
            for block in self.blocks:
                x = block(x, c)  # [B, T_o + T_p, d]
            x = x[:, -T_p:]  # [B, T_p, d]: read out the action positions only
        else:
            for block in self.blocks:
                x = block(x, c, obs)  # [B, T_p, d]
        return self.final(x, c)  # [B, T_p, D_a]
