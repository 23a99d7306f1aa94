"""1-D temporal convolutional U-Net with FiLM conditioning (Diffusion Policy, CNN variant).

Chi et al. 2023, "Diffusion Policy: Visuomotor Policy Learning via Action Diffusion",
arXiv 2303.04137, sec. 3.3 / fig. 3:
  * the action chunk ``[B, T_p, D_a]`` is treated as a 1-D signal over time with D_a
    channels;
  * every convolution block is Conv1d → GroupNorm → Mish;
  * each residual block is modulated by FiLM (Perez et al. 2018): a per-channel scale
    and bias computed by Mish → Linear from the conditioning vector
        cond = time_embedding(k) ⊕ flatten(observation tokens [T_o, F]);
  * two residual blocks per level, stride-2 conv downsampling, transposed-conv
    upsampling, skip connections between matching levels.  (Unlike the reference code,
    each up level upsamples *first* and then concatenates the skip of the same
    resolution, as in the original U-Net of Ronneberger et al. 2015.)

Shapes through the default net (down_dims = (64, 128, 256), T_p = 16)::

    input [B,16,D_a] → [B,D_a,16] → level0 [B,64,16] → down → level1 [B,128,8] → down
          → level2 [B,256,4] → mid [B,256,4] → up ⊕ skip1 [B,128,8] → up ⊕ skip0 [B,64,16]
          → final conv [B,D_a,16] → [B,16,D_a]

The horizon is halved ``len(down_dims) − 1`` times, so T_p must be divisible by
``2^(len(down_dims) − 1)`` (4 for the default three levels).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import torch
from torch import nn

from .base import Denoiser
from .embeddings import SinusoidalTimeEmbedding


@dataclass
class UNet1DConfig:
    action_dim: int  # D_a
    horizon: int  # T_p
    cond_dim: int  # T_o · F (flattened observation tokens); 0 = unconditional
    down_dims: Sequence[int] = (64, 128, 256)
    kernel_size: int = 5
    n_groups: int = 8
    time_embed_dim: int = 128

    def __post_init__(self):
        self.down_dims = tuple(int(d) for d in self.down_dims)
        if self.action_dim < 1:
            raise ValueError(f"UNet1DConfig.action_dim must be >= 1, got {self.action_dim}")
        if self.cond_dim < 0:
            raise ValueError(f"UNet1DConfig.cond_dim must be >= 0, got {self.cond_dim}")
        if len(self.down_dims) < 1:
            raise ValueError("UNet1DConfig.down_dims needs at least one level")
        for d in self.down_dims:
            if d < 1 or d % self.n_groups != 0:
                raise ValueError(
                    f"UNet1DConfig.down_dims={self.down_dims}: every width must be a positive "
                    f"multiple of n_groups={self.n_groups} (GroupNorm)"
                )
        if self.kernel_size < 1 or self.kernel_size % 2 == 0:
            raise ValueError(
                f"UNet1DConfig.kernel_size must be odd (keeps the length), got {self.kernel_size}"
            )
        if self.time_embed_dim < 2 or self.time_embed_dim % 2 != 0:
            raise ValueError(
                f"UNet1DConfig.time_embed_dim must be even and >= 2, got {self.time_embed_dim}"
            )
        factor = 2 ** (len(self.down_dims) - 1)
        if self.horizon < 1 or self.horizon % factor != 0:
            raise ValueError(
                f"UNet1DConfig.horizon={self.horizon} must be a positive multiple of "
                f"2^(len(down_dims)-1) = {factor}: the U-Net halves the time axis "
                f"{len(self.down_dims) - 1} time(s) (down_dims={self.down_dims}). "
                f"Use a horizon such as {max(factor, (self.horizon // factor + 1) * factor)} "
                f"or fewer levels."
            )


class Conv1dBlock(nn.Module):
    """Conv1d → GroupNorm → Mish.  [B, C_in, T] -> [B, C_out, T]."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, n_groups: int):
        super().__init__()
        self.block = nn.Sequential(
            nn.Conv1d(in_channels, out_channels, kernel_size, padding=kernel_size // 2),
            nn.GroupNorm(n_groups, out_channels),
            nn.Mish(),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.block(x)


class FiLMResidualBlock(nn.Module):
    """Two conv blocks with a FiLM modulation between them, plus a residual path.

        h = block0(x);  (γ, β) = Linear(Mish(cond));  h = γ ⊙ h + β;  out = block1(h) + res(x)

    x: [B, C_in, T], cond: [B, cond_dim] -> [B, C_out, T].
    """

    def __init__(self, in_channels: int, out_channels: int, cond_dim: int, kernel_size: int, n_groups: int):
        super().__init__()
        self.out_channels = out_channels
        self.block0 = Conv1dBlock(in_channels, out_channels, kernel_size, n_groups)
        self.block1 = Conv1dBlock(out_channels, out_channels, kernel_size, n_groups)
        self.film = nn.Sequential(nn.Mish(), nn.Linear(cond_dim, 2 * out_channels))
        self.residual = (
            nn.Conv1d(in_channels, out_channels, 1) if in_channels != out_channels else nn.Identity()
        )

    def forward(self, x: torch.Tensor, cond: torch.Tensor) -> torch.Tensor:
        h = self.block0(x)  # [B, C_out, T]
        scale, bias = self.film(cond).unsqueeze(-1).chunk(2, dim=1)  # each [B, C_out, 1]
        h = scale * h + bias  # [B, C_out, T]
        h = self.block1(h)  # [B, C_out, T]
        return h + self.residual(x)  # [B, C_out, T]


class ConditionalUnet1D(Denoiser):
    """Denoiser ``forward(sample [B,T_p,D_a], timestep [B], cond [B,T_o,F]) -> [B,T_p,D_a]``.

    ``cond`` is flattened to ``[B, T_o·F]`` and must have ``config.cond_dim`` entries per
    sample (``cond`` may be None when ``cond_dim == 0``).
    """

    def __init__(self, config: UNet1DConfig):
        super().__init__()
        self.config = c = config
        self.time_embedding = SinusoidalTimeEmbedding(c.time_embed_dim)
        film_dim = c.time_embed_dim + c.cond_dim  # width of the FiLM conditioning vector
        widths = (c.action_dim, *c.down_dims)  # down level i maps widths[i] -> widths[i+1] channels
        k, g = c.kernel_size, c.n_groups

        self.down = nn.ModuleList()
        for i, (w_in, w_out) in enumerate(zip(widths[:-1], widths[1:])):
            is_last = i == len(c.down_dims) - 1
            self.down.append(
                nn.ModuleDict(
                    {
                        "res0": FiLMResidualBlock(w_in, w_out, film_dim, k, g),
                        "res1": FiLMResidualBlock(w_out, w_out, film_dim, k, g),
                        # stride-2 conv halves T; [B, w_out, T] -> [B, w_out, T/2]
                        "resample": nn.Identity() if is_last else nn.Conv1d(w_out, w_out, 3, stride=2, padding=1),
                    }
                )
            )

        w_mid = c.down_dims[-1]
        self.mid = nn.ModuleList(
            [FiLMResidualBlock(w_mid, w_mid, film_dim, k, g), FiLMResidualBlock(w_mid, w_mid, film_dim, k, g)]
        )

        self.up = nn.ModuleList()
        for i in reversed(range(1, len(c.down_dims))):
            w_in, w_skip = c.down_dims[i], c.down_dims[i - 1]
            self.up.append(
                nn.ModuleDict(
                    {
                        # transposed conv doubles T; [B, w_in, T] -> [B, w_in, 2T]
                        "resample": nn.ConvTranspose1d(w_in, w_in, 4, stride=2, padding=1),
                        # input is [upsampled ⊕ skip] along channels: w_in + w_skip
                        "res0": FiLMResidualBlock(w_in + w_skip, w_skip, film_dim, k, g),
                        "res1": FiLMResidualBlock(w_skip, w_skip, film_dim, k, g),
                    }
                )
            )

        self.output = nn.Sequential(
            Conv1dBlock(c.down_dims[0], c.down_dims[0], k, g),
            nn.Conv1d(c.down_dims[0], c.action_dim, 1),
        )

    def check_inputs(self, sample: torch.Tensor, timestep: torch.Tensor, cond: torch.Tensor | None):
        c = self.config
        if sample.dim() != 3 or sample.shape[1] != c.horizon or sample.shape[2] != c.action_dim:
            raise ValueError(
                f"ConditionalUnet1D: sample must be [B, T_p={c.horizon}, D_a={c.action_dim}], "
                f"got {tuple(sample.shape)}"
            )
        if timestep.shape != (sample.shape[0],):
            raise ValueError(
                f"ConditionalUnet1D: timestep must be [B={sample.shape[0]}], got {tuple(timestep.shape)}"
            )
        if c.cond_dim > 0:
            if cond is None:
                raise ValueError(f"ConditionalUnet1D: cond is required (cond_dim={c.cond_dim})")
            if cond.shape[0] != sample.shape[0] or cond.shape[1:].numel() != c.cond_dim:
                raise ValueError(
                    f"ConditionalUnet1D: cond {tuple(cond.shape)} must have batch {sample.shape[0]} "
                    f"and T_o·F = cond_dim = {c.cond_dim} entries per sample"
                )

    def denoise(self, sample: torch.Tensor, timestep: torch.Tensor, cond: torch.Tensor | None = None) -> torch.Tensor:
        B = sample.shape[0]
        film = self.time_embedding(timestep)  # [B, time_embed_dim]
        if self.config.cond_dim > 0:
            film = torch.cat([film, cond.reshape(B, -1).to(film.dtype)], dim=-1)  # [B, time_embed_dim + T_o·F]

        x = sample.transpose(1, 2)  # [B, D_a, T_p]: actions as channels, time as length
        skips = []
        for level in self.down:
            x = level["res0"](x, film)  # [B, w_out, T]
            x = level["res1"](x, film)  # [B, w_out, T]
            skips.append(x)
            x = level["resample"](x)  # [B, w_out, T/2] (last level: unchanged)
        for block in self.mid:
            x = block(x, film)  # [B, down_dims[-1], T_min]
        skips.pop()  # the deepest level's output feeds the middle blocks directly
        for level in self.up:
            x = level["resample"](x)  # [B, w_in, 2T]
            x = torch.cat([x, skips.pop()], dim=1)  # [B, w_in + w_skip, 2T]
            x = level["res0"](x, film)  # [B, w_skip, 2T]
            x = level["res1"](x, film)  # [B, w_skip, 2T]
        x = self.output(x)  # [B, D_a, T_p]
        return x.transpose(1, 2)  # [B, T_p, D_a]
