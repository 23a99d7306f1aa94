"""Forward process and training targets of DDPM; x̂0 / ε̂ from a model output.

x_k = sqrt(ᾱ_k)·x0 + sqrt(1−ᾱ_k)·ε (Ho et al. 2020, eq. 4); the denoiser predicts ε
(``"epsilon"``), x0 (``"sample"``) or v = sqrt(ᾱ_k)·ε − sqrt(1−ᾱ_k)·x0 (``"v_prediction"``,
Salimans & Ho 2022). Shapes ``[B, ...]``, timesteps int ``[B]`` (or one int) in [0, K).
"""
from __future__ import annotations

from typing import Any, Union

import numpy as np
import torch

from ..schedules import NoiseSchedule

PREDICTION_TYPES = ("epsilon", "sample", "v_prediction")


# --------------------------------------------------------------------------- validation


def _check_prediction_type(prediction_type: str) -> None:
    if prediction_type not in PREDICTION_TYPES:
        raise ValueError(
            f"prediction_type must be one of {PREDICTION_TYPES}, got {prediction_type!r}"
        )


def _check_int(name: str, value: Any) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise ValueError(f"{name} must be an int, got {type(value).__name__} {value!r}")


def _check_sample(name: str, x: torch.Tensor) -> None:
    if not isinstance(x, torch.Tensor) or not torch.is_floating_point(x):
        raise ValueError(f"{name} must be a floating-point tensor, got {type(x).__name__}"
                         + (f" of dtype {x.dtype}" if isinstance(x, torch.Tensor) else ""))
    if x.ndim != 3:
        raise ValueError(f"{name} must have shape [B, T, D], got {tuple(x.shape)}")


def _timesteps_as_tensor(
    schedule: NoiseSchedule, timesteps: Union[int, torch.Tensor], batch: int, device
) -> torch.Tensor:
    """Validate ``timesteps`` (int or int tensor ``[B]``) and return int64 ``[B]``."""
    if isinstance(timesteps, torch.Tensor):
        if timesteps.dtype not in (torch.int64, torch.int32, torch.int16, torch.int8, torch.uint8):
            raise ValueError(f"timesteps must be an integer tensor, got dtype {timesteps.dtype}")
        if timesteps.ndim == 0:
            timesteps = timesteps.reshape(1).expand(batch)  # [B]
        if timesteps.shape != (batch,):
            raise ValueError(
                f"timesteps must have shape [B] = [{batch}], got {tuple(timesteps.shape)}"
            )
        t = timesteps.to(device=device, dtype=torch.int64)  # [B]
    else:
        _check_int("timesteps", timesteps)
        t = torch.full((batch,), int(timesteps), dtype=torch.int64, device=device)  # [B]
    k = schedule.num_train_steps
    if batch > 0 and (int(t.min()) < 0 or int(t.max()) >= k):
        raise ValueError(
            f"timesteps must lie in [0, {k}) for num_train_steps={k}, "
            f"got min {int(t.min())}, max {int(t.max())}"
        )
    return t


def _gather(values: torch.Tensor, t: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    """values[t] reshaped to broadcast over ``like`` ``[B, ...]``: ``[B, 1, ..., 1]``."""
    out = values.to(device=like.device, dtype=like.dtype)[t]  # [B]
    return out.reshape(t.shape[0], *([1] * (like.ndim - 1)))  # [B, 1, 1]


# --------------------------------------------------------------------------- training


def q_sample(
    schedule: NoiseSchedule,
    x0: torch.Tensor,
    noise: torch.Tensor,
    timesteps: Union[int, torch.Tensor],
) -> torch.Tensor:
    """Noised sample x_k = sqrt(ᾱ_k)·x0 + sqrt(1−ᾱ_k)·ε (Ho et al. 2020, eq. 4).

    ``x0``, ``noise``: ``[B, ...]``; ``timesteps``: int or int tensor ``[B]`` in [0, K).
    Returns ``[B, ...]``.
    """
    if x0.shape != noise.shape:
        raise ValueError(f"x0 {tuple(x0.shape)} and noise {tuple(noise.shape)} differ in shape")
    t = _timesteps_as_tensor(schedule, timesteps, x0.shape[0], x0.device)  # [B]
    abar = _gather(schedule.alphas_cumprod, t, x0)  # [B, 1, 1]
    return abar**0.5 * x0 + (1 - abar) ** 0.5 * noise


def training_target(
    schedule: NoiseSchedule,
    x0: torch.Tensor,
    noise: torch.Tensor,
    timesteps: Union[int, torch.Tensor],
    prediction_type: str,
) -> torch.Tensor:
    """Regression target of the denoiser for ``prediction_type``.

    ``epsilon`` → ε; ``sample`` → x0; ``v_prediction`` → v = sqrt(ᾱ_k)·ε − sqrt(1−ᾱ_k)·x0
    (Salimans & Ho 2022, arXiv 2202.00512). Shapes as :func:`q_sample`.
    """
    _check_prediction_type(prediction_type)
    if x0.shape != noise.shape:
        raise ValueError(f"x0 {tuple(x0.shape)} and noise {tuple(noise.shape)} differ in shape")
    if prediction_type == "epsilon":
        return noise
    if prediction_type == "sample":
        return x0
    t = _timesteps_as_tensor(schedule, timesteps, x0.shape[0], x0.device)  # [B]
    abar = _gather(schedule.alphas_cumprod, t, x0)  # [B, 1, 1]
    return abar**0.5 * noise - (1 - abar) ** 0.5 * x0


def _x0_eps(
    abar: torch.Tensor, x_t: torch.Tensor, model_output: torch.Tensor, prediction_type: str
) -> tuple[torch.Tensor, torch.Tensor]:
    """(x̂0, ε̂) from a model output; ``abar`` broadcasts over ``x_t`` (0-dim or [B,1,1]).

    Written in the same operation order as diffusers' DDIMScheduler.step so that the
    float32 results are identical.
    """
    beta = 1 - abar
    if prediction_type == "epsilon":
        x0 = (x_t - beta ** (0.5) * model_output) / abar ** (0.5)
        eps = model_output
    elif prediction_type == "sample":
        x0 = model_output
        eps = (x_t - abar ** (0.5) * x0) / beta ** (0.5)
    else:  # v_prediction: x̂0 = sqrt(ᾱ)x − sqrt(1−ᾱ)v, ε̂ = sqrt(ᾱ)v + sqrt(1−ᾱ)x
        x0 = (abar**0.5) * x_t - (beta**0.5) * model_output
        eps = (abar**0.5) * model_output + (beta**0.5) * x_t
    return x0, eps


def predict_x0_eps(
    schedule: NoiseSchedule,
    x_t: torch.Tensor,
    model_output: torch.Tensor,
    t: Union[int, torch.Tensor],
    prediction_type: str,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Data and noise estimates (x̂0, ε̂) implied by a model output at timestep(s) ``t``.

    Inverts x_t = sqrt(ᾱ)·x0 + sqrt(1−ᾱ)·ε for the output's parameterisation (no
    clipping). ``x_t``, ``model_output``: ``[B, ...]``; ``t``: int or int tensor ``[B]``.
    """
    _check_prediction_type(prediction_type)
    if x_t.shape != model_output.shape:
        raise ValueError(
            f"x_t {tuple(x_t.shape)} and model_output {tuple(model_output.shape)} differ in shape"
        )
    tt = _timesteps_as_tensor(schedule, t, x_t.shape[0], x_t.device)  # [B]
    abar = _gather(schedule.alphas_cumprod, tt, x_t)  # [B, 1, 1]
    return _x0_eps(abar, x_t, model_output, prediction_type)
