"""Frozen-prefix constraints for real-time chunking (RTC).

While chunk A executes, the next chunk B is generated so that its first rows agree with
the rows of A that will run during inference (the *frozen prefix*). Black, Galliker &
Levine, "Real-Time Execution of Action Chunking Flow Policies", arXiv 2506.07339 (2025),
pose this as inpainting: rows ``i < d`` are fully constrained (weight 1), the next rows
are softly constrained with weights decaying to 0, the tail is free (weight 0).

Two modes, shared by the flow and diffusion samplers:

* ``"hard"``: the replacement hook. Overwrite the constrained rows of the running
  sample with the target noised to the current time (flow) or of the data estimate x̂0
  (diffusion), blended by weight; rows with weight 1 end exactly on the target. Works
  whatever the network; the other rows agree only as far as the network reacts to the
  replaced rows, and the soft rows end as a row-by-row blend of target and model.
* ``"guided"``: the same hook plus RTC's training-free guidance (ΠGDM; Black et al.
  2025, eq. 2–4): at every solver stage the velocity (or x̂0) is pulled toward the
  weighted target through a vector-Jacobian product through the data estimate, with
  weight ``min(β, (1−t)/(t·r_t²))``. See :mod:`genpolicy_ros.core.flow` and
  :mod:`genpolicy_ros.core.diffusion`.

Why guided includes the hook: the guidance acts only through ∂x̂1/∂x_t. The shipped
denoisers have largely memorised their demonstrations (measured largest singular value
of ∂x̂1/∂x_t ≤ 0.34 at every t, where a unit-variance prior gives → 1 as t → 1), so the
product returns a fraction of the error that the next network call undoes: guidance
alone left the first rows as far from the prefix as no constraint at all (reach_flow:
0.38 vs 0.39 rad, β = 5, 20 or 100 alike). With the hook, frozen rows are exact for any
network, and the guidance adds what a responsive network can give (a continuation that
carries the prefix's motion: smoother soft rows than replacement alone).

Everything here is in the *normalised* action space of the sampler.
"""
from __future__ import annotations

import math
from dataclasses import InitVar, dataclass

import torch

PREFIX_MODES = ("hard", "guided")
WEIGHT_SCHEDULES = ("exp", "linear")


@dataclass
class PrefixConstraint:
    """A frozen prefix for the next chunk.

    Attributes:
        target: ``[B, T, D]`` (or ``[1, T, D]``, broadcast over the batch) chunk to agree
            with, in normalised units; only rows with weight > 0 matter.
        weights: ``[T]`` per-row weights in [0, 1] (see :func:`rtc_prefix_weights`).
        mode: ``"hard"`` (replace rows) or ``"guided"`` (replacement + RTC guidance).
        max_guidance: clip β of the guidance weight (RTC uses β = 5); ``guided`` only.
        check_values: check the tensor values (finite target, weights in [0, 1]) on
            construction (:func:`check_prefix_values`). ``False`` only where the caller
            checked them already: the graph backends check their inputs on the host before
            each call, and a captured CUDA graph must not read tensors back.
    """

    target: torch.Tensor
    weights: torch.Tensor
    mode: str = "guided"
    max_guidance: float = 5.0
    check_values: InitVar[bool] = True

    def __post_init__(self, check_values: bool = True) -> None:
        if not isinstance(self.target, torch.Tensor) or self.target.dim() != 3:
            raise ValueError(
                "PrefixConstraint.target must be a tensor [B, T, D], got "
                f"{getattr(self.target, 'shape', type(self.target).__name__)}"
            )
        if not self.target.is_floating_point():
            raise ValueError(f"PrefixConstraint.target must be floating point, got {self.target.dtype}")
        if not isinstance(self.weights, torch.Tensor) or self.weights.dim() != 1:
            raise ValueError(
                "PrefixConstraint.weights must be a 1-D tensor [T], got "
                f"{getattr(self.weights, 'shape', type(self.weights).__name__)}"
            )
        if self.weights.shape[0] != self.target.shape[1]:
            raise ValueError(
                f"PrefixConstraint.weights has {self.weights.shape[0]} rows but target has "
                f"T={self.target.shape[1]} rows"
            )
        if self.mode not in PREFIX_MODES:
            raise ValueError(f"PrefixConstraint.mode must be one of {PREFIX_MODES}, got {self.mode!r}")
        if not (isinstance(self.max_guidance, (int, float)) and math.isfinite(self.max_guidance)
                and self.max_guidance > 0):
            raise ValueError(f"PrefixConstraint.max_guidance must be a finite number > 0, got {self.max_guidance!r}")
        if check_values:
            check_prefix_values(self.target, self.weights, "PrefixConstraint")

    def check_compatible(self, x: torch.Tensor) -> None:
        """Raise ``ValueError`` unless the constraint fits a sample ``x: [B, T, D]``."""
        if x.dim() != 3 or x.shape[1:] != self.target.shape[1:] or self.target.shape[0] not in (1, x.shape[0]):
            raise ValueError(
                f"PrefixConstraint target {tuple(self.target.shape)} does not fit a sample of shape "
                f"{tuple(x.shape)} (need [B or 1, T, D] with the same T, D)"
            )

    def target_like(self, x: torch.Tensor) -> torch.Tensor:
        """Target on ``x``'s device/dtype, expanded to ``[B, T, D]``."""
        return self.target.to(device=x.device, dtype=x.dtype).expand_as(x)

    def weights_like(self, x: torch.Tensor) -> torch.Tensor:
        """Weights on ``x``'s device/dtype, shaped ``[1, T, 1]`` to broadcast over B and D."""
        return self.weights.to(device=x.device, dtype=x.dtype).view(1, -1, 1)

    def frozen_rows(self) -> torch.Tensor:
        """Boolean ``[T]``: rows fully constrained (weight exactly 1)."""
        return self.weights == 1


def check_prefix_values(target: torch.Tensor, weights: torch.Tensor, what: str = "prefix",
                        num_given: int | None = None) -> None:
    """Raise ``ValueError`` unless ``target`` is finite and ``weights`` lie in [0, 1] (and
    are 0 from row ``num_given`` on, when given). Reads the values on the host: call it once
    per chunk, outside any captured graph."""
    if not bool(torch.isfinite(target).all()):
        raise ValueError(f"{what}.target contains NaN or Inf")
    if not bool(torch.isfinite(weights).all()):
        raise ValueError(f"{what}.weights contains NaN or Inf")
    if bool((weights < 0).any()) or bool((weights > 1).any()):
        raise ValueError(
            f"{what}.weights must lie in [0, 1], got range "
            f"[{float(weights.min()):.4g}, {float(weights.max()):.4g}]"
        )
    if num_given is not None and bool((weights[num_given:] != 0).any()):
        raise ValueError(f"{what}.weights are non-zero beyond the {num_given} given prefix rows")


def rtc_prefix_weights(horizon: int, num_frozen: int, num_blend: int, schedule: str = "exp") -> torch.Tensor:
    """Soft-mask weights ``[horizon]`` for RTC (Black et al. 2025, arXiv 2506.07339, eq. 5).

    Rows ``0 … num_frozen−1`` get 1 (the actions that execute during inference, the
    paper's ``d``); the next ``num_blend`` rows decay toward 0; the remaining rows get 0
    (the paper's ``H − s … H−1``). With ``j = i − num_frozen`` and
    ``c_j = (num_blend − j) / (num_blend + 1)`` ∈ (0, 1):

    * ``"exp"``:    ``w_j = c_j · (e^{c_j} − 1) / (e − 1)`` (the paper's schedule)
    * ``"linear"``: ``w_j = c_j``

    Both are strictly between 0 and 1 on the blend rows and strictly decreasing.
    """
    for name, value in (("horizon", horizon), ("num_frozen", num_frozen), ("num_blend", num_blend)):
        if isinstance(value, bool) or not isinstance(value, int):
            raise ValueError(f"rtc_prefix_weights: {name} must be an int, got {value!r}")
    if horizon < 1:
        raise ValueError(f"rtc_prefix_weights: horizon must be >= 1, got {horizon}")
    if num_frozen < 0 or num_blend < 0:
        raise ValueError(f"rtc_prefix_weights: num_frozen and num_blend must be >= 0, got {num_frozen}, {num_blend}")
    if num_frozen + num_blend > horizon:
        raise ValueError(
            f"rtc_prefix_weights: num_frozen + num_blend = {num_frozen + num_blend} exceeds horizon {horizon}"
        )
    if schedule not in WEIGHT_SCHEDULES:
        raise ValueError(f"rtc_prefix_weights: schedule must be one of {WEIGHT_SCHEDULES}, got {schedule!r}")
    weights = torch.zeros(horizon, dtype=torch.float32)  # [T]
    weights[:num_frozen] = 1.0
    j = torch.arange(num_blend, dtype=torch.float64)  # [num_blend]
    c = (num_blend - j) / (num_blend + 1)  # [num_blend] in (0, 1)
    if schedule == "exp":
        blend = c * torch.expm1(c) / math.expm1(1.0)
    else:
        blend = c
    weights[num_frozen:num_frozen + num_blend] = blend.to(torch.float32)
    return weights
