"""Small building blocks shared by the denoisers: timestep embeddings and an MLP.

Every denoiser receives ``timestep: [B]`` as a *float* tensor (docs/internals.md):
diffusion passes the integer step k in [0, K) and flow matching passes
``t · flow_time_scale``, so both live on roughly [0, 100].
"""
from __future__ import annotations

import math
from typing import Sequence

import torch
from torch import nn


def sinusoidal_embedding(timestep: torch.Tensor, dim: int, max_period: float = 10000.0) -> torch.Tensor:
    """Sinusoidal embedding of (possibly fractional) timesteps.

    Transformer positional encoding (Vaswani et al. 2017, sec. 3.5) applied to the
    diffusion time as in DDPM (Ho et al. 2020): for i in [0, dim/2)
        freq_i = max_period^(−i / (dim/2)),  emb = [sin(t·freq), cos(t·freq)].
    Fractional t is fine: the map is smooth in t.

    timestep: [B] (any float/int dtype) -> [B, dim] float32.
    """
    if dim < 2 or dim % 2 != 0:
        raise ValueError(f"sinusoidal embedding dim must be an even number >= 2, got {dim}")
    if timestep.dim() != 1:
        raise ValueError(f"timestep must have shape [B], got {tuple(timestep.shape)}")
    half = dim // 2
    exponent = torch.arange(half, dtype=torch.float32, device=timestep.device) / half  # [half]
    freqs = torch.exp(-math.log(max_period) * exponent)  # [half]
    args = timestep.to(torch.float32)[:, None] * freqs[None, :]  # [B, half]
    return torch.cat([torch.sin(args), torch.cos(args)], dim=-1)  # [B, dim]


class SinusoidalTimeEmbedding(nn.Module):
    """float timestep [B] -> sinusoidal features -> MLP -> [B, dim].

    The MLP (Linear → Mish → Linear, hidden width ``4·dim``) follows Diffusion Policy's
    ``diffusion_step_encoder`` (Chi et al. 2023).
    """

    def __init__(self, dim: int, hidden_mult: int = 4):
        super().__init__()
        if dim < 2 or dim % 2 != 0:
            raise ValueError(f"time embedding dim must be an even number >= 2, got {dim}")
        self.dim = dim
        self.mlp = nn.Sequential(
            nn.Linear(dim, hidden_mult * dim),
            nn.Mish(),
            nn.Linear(hidden_mult * dim, dim),
        )

    def forward(self, timestep: torch.Tensor) -> torch.Tensor:
        emb = sinusoidal_embedding(timestep, self.dim)  # [B, dim]
        emb = emb.to(self.mlp[0].weight.dtype)
        return self.mlp(emb)  # [B, dim]


class MLP(nn.Module):
    """Linear layers with an activation between them (none after the last).

    Acts on the last dimension, so ``[..., in_dim] -> [..., out_dim]`` for any leading
    shape (e.g. ``[B, T_o, D_s]``).
    """

    def __init__(
        self,
        in_dim: int,
        out_dim: int,
        hidden: Sequence[int] = (128,),
        activation: type[nn.Module] = nn.Mish,
    ):
        super().__init__()
        dims = [int(in_dim), *[int(h) for h in hidden], int(out_dim)]
        if any(d < 1 for d in dims):
            raise ValueError(f"MLP dimensions must all be >= 1, got {dims}")
        layers: list[nn.Module] = []
        for i, (d_in, d_out) in enumerate(zip(dims[:-1], dims[1:])):
            layers.append(nn.Linear(d_in, d_out))
            if i < len(dims) - 2:
                layers.append(activation())
        self.net = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)  # [..., out_dim]
