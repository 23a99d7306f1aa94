"""DDPM training targets and DDPM/DDIM samplers for action chunks.

Conventions (docs/internals.md): integer timesteps ``k ∈ [0, K)``, ``k = K − 1`` noisiest;
samplers work in normalised action space. A denoiser is called as::

    model_fn(x [B, T, D] float, t [B] int64) -> output [B, T, D]

where ``output`` is ε (``"epsilon"``), x0 (``"sample"``) or v (``"v_prediction"``).

Formulas (ᾱ_k from :class:`~genpolicy_ros.core.schedules.NoiseSchedule`):
  * forward process  x_k = sqrt(ᾱ_k)·x0 + sqrt(1−ᾱ_k)·ε        (Ho et al. 2020, eq. 4)
  * v target         v   = sqrt(ᾱ_k)·ε − sqrt(1−ᾱ_k)·x0       (Salimans & Ho 2022, §4)
  * DDIM update      (Song et al. 2021, arXiv 2010.02502, eq. 12)
        x_prev = sqrt(ᾱ_prev)·x̂0 + sqrt(1−ᾱ_prev−σ²)·ε̂ + σ·z,
        σ = η·sqrt((1−ᾱ_prev)/(1−ᾱ_k))·sqrt(1−ᾱ_k/ᾱ_prev)
  * DDPM update      posterior q(x_prev | x_k, x̂0) (Ho et al. 2020, eqs. 6–7)

Both samplers follow the arithmetic of huggingface ``diffusers`` (DDIMScheduler.step,
DDPMScheduler.step) operation for operation, so that with the same model function and the
same noise they agree to float32 rounding (pinned by test/core/test_diffusion_vs_diffusers.py).
In particular DDIM always steps to ``prev = k − K // N`` whatever the spacing, as diffusers
does, and x̂0 is clipped before ε̂ is used (ε̂ comes from the unclipped x̂0).

Prefix inpainting (real-time chunking; Black et al. 2025, arXiv 2506.07339): ``prefix`` is
any object with ``target [B, T, D]`` (normalised), ``weights [T]`` in [0, 1], ``mode`` in
{"hard", "guided"} and ``max_guidance`` (β). See :func:`_apply_prefix` for the formulas.
"""
from __future__ import annotations

from typing import Any, Callable, Optional, Sequence, Union

import numpy as np
import torch

from .schedules import NoiseSchedule

PREDICTION_TYPES = ("epsilon", "sample", "v_prediction")
TIMESTEP_SPACINGS = ("leading", "trailing", "linspace")
VARIANCE_TYPES = ("fixed_small", "fixed_large")
PREFIX_MODES = ("hard", "guided")

ModelFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
StepCallback = Callable[[int, int, torch.Tensor, torch.Tensor], None]
NoiseArg = Optional[Union[torch.Tensor, Sequence[torch.Tensor]]]


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


# --------------------------------------------------------------------------- timesteps


def ddim_timesteps(
    num_train_steps: int, num_steps: int, spacing: str = "leading", steps_offset: int = 0
) -> torch.Tensor:
    """Inference timesteps, noisiest first, int64 ``[N]`` — as diffusers' ``set_timesteps``.

    * ``leading``:  (arange(N) · (K // N))[::-1] + steps_offset   (K=100, N=8: 84, 72, …, 0)
    * ``trailing``: round(K − i·K/N) − 1, i < N                     (99, 87, 74, …, 11)
    * ``linspace``: round(linspace(0, K−1, N))[::-1]               (99, 85, …, 0)

    ``steps_offset`` applies to ``leading`` only (as in diffusers). Requires 1 ≤ N ≤ K.
    """
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
    return torch.from_numpy(steps.copy())  # [N]


# --------------------------------------------------------------------------- prefix


def _check_prefix(prefix: Any, x: torch.Tensor) -> None:
    for attr in ("target", "weights", "mode"):
        if not hasattr(prefix, attr):
            raise ValueError(f"prefix must have a {attr!r} attribute (PrefixConstraint duck type)")
    if prefix.mode not in PREFIX_MODES:
        raise ValueError(f"prefix.mode must be one of {PREFIX_MODES}, got {prefix.mode!r}")
    target, weights = prefix.target, prefix.weights
    if not isinstance(target, torch.Tensor) or target.ndim != 3 or target.shape[1:] != x.shape[1:] \
            or target.shape[0] not in (1, x.shape[0]):
        raise ValueError(
            f"prefix.target must be a tensor [B, T, D] matching the sample {tuple(x.shape)}, got "
            f"{tuple(target.shape) if isinstance(target, torch.Tensor) else type(target).__name__}"
        )
    if not isinstance(weights, torch.Tensor) or weights.shape != (x.shape[1],):
        raise ValueError(
            f"prefix.weights must be a tensor [T] = [{x.shape[1]}], got "
            f"{tuple(weights.shape) if isinstance(weights, torch.Tensor) else type(weights).__name__}"
        )
    if bool((weights < 0).any()) or bool((weights > 1).any()):
        raise ValueError("prefix.weights must lie in [0, 1]")
    if prefix.mode == "guided":
        beta = float(getattr(prefix, "max_guidance", 5.0))
        if not beta >= 0:
            raise ValueError(f"prefix.max_guidance must be >= 0, got {beta}")


def _prefix_tensors(prefix: Any, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    target = prefix.target.to(device=x.device, dtype=x.dtype)  # [B or 1, T, D]
    weights = prefix.weights.to(device=x.device, dtype=x.dtype).reshape(1, -1, 1)  # [1, T, 1]
    return target, weights


def _guidance_weight(abar: torch.Tensor, max_guidance: float) -> torch.Tensor:
    """min(β, 1/sqrt(ᾱ(1−ᾱ))): RTC's min(β, (1−τ)/(τ·r_τ²)) at the equivalent flow time.

    A VP sample x_k = sqrt(ᾱ)x0 + sqrt(1−ᾱ)ε is, divided by s = sqrt(ᾱ) + sqrt(1−ᾱ), the
    linear-path point x_τ = τ·x0 + (1−τ)·ε with τ = sqrt(ᾱ)/s. With ρ = (1−τ)/τ =
    sqrt((1−ᾱ)/ᾱ) and r_τ² = (1−τ)²/(τ² + (1−τ)²) = ρ²/(1+ρ²), the ΠGDM weight of RTC
    (Black et al. 2025, eq. 2–4) is (1−τ)/(τ·r_τ²) = (1+ρ²)/ρ = 1/sqrt(ᾱ(1−ᾱ)).
    """
    return torch.clamp(1.0 / (abar * (1 - abar)) ** 0.5, max=float(max_guidance))


def _guided_x0(
    model_fn: ModelFn,
    x: torch.Tensor,
    t_batch: torch.Tensor,
    abar: torch.Tensor,
    prediction_type: str,
    target: torch.Tensor,
    weights: torch.Tensor,
    max_guidance: float,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Model call + pseudo-inverse-guided data estimate (RTC, Black et al. 2025, eq. 2–4).

    RTC guides the flow velocity: v' = v + w·J_τᵀ[W ⊙ (Y − x̂1)], w = min(β, (1−τ)/(τ r_τ²)),
    so that x̂1' = x̂1 + (1−τ)·w·J_τᵀ[W ⊙ (Y − x̂1)] with J_τ = ∂x̂1/∂x_τ. Mapping the VP
    state to the equivalent flow time (see :func:`_guidance_weight`; x_τ = x_k/s, hence
    J_τ = s·∂x̂0/∂x_k and (1−τ)·s = sqrt(1−ᾱ)) gives, in diffusion terms::

        g    = (∂x̂0/∂x_k)ᵀ [W ⊙ (Y − x̂0)]          (one VJP through model_fn, autograd)
        x̂0' = x̂0 + sqrt(1−ᾱ_k) · min(β, 1/sqrt(ᾱ_k(1−ᾱ_k))) · g

    x̂0 is the unclipped estimate. Returns (raw model output, x̂0'), both detached.
    """
    with torch.enable_grad():
        x_req = x.detach().requires_grad_(True)  # [B, T, D]
        out = model_fn(x_req, t_batch)  # [B, T, D]
        x0, _ = _x0_eps(abar, x_req, out, prediction_type)
        residual = (weights * (target - x0)).detach()  # [B, T, D]
        g = None
        if x0.requires_grad:  # else the estimate does not depend on x (a constant "sample" model)
            (g,) = torch.autograd.grad(x0, x_req, grad_outputs=residual, allow_unused=True)
    if g is None:
        g = torch.zeros_like(x)
    step = (1 - abar) ** 0.5 * _guidance_weight(abar, max_guidance)
    return out.detach(), x0.detach() + step * g


def _model_step(
    model_fn: ModelFn,
    x: torch.Tensor,
    t: int,
    abar: torch.Tensor,
    prediction_type: str,
    prefix: Any,
) -> tuple[torch.Tensor, torch.Tensor]:
    """One denoiser evaluation → (x̂0, ε̂) before clipping, with guided prefix if asked."""
    t_batch = torch.full((x.shape[0],), t, dtype=torch.int64, device=x.device)  # [B]
    if prefix is not None and prefix.mode == "guided":
        target, weights = _prefix_tensors(prefix, x)
        out, x0 = _guided_x0(model_fn, x, t_batch, abar, prediction_type, target, weights,
                             float(getattr(prefix, "max_guidance", 5.0)))
        _, eps = _x0_eps(abar, x, out, prediction_type)  # ε̂ of the model, as the hard hook keeps it
        return x0, eps
    out = model_fn(x, t_batch)  # [B, T, D]
    if out.shape != x.shape:
        raise ValueError(f"model_fn returned shape {tuple(out.shape)}, expected {tuple(x.shape)}")
    return _x0_eps(abar, x, out, prediction_type)


def _hard_prefix(x0: torch.Tensor, prefix: Any) -> torch.Tensor:
    """Replacement hook on x̂0: W·Y + (1 − W)·x̂0 row-wise (diffusion_policy-style mask);
    runs in both prefix modes (after the guidance of "guided")."""
    if prefix is None:
        return x0
    target, weights = _prefix_tensors(prefix, x0)
    return weights * target + (1 - weights) * x0


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
        _check_prefix(prefix, x_T)


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
    timesteps = ddim_timesteps(k, num_steps, spacing, steps_offset)  # [N]
    if eta > 0:
        _check_noise_args(variance_noise, generator, len(timesteps), x_T)
    abar_all = schedule.alphas_cumprod  # [K] float32 (CPU)
    final_abar = torch.tensor(1.0) if set_alpha_to_one else abar_all[0]
    stride = k // num_steps

    x = x_T
    with torch.no_grad():
        for i, t in enumerate(timesteps.tolist()):
            prev_t = t - stride
            abar_t = abar_all[t]  # 0-dim
            abar_prev = abar_all[prev_t] if prev_t >= 0 else final_abar  # 0-dim
            beta_prev = 1 - abar_prev

            x0, eps = _model_step(model_fn, x, t, abar_t, prediction_type, prefix)
            if clip_sample:
                x0 = x0.clamp(-clip_range, clip_range)
            x0 = _hard_prefix(x0, prefix)

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
    timesteps = ddim_timesteps(k, n, "leading").tolist()  # N ints, noisiest first
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

            x0, _ = _model_step(model_fn, x, t, abar_t, prediction_type, prefix)
            if clip_sample:
                x0 = x0.clamp(-clip_range, clip_range)
            x0 = _hard_prefix(x0, prefix)

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
