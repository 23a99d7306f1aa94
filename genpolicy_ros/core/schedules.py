"""Discrete-time noise schedules for DDPM/DDIM (variance-preserving diffusion).

Convention (docs/internals.md): integer timesteps ``k ∈ [0, K)``, ``K = num_train_steps``;
``k = K − 1`` is the noisiest. The forward process is (Ho et al. 2020, arXiv 2006.11239,
eq. 4)::

    q(x_k | x_0) = N( sqrt(ᾱ_k) · x_0 , (1 − ᾱ_k) · I ),   ᾱ_k = Π_{i ≤ k} (1 − β_i)

Arithmetic precision follows the ``diffusers`` schedulers exactly, so that our samplers
reproduce theirs bit for bit rather than only to rounding:
  * cosine betas are computed in float64 (Python floats) and cast to float32;
  * linear / scaled-linear betas come from a float32 ``torch.linspace`` (a float64
    linspace cast to float32 differs in the last 1–2 ulps);
  * ``alphas`` and ``alphas_cumprod`` are float32 operations on those float32 betas.
Why it matters: a float64 cumulative product differs from diffusers' by ~2e-7 relative,
and the 1/sqrt(ᾱ) ≈ 2000 factor of the cosine schedule's last step turns that into
~3e-3 differences of an unclipped ε-prediction DDIM sample (measured); with the 1-ulp
linear betas the difference was 8e-6, at the edge of the 1e-5 test tolerance.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from functools import cached_property

import torch

BETA_SCHEDULES = ("linear", "scaled_linear", "squaredcos_cap_v2")

# Nichol & Dhariwal 2021 (arXiv 2102.09672, eq. 17): offset s and the clip of β at 0.999
# that keeps the last step from being singular.
_COSINE_OFFSET = 0.008
_COSINE_MAX_BETA = 0.999


def _cosine_alpha_bar(t: float) -> float:
    """ᾱ(t) = cos²(((t + s)/(1 + s)) · π/2), t ∈ [0, 1] (Nichol & Dhariwal 2021, eq. 17)."""
    return math.cos((t + _COSINE_OFFSET) / (1.0 + _COSINE_OFFSET) * math.pi / 2.0) ** 2


@dataclass(frozen=True)
class NoiseSchedule:
    """β schedule of a K-step discrete diffusion and the quantities derived from it.

    ``beta_schedule``:
      * ``"linear"``: β_k evenly spaced from ``beta_start`` to ``beta_end`` (Ho et al. 2020).
      * ``"scaled_linear"``: sqrt(β_k) evenly spaced (the latent-diffusion schedule).
      * ``"squaredcos_cap_v2"``: β_k = min(1 − ᾱ((k+1)/K) / ᾱ(k/K), 0.999) with the cosine
        ᾱ(t) of Nichol & Dhariwal 2021; ``beta_start``/``beta_end`` are ignored. This is
        the Diffusion Policy default (Chi et al. 2023).

    The tensors are float32 on the CPU, computed once per instance and cached; treat them
    as read-only (they are shared by every caller).
    """

    num_train_steps: int = 100
    beta_schedule: str = "squaredcos_cap_v2"
    beta_start: float = 1e-4
    beta_end: float = 0.02

    def __post_init__(self) -> None:
        if isinstance(self.num_train_steps, bool) or not isinstance(self.num_train_steps, int):
            raise ValueError(
                f"num_train_steps must be an int, got {type(self.num_train_steps).__name__} "
                f"{self.num_train_steps!r}"
            )
        if self.num_train_steps < 1:
            raise ValueError(f"num_train_steps must be >= 1, got {self.num_train_steps}")
        if self.beta_schedule not in BETA_SCHEDULES:
            raise ValueError(
                f"beta_schedule must be one of {BETA_SCHEDULES}, got {self.beta_schedule!r}"
            )
        for name in ("beta_start", "beta_end"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                raise ValueError(f"{name} must be a float, got {type(value).__name__} {value!r}")
            if not (math.isfinite(value) and 0.0 < value < 1.0):
                raise ValueError(f"{name} must be in (0, 1), got {value!r}")
        if self.beta_start > self.beta_end:
            raise ValueError(
                f"beta_start ({self.beta_start}) must not exceed beta_end ({self.beta_end})"
            )

    @cached_property
    def betas(self) -> torch.Tensor:
        """β_k, float32 ``[K]`` (see the module docstring for the precision of each step)."""
        k = self.num_train_steps
        if self.beta_schedule == "linear":
            return torch.linspace(self.beta_start, self.beta_end, k, dtype=torch.float32)  # [K]
        if self.beta_schedule == "scaled_linear":
            return (
                torch.linspace(self.beta_start**0.5, self.beta_end**0.5, k, dtype=torch.float32)
                ** 2
            )  # [K]
        # squaredcos_cap_v2: Python (float64) arithmetic, then cast
        betas = torch.tensor(
            [
                min(1.0 - _cosine_alpha_bar((i + 1) / k) / _cosine_alpha_bar(i / k),
                    _COSINE_MAX_BETA)
                for i in range(k)
            ],
            dtype=torch.float64,
        )  # [K]
        return betas.to(torch.float32)

    @cached_property
    def alphas(self) -> torch.Tensor:
        """α_k = 1 − β_k, float32 ``[K]``."""
        return 1.0 - self.betas

    @cached_property
    def alphas_cumprod(self) -> torch.Tensor:
        """ᾱ_k = Π_{i ≤ k} α_i, float32 ``[K]`` (float32 product, as ``diffusers``)."""
        return torch.cumprod(self.alphas, dim=0)
