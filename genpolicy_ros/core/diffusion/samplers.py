"""DDIM and DDPM samplers (and their inference timesteps) for action chunks.

Both follow the arithmetic of huggingface ``diffusers`` (DDIMScheduler.step,
DDPMScheduler.step) operation for operation, so that with the same model function and the
same noise they agree to float32 rounding (pinned by test/core/test_diffusion_vs_diffusers.py).
In particular DDIM always steps to ``prev = k − K // N`` whatever the spacing, as diffusers
does, and x̂0 is clipped before ε̂ is used (ε̂ comes from the unclipped x̂0).
"""
from __future__ import annotations

from typing import Any, Callable, Optional, Sequence, Union

import numpy as np
import torch

from ..schedules import NoiseSchedule
from .prefix import check_prefix, model_step, replace_x0
from .targets import _check_int, _check_prediction_type, _check_sample

TIMESTEP_SPACINGS = ("leading", "trailing", "linspace")
VARIANCE_TYPES = ("fixed_small", "fixed_large")

ModelFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
StepCallback = Callable[[int, int, torch.Tensor, torch.Tensor], None]
NoiseArg = Optional[Union[torch.Tensor, Sequence[torch.Tensor]]]


# --------------------------------------------------------------------------- timesteps


def ddim_timesteps(
    num_train_steps: int, num_steps: int, spacing: str = "leading", steps_offset: int = 0
) -> torch.Tensor:
    """Inference timesteps, noisiest first, int64 ``[N]`` — as diffusers' ``set_timesteps``.
    See :func:`timestep_list`."""
    return torch.from_numpy(_timestep_array(num_train_steps, num_steps, spacing, steps_offset))  # [N]


def timestep_list(num_train_steps: int, num_steps: int, spacing: str = "leading", steps_offset: int = 0) -> list:
    """The inference timesteps as Python ints (what the step loops iterate over).

    * ``leading``:  (arange(N) · (K // N))[::-1] + steps_offset   (K=100, N=8: 84, 72, …, 0)
    * ``trailing``: round(K − i·K/N) − 1, i < N                     (99, 87, 74, …, 11)
    * ``linspace``: round(linspace(0, K−1, N))[::-1]               (99, 85, …, 0)

    ``steps_offset`` applies to ``leading`` only (as in diffusers). Requires 1 ≤ N ≤ K.
    """
    return _timestep_array(num_train_steps, num_steps, spacing, steps_offset).tolist()


def _timestep_array(num_train_steps, num_steps, spacing, steps_offset) -> np.ndarray:
    _check_int("num_train_steps", num_train_steps)
    _check_int("num_steps", num_steps)
    _check_int("steps_offset", steps_offset)
    k, n = int(num_train_steps), int(num_steps)
    if k < 1:
        raise ValueError(f"num_train_steps must be >= 1, got {k}")
    if not 1 <= n <= k:
        raise ValueError(
            f"num_steps must be in [1, num_train_steps={k}], got {n}: a sampler cannot take "
            f"more steps than there are training timesteps"
        )
    if spacing not in TIMESTEP_SPACINGS:
        raise ValueError(f"spacing must be one of {TIMESTEP_SPACINGS}, got {spacing!r}")
    if steps_offset < 0:
        raise ValueError(f"steps_offset must be >= 0, got {steps_offset}")
    if spacing == "leading":
        steps = (np.arange(0, n) * (k // n)).round()[::-1].astype(np.int64) + steps_offset
    elif spacing == "trailing":
        # diffusers writes np.arange(K, 0, -K/N), which for some N (K=100: 29, 31, 58, 62,
        # 97) yields N+1 entries, the last one −1. We compute its first N entries exactly as
        # numpy's float arange does (start + i·delta, delta = (start + step) − start).
        delta = (k + (-k / n)) - k
        steps = np.round(k + np.arange(n) * delta).astype(np.int64) - 1
    else:
        steps = np.linspace(0, k - 1, n).round()[::-1].astype(np.int64)
    if steps.shape != (n,) or steps.max() >= k or steps.min() < 0:
        raise ValueError(
            f"{spacing!r} spacing with num_steps={n}, steps_offset={steps_offset} gives "
            f"timesteps {steps.tolist()} outside [0, {k}) or of the wrong count"
        )
    return steps.copy()  # [N] int64


# --------------------------------------------------------------------------- noise


def _check_noise_args(noise: NoiseArg, generator, count: int, x: torch.Tensor) -> None:
    if noise is not None and generator is not None:
        raise ValueError("pass either generator or variance_noise, not both")
    if noise is None:
        return
    if len(noise) != count:
        raise ValueError(f"variance_noise must hold {count} noise tensors (one per step), "
                         f"got {len(noise)}")
    for i, z in enumerate(noise):
        if tuple(z.shape) != tuple(x.shape):
            raise ValueError(f"variance_noise[{i}] has shape {tuple(z.shape)}, "
                             f"expected {tuple(x.shape)}")


def _draw_noise(noise: NoiseArg, index: int, generator, x: torch.Tensor) -> torch.Tensor:
    """Step ``index``'s noise: pinned, or drawn as diffusers' ``randn_tensor`` draws it."""
    if noise is not None:
        return noise[index].to(device=x.device, dtype=x.dtype)
    device = generator.device if generator is not None else x.device
    return torch.randn(x.shape, generator=generator, device=device, dtype=x.dtype).to(x.device)


def _check_sampler_args(x_T, schedule, prediction_type, clip_range, prefix) -> None:
    _check_sample("x_T", x_T)
    if not isinstance(schedule, NoiseSchedule):
        raise ValueError(f"schedule must be a NoiseSchedule, got {type(schedule).__name__}")
    _check_prediction_type(prediction_type)
    if not float(clip_range) > 0:
        raise ValueError(f"clip_range must be > 0, got {clip_range!r}")
    if prefix is not None:
        check_prefix(prefix, x_T)


# --------------------------------------------------------------------------- samplers


def ddim_sample(
    model_fn: ModelFn,
    x_T: torch.Tensor,
    schedule: NoiseSchedule,
    num_steps: int,
    *,
    eta: float = 0.0,
    spacing: str = "leading",
    prediction_type: str = "epsilon",
    clip_sample: bool = True,
    clip_range: float = 1.0,
    set_alpha_to_one: bool = True,
    steps_offset: int = 0,
    generator: Optional[torch.Generator] = None,
    variance_noise: NoiseArg = None,
    prefix: Any = None,
    step_callback: Optional[StepCallback] = None,
) -> torch.Tensor:
    """DDIM sampler (Song et al. 2021, eq. 12) from x_T ``[B, T, D]`` to x_0 ``[B, T, D]``.

    For each k in :func:`ddim_timesteps` (noisiest first), with prev = k − K // N::

        x̂0, ε̂ = from model_fn(x, k)              (x̂0 clipped to ±clip_range if clip_sample)
        σ      = η · sqrt((1−ᾱ_prev)/(1−ᾱ_k)) · sqrt(1 − ᾱ_k/ᾱ_prev)
        x      = sqrt(ᾱ_prev)·x̂0 + sqrt(1−ᾱ_prev−σ²)·ε̂ (+ σ·z if η > 0)

    ᾱ_prev for prev < 0 is 1 (``set_alpha_to_one``) or ᾱ_0. z is ``variance_noise[i]``
    (``[N, B, T, D]`` or a list of N tensors) or ``torch.randn(x.shape, generator=…)``.
    ``prefix``: "hard" replaces x̂0 by W·Y + (1−W)·x̂0 after clipping (ε̂ kept);
    "guided" first moves x̂0 to the RTC-guided x̂0' of :func:`_guided_x0` (before
    clipping), then applies the same replacement. ``step_callback(i, k, x, x̂0)`` runs
    after every step.
    Runs under ``torch.no_grad()`` except the guided VJP.
    """
    _check_sampler_args(x_T, schedule, prediction_type, clip_range, prefix)
    if not 0.0 <= float(eta) <= 1.0:
        raise ValueError(f"eta must be in [0, 1] (0 = deterministic DDIM, 1 = DDPM-like), got {eta!r}")
    k = schedule.num_train_steps
    timesteps = timestep_list(k, num_steps, spacing, steps_offset)  # N ints, noisiest first
    if eta > 0:
        _check_noise_args(variance_noise, generator, len(timesteps), x_T)
    abar_all = schedule.alphas_cumprod  # [K] float32 (CPU)
    final_abar = torch.tensor(1.0) if set_alpha_to_one else abar_all[0]
    stride = k // num_steps

    x = x_T
    with torch.no_grad():
        for i, t in enumerate(timesteps):
            prev_t = t - stride
            abar_t = abar_all[t]  # 0-dim
            abar_prev = abar_all[prev_t] if prev_t >= 0 else final_abar  # 0-dim
            beta_prev = 1 - abar_prev

            x0, eps = model_step(model_fn, x, t, abar_t, prediction_type, prefix)
            if clip_sample:
                x0 = x0.clamp(-clip_range, clip_range)
            x0 = replace_x0(x0, prefix)

            variance = (beta_prev / (1 - abar_t)) * (1 - abar_t / abar_prev)
            std = eta * variance ** (0.5)
            direction = (1 - abar_prev - std**2).clamp(min=0) ** (0.5) * eps
            x_prev = abar_prev ** (0.5) * x0 + direction
            if eta > 0:
                x_prev = x_prev + std * _draw_noise(variance_noise, i, generator, x)
            x = x_prev
            if step_callback is not None:
                step_callback(i, t, x, x0)
    return x


def ddpm_sample(
    model_fn: ModelFn,
    x_T: torch.Tensor,
    schedule: NoiseSchedule,
    *,
    prediction_type: str = "epsilon",
    clip_sample: bool = True,
    clip_range: float = 1.0,
    variance_type: str = "fixed_small",
    generator: Optional[torch.Generator] = None,
    variance_noise: NoiseArg = None,
    num_steps: Optional[int] = None,
    prefix: Any = None,
    step_callback: Optional[StepCallback] = None,
) -> torch.Tensor:
    """Ancestral DDPM sampler (Ho et al. 2020, Alg. 2 with the posterior of eqs. 6–7).

    Timesteps: all K (``num_steps=None``) or ``leading``-spaced N (diffusers
    DDPMScheduler.set_timesteps); ``prev`` is the next timestep of that list (−1 last,
    with ᾱ_{−1} = 1). Per step, with α = ᾱ_k/ᾱ_prev and β = 1 − α::

        x̂0   = from model_fn(x, k), clipped to ±clip_range if clip_sample
        mean = sqrt(ᾱ_prev)·β/(1−ᾱ_k) · x̂0 + sqrt(α)·(1−ᾱ_prev)/(1−ᾱ_k) · x
        x    = mean + sqrt(var)·z  for k > 0,  var = (1−ᾱ_prev)/(1−ᾱ_k)·β ("fixed_small",
               floored at 1e-20) or β ("fixed_large"); no noise at k = 0.

    z is ``variance_noise[i]`` (``[N, B, T, D]``; the entry of a k = 0 step is unused) or
    ``torch.randn(x.shape, generator=…)`` drawn only for k > 0, as diffusers does.
    ``prefix`` as in :func:`ddim_sample` (acts on x̂0).
    """
    _check_sampler_args(x_T, schedule, prediction_type, clip_range, prefix)
    if variance_type not in VARIANCE_TYPES:
        raise ValueError(f"variance_type must be one of {VARIANCE_TYPES}, got {variance_type!r}")
    k = schedule.num_train_steps
    n = k if num_steps is None else num_steps
    timesteps = timestep_list(k, n, "leading")  # N ints, noisiest first
    _check_noise_args(variance_noise, generator, len(timesteps), x_T)
    abar_all = schedule.alphas_cumprod  # [K] float32 (CPU)
    one = torch.tensor(1.0)

    x = x_T
    with torch.no_grad():
        for i, t in enumerate(timesteps):
            prev_t = timesteps[i + 1] if i + 1 < len(timesteps) else -1
            abar_t = abar_all[t]  # 0-dim
            abar_prev = abar_all[prev_t] if prev_t >= 0 else one  # 0-dim
            beta_t = 1 - abar_t
            beta_prev = 1 - abar_prev
            alpha = abar_t / abar_prev
            beta = 1 - alpha

            x0, _ = model_step(model_fn, x, t, abar_t, prediction_type, prefix)
            if clip_sample:
                x0 = x0.clamp(-clip_range, clip_range)
            x0 = replace_x0(x0, prefix)

            coef_x0 = (abar_prev ** (0.5) * beta) / beta_t
            coef_xt = alpha ** (0.5) * beta_prev / beta_t
            x_prev = coef_x0 * x0 + coef_xt * x
            if t > 0:
                z = _draw_noise(variance_noise, i, generator, x)
                if variance_type == "fixed_small":
                    var = torch.clamp((1 - abar_prev) / (1 - abar_t) * beta, min=1e-20)
                else:
                    var = beta
                x_prev = x_prev + (var**0.5) * z
            x = x_prev
            if step_callback is not None:
                step_callback(i, t, x, x0)
    return x
