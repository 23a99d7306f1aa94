"""Real-time-chunking prefix in the DDIM/DDPM samplers (Black et al. 2025, arXiv 2506.07339).

``prefix`` is a :class:`~genpolicy_ros.core.inpainting.PrefixConstraint` (validated when it
was built) or any object with ``target [B|1, T, D]`` (normalised), ``weights [T]`` in
[0, 1], ``mode`` in {"hard", "guided"} and ``max_guidance`` (β), checked here. Both modes
run the replacement hook on the (clipped) data estimate, x̂0 ← W·Y + (1−W)·x̂0
(:func:`replace_x0`); "guided" first moves x̂0 by RTC's guidance (:func:`guided_x0`).
"""
from __future__ import annotations

from typing import Any, Callable

import torch

from ..inpainting import PREFIX_MODES, PrefixConstraint
from .targets import _x0_eps

ModelFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


def check_prefix(prefix: Any, x: torch.Tensor) -> None:
    """Raise ``ValueError`` unless ``prefix`` fits a sample ``x [B, T, D]``. A
    :class:`PrefixConstraint` checked its values when it was built: only its shapes are
    checked here (no host read of tensor values, so this may run in a captured graph)."""
    if isinstance(prefix, PrefixConstraint):
        prefix.check_compatible(x)
        return
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


def prefix_tensors(prefix: Any, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    target = prefix.target.to(device=x.device, dtype=x.dtype)  # [B or 1, T, D]
    weights = prefix.weights.to(device=x.device, dtype=x.dtype).reshape(1, -1, 1)  # [1, T, 1]
    return target, weights


def guidance_weight(abar: torch.Tensor, max_guidance: float) -> torch.Tensor:
    """min(β, 1/sqrt(ᾱ(1−ᾱ))): RTC's min(β, (1−τ)/(τ·r_τ²)) at the equivalent flow time.

    A VP sample x_k = sqrt(ᾱ)x0 + sqrt(1−ᾱ)ε is, divided by s = sqrt(ᾱ) + sqrt(1−ᾱ), the
    linear-path point x_τ = τ·x0 + (1−τ)·ε with τ = sqrt(ᾱ)/s. With ρ = (1−τ)/τ =
    sqrt((1−ᾱ)/ᾱ) and r_τ² = (1−τ)²/(τ² + (1−τ)²) = ρ²/(1+ρ²), the ΠGDM weight of RTC
    (Black et al. 2025, eq. 2–4) is (1−τ)/(τ·r_τ²) = (1+ρ²)/ρ = 1/sqrt(ᾱ(1−ᾱ)).
    """
    return torch.clamp(1.0 / (abar * (1 - abar)) ** 0.5, max=float(max_guidance))


def guided_x0(
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
    state to the equivalent flow time (see :func:`guidance_weight`; x_τ = x_k/s, hence
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
    step = (1 - abar) ** 0.5 * guidance_weight(abar, max_guidance)
    return out.detach(), x0.detach() + step * g


def model_step(
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
        target, weights = prefix_tensors(prefix, x)
        out, x0 = guided_x0(model_fn, x, t_batch, abar, prediction_type, target, weights,
                             float(getattr(prefix, "max_guidance", 5.0)))
        _, eps = _x0_eps(abar, x, out, prediction_type)  # ε̂ of the model, as the hard hook keeps it
        return x0, eps
    out = model_fn(x, t_batch)  # [B, T, D]
    if out.shape != x.shape:
        raise ValueError(f"model_fn returned shape {tuple(out.shape)}, expected {tuple(x.shape)}")
    return _x0_eps(abar, x, out, prediction_type)


def replace_x0(x0: torch.Tensor, prefix: Any) -> torch.Tensor:
    """Replacement hook on x̂0: W·Y + (1 − W)·x̂0 row-wise (diffusion_policy-style mask);
    runs in both prefix modes (after the guidance of "guided")."""
    if prefix is None:
        return x0
    target, weights = prefix_tensors(prefix, x0)
    return weights * target + (1 - weights) * x0
