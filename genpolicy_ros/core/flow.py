"""Flow matching: probability path, training-time distributions, ODE integration.

Time convention (pinned by ``test/core/test_flow.py``)
-------------------------------------------------------
``t = 0`` is noise, ``t = 1`` is data. The linear (rectified / conditional-OT) path is

    x_t = t · x1 + (1 − t) · x0,        target velocity  u = dx_t/dt = x1 − x0,

with ``x0 ~ N(0, I)`` and ``x1`` a data sample; sampling integrates ``dx/dt = v(x, t)``
from ``t = 0`` to ``t = 1``. (Lipman et al., "Flow Matching for Generative Modeling",
ICLR 2023, the σ_min = 0 case of the OT path; Liu et al., "Flow Straight and Fast:
Rectified Flow", ICLR 2023.) π0 (Black et al. 2024) writes the same path with its ``τ``
in the same direction, but openpi / lerobot code runs time the other way (1 = noise); we
do not.

The nouns are kept apart: :class:`LinearPath` (the path), :func:`sample_time` (where
training puts its time samples), :func:`integrate` on :func:`time_grid` (the ODE solver),
and the real-time-chunking prefix (:mod:`genpolicy_ros.core.inpainting`) as a velocity
wrapper (:func:`guided_velocity`, RTC's guidance) and a solver hook
(:class:`ReplacementHook`, hard inpainting).
Couplings of noise and data live in :mod:`genpolicy_ros.core.coupling`.

A velocity function has the signature ``velocity_fn(x [B, T, D], t [B] float in [0, 1])
-> v [B, T, D]``; conditioning is closed over by the caller.
"""
from __future__ import annotations

import math
from typing import Callable, Optional

import torch

from genpolicy_ros.core.inpainting import PrefixConstraint

VelocityFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
StepCallback = Callable[[int, float, torch.Tensor], None]

TIME_DISTRIBUTIONS = ("uniform", "logit_normal", "beta")
ODE_METHODS = ("euler", "midpoint", "heun", "rk4")


def _time_view(t: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """Reshape ``t`` ([B] or scalar) to broadcast against ``x`` ([B, ...])."""
    t = torch.as_tensor(t, dtype=x.dtype, device=x.device)
    if t.dim() == 0:
        return t
    return t.reshape(t.shape[0], *([1] * (x.dim() - 1)))  # [B, 1, 1, ...]


class LinearPath:
    """Linear path ``x_t = t·x1 + (1−t)·x0`` (Lipman et al. 2023; Liu et al. 2023).

    All methods accept ``t`` as a float, a 0-d tensor or a ``[B]`` tensor.
    """

    @staticmethod
    def interpolate(x0: torch.Tensor, x1: torch.Tensor, t) -> torch.Tensor:
        """``x_t = t·x1 + (1−t)·x0``: noise at t=0, data at t=1."""
        tv = _time_view(t, x1)
        return tv * x1 + (1.0 - tv) * x0

    @staticmethod
    def target_velocity(x0: torch.Tensor, x1: torch.Tensor) -> torch.Tensor:
        """``u = x1 − x0`` (constant along the path): the regression target."""
        return x1 - x0

    @staticmethod
    def x1_from_velocity(x_t: torch.Tensor, v: torch.Tensor, t) -> torch.Tensor:
        """One-step data estimate ``x̂1 = x_t + (1−t)·v`` (exact on the straight path)."""
        return x_t + (1.0 - _time_view(t, x_t)) * v

    @staticmethod
    def x0_from_velocity(x_t: torch.Tensor, v: torch.Tensor, t) -> torch.Tensor:
        """Noise estimate ``x̂0 = x_t − t·v``."""
        return x_t - _time_view(t, x_t) * v


def sample_time(
    batch: int,
    distribution: str = "uniform",
    generator: Optional[torch.Generator] = None,
    device=None,
    dtype: torch.dtype = torch.float32,
    **params,
) -> torch.Tensor:
    """Training times ``t: [batch]`` in [0, 1] (0 = noise, 1 = data).

    * ``"uniform"``: ``U(0, 1)``. No parameters.
    * ``"logit_normal"``: ``t = sigmoid(n)``, ``n ~ N(mean, std²)`` (Esser et al. 2024,
      SD3); params ``mean=0.0``, ``std=1.0``. ``mean < 0`` favours the noisy end.
    * ``"beta"``: π0's schedule (Black et al. 2024, π0, Sec. on flow matching):
      ``p(τ) = Beta((s − τ)/s; α=1.5, β=1)`` with cutoff ``s = 0.999``, i.e.
      ``u ~ Beta(α, β)`` and ``τ = s·(1 − u)`` ∈ [0, s]. Beta(1.5, 1) puts its mass near
      u = 1, so τ is concentrated near 0 — the *noisy* end — and times above ``s`` (the
      nearly clean end) are never drawn. The π0 paper's τ runs 0 = noise → 1 = data, as
      ours does, so ``t = τ`` (openpi's code, whose time 1 is noise, draws
      ``time = s·u + (1 − s)`` = 1 − τ). Params ``alpha=1.5``, ``beta=1.0``,
      ``cutoff=0.999``. Mean ``s·β/(α+β)`` = 0.3996 for the defaults.

    Deterministic given ``generator`` (a ``torch.Generator`` on ``device``).
    """
    if isinstance(batch, bool) or not isinstance(batch, int) or batch < 1:
        raise ValueError(f"sample_time: batch must be an int >= 1, got {batch!r}")
    if distribution not in TIME_DISTRIBUTIONS:
        raise ValueError(f"sample_time: distribution must be one of {TIME_DISTRIBUTIONS}, got {distribution!r}")
    allowed = {"uniform": set(), "logit_normal": {"mean", "std"}, "beta": {"alpha", "beta", "cutoff"}}[distribution]
    unknown = set(params) - allowed
    if unknown:
        raise ValueError(
            f"sample_time: unknown parameter(s) {sorted(unknown)} for {distribution!r}; allowed: {sorted(allowed)}"
        )
    kw = dict(generator=generator, device=device, dtype=dtype)
    if distribution == "uniform":
        return torch.rand(batch, **kw)  # [B]
    if distribution == "logit_normal":
        mean, std = float(params.get("mean", 0.0)), float(params.get("std", 1.0))
        if not (math.isfinite(mean) and math.isfinite(std) and std > 0):
            raise ValueError(f"sample_time: logit_normal needs finite mean and std > 0, got {mean}, {std}")
        return torch.sigmoid(mean + std * torch.randn(batch, **kw))  # [B]
    alpha = float(params.get("alpha", 1.5))
    beta = float(params.get("beta", 1.0))
    cutoff = float(params.get("cutoff", 0.999))
    if not (alpha > 0 and beta > 0 and math.isfinite(alpha) and math.isfinite(beta)):
        raise ValueError(f"sample_time: beta needs alpha > 0 and beta > 0, got {alpha}, {beta}")
    if not (0.0 < cutoff <= 1.0):
        raise ValueError(f"sample_time: beta cutoff must be in (0, 1], got {cutoff}")
    uniform = torch.rand(batch, generator=generator, device=device, dtype=torch.float64)  # [B]
    # Inverse-CDF sampling keeps the draw reproducible from `generator`.
    if beta == 1.0:  # CDF u^α
        u = uniform.pow(1.0 / alpha)
    elif alpha == 1.0:  # CDF 1 − (1 − u)^β
        u = 1.0 - uniform.pow(1.0 / beta)
    else:
        from scipy.special import betaincinv

        u = torch.as_tensor(betaincinv(alpha, beta, uniform.cpu().numpy()), device=uniform.device)
    return (cutoff * (1.0 - u)).to(dtype)  # [B]


def guidance_weight(t: float, max_guidance: float) -> float:
    """RTC / ΠGDM guidance weight ``min(β, (1−t) / (t·r_t²))``, ``r_t² = (1−t)²/(t²+(1−t)²)``.

    Black et al. 2025 (arXiv 2506.07339, eq. 2–4), with their τ = our t (0 noise → 1 data);
    ``r_t²`` is the variance of x1 given x_t under a standard-normal data prior, as in
    ΠGDM (Song et al. 2023). Simplified, ``(1−t)/(t·r_t²) = (t² + (1−t)²) / (t·(1−t))``,
    which is 2 at t = 0.5 and grows without bound toward both ends; at ``t ∈ {0, 1}`` (and
    wherever the expression exceeds β) the weight is the clip ``β``.
    """
    denom = t * (1.0 - t)
    if denom <= 0.0:
        return float(max_guidance)
    return float(min(max_guidance, (t * t + (1.0 - t) ** 2) / denom))


def guidance_weight_tensor(t: torch.Tensor, max_guidance: float) -> torch.Tensor:
    """:func:`guidance_weight` on a time tensor (any shape), without reading it on the host."""
    denom = t * (1.0 - t)
    safe = torch.where(denom > 0, denom, torch.ones_like(denom))
    raw = (t * t + (1.0 - t) ** 2) / safe
    return torch.where(denom > 0, raw.clamp(max=float(max_guidance)), torch.full_like(t, float(max_guidance)))


def guided_velocity(velocity_fn: VelocityFn, prefix: PrefixConstraint) -> VelocityFn:
    """Wrap ``velocity_fn`` with RTC's guidance (Black et al. 2025, eq. 2–4).

    ``x̂1 = x_t + (1−t)·v(x_t, t)``; ``e = W·(Y − x̂1)`` with ``W`` the row weights and ``Y``
    the target; ``v ← v + min(β, (1−t)/(t·r_t²)) · eᵀ ∂x̂1/∂x_t``. The vector-Jacobian
    product is the only place autograd runs (so this wrapper runs eager, never in a graph).
    """

    def guided(x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        target = prefix.target_like(x)  # [B, T, D]
        weights = prefix.weights_like(x)  # [1, T, 1]
        with torch.enable_grad():
            x_in = x.detach().requires_grad_(True)  # [B, T, D]
            v = velocity_fn(x_in, t)  # [B, T, D]
            x1_hat = LinearPath.x1_from_velocity(x_in, v, t)  # [B, T, D]
            error = (target - x1_hat.detach()) * weights  # [B, T, D]
            (vjp,) = torch.autograd.grad(x1_hat, x_in, grad_outputs=error)  # [B, T, D]
        weight = _time_view(guidance_weight_tensor(t, prefix.max_guidance), x)  # [B, 1, 1]
        return v.detach() + weight * vjp

    return guided


class ReplacementHook:
    """Hard inpainting as a solver hook: after every step (and before the first) the
    constrained rows are blended, by weight, toward the target's point on the path
    ``t·Y + (1−t)·x0`` (``x0`` the solver's initial state); at the end rows with weight 1
    are set to ``Y`` exactly. Tensor operations only (no host reads): it runs inside the
    unrolled graphs of the graph backends."""

    def __init__(self, prefix: PrefixConstraint, x_noise: torch.Tensor):
        self.prefix = prefix
        self.x_noise = x_noise  # [B, T, D] the initial state

    def project(self, x: torch.Tensor, t: float) -> torch.Tensor:
        weights = self.prefix.weights_like(x)  # [1, T, 1]
        on_path = LinearPath.interpolate(self.x_noise, self.prefix.target_like(x), t)  # [B, T, D]
        return x + weights * (on_path - x)

    def finish(self, x: torch.Tensor) -> torch.Tensor:
        frozen = self.prefix.frozen_rows().to(x.device).view(1, -1, 1)  # [1, T, 1]
        return torch.where(frozen, self.prefix.target_like(x), x)


def time_grid(num_steps: int, t_start: float = 0.0, t_end: float = 1.0) -> list:
    """The uniform solver grid ``[t_0 = t_start, …, t_N = t_end]`` (N + 1 Python floats,
    ``t_i = t_start + i·h``, ``h = (t_end − t_start) / N``)."""
    h = (t_end - t_start) / num_steps
    return [t_start + i * h for i in range(num_steps)] + [t_end]


def _step(velocity_fn: VelocityFn, x: torch.Tensor, t: float, h: float, method: str, batch: int) -> torch.Tensor:
    """One explicit Runge–Kutta step of size ``h`` from time ``t``."""

    def f(x_, t_):
        return velocity_fn(x_, torch.full((batch,), t_, dtype=x.dtype, device=x.device))  # t: [B]

    k1 = f(x, t)
    if method == "euler":
        return x + h * k1
    if method == "midpoint":
        return x + h * f(x + 0.5 * h * k1, t + 0.5 * h)
    if method == "heun":
        k2 = f(x + h * k1, t + h)
        return x + 0.5 * h * (k1 + k2)
    k2 = f(x + 0.5 * h * k1, t + 0.5 * h)
    k3 = f(x + 0.5 * h * k2, t + 0.5 * h)
    k4 = f(x + h * k3, t + h)
    return x + (h / 6.0) * (k1 + 2.0 * k2 + 2.0 * k3 + k4)


def integrate(
    velocity_fn: VelocityFn,
    x0: torch.Tensor,
    num_steps: int,
    method: str = "euler",
    t_start: float = 0.0,
    t_end: float = 1.0,
    prefix: Optional[PrefixConstraint] = None,
    step_callback: Optional[StepCallback] = None,
) -> torch.Tensor:
    """Integrate ``dx/dt = v(x, t)`` from ``t_start`` to ``t_end`` on :func:`time_grid`.

    Args:
        velocity_fn: ``(x [B, T, D], t [B]) -> v [B, T, D]``.
        x0: state at ``t_start`` (noise when ``t_start = 0``), ``[B, ...]``.
        num_steps: number of steps (any int ≥ 1); the network is evaluated
            1 / 2 / 2 / 4 times per step for euler / midpoint / heun / rk4.
        method: ``"euler"`` (order 1), ``"midpoint"``, ``"heun"`` (order 2), ``"rk4"``.
        prefix: optional :class:`PrefixConstraint` (real-time chunking). Both modes run
            the :class:`ReplacementHook`; ``"guided"`` also evaluates the RTC-guided
            velocity (:func:`guided_velocity`) at every stage of the solver, so that a
            network that responds to its input makes the other rows agree with the prefix.
        step_callback: called as ``step_callback(i, t_i, x_i)`` after step ``i`` with
            the state at its end time.

    Returns the state at ``t_end`` (same shape/dtype as ``x0``). Runs under
    ``torch.no_grad()`` except the vector-Jacobian product of guided inpainting.
    """
    if isinstance(num_steps, bool) or not isinstance(num_steps, int) or num_steps < 1:
        raise ValueError(f"integrate: num_steps must be an int >= 1, got {num_steps!r}")
    if method not in ODE_METHODS:
        raise ValueError(f"integrate: method must be one of {ODE_METHODS}, got {method!r}")
    t_start, t_end = float(t_start), float(t_end)
    if not (0.0 <= t_start < t_end <= 1.0):
        raise ValueError(f"integrate: need 0 <= t_start < t_end <= 1, got {t_start}, {t_end}")
    field, hook = velocity_fn, None
    if prefix is not None:
        prefix.check_compatible(x0)
        if prefix.mode == "guided":
            field = guided_velocity(velocity_fn, prefix)
        hook = ReplacementHook(prefix, x0.detach())
    batch = x0.shape[0]
    h = (t_end - t_start) / num_steps
    grid = time_grid(num_steps, t_start, t_end)

    with torch.no_grad():
        x = x0.detach().clone()  # [B, T, D]
        if hook is not None:
            x = hook.project(x, grid[0])
        for i in range(num_steps):
            x = _step(field, x, grid[i], h, method, batch)
            if hook is not None:
                x = hook.project(x, grid[i + 1])
            if step_callback is not None:
                step_callback(i, grid[i + 1], x)
        if hook is not None:
            x = hook.finish(x)
    return x
