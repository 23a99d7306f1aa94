"""Learning-rate schedule: linear warm-up, then half a cosine down to ``min_ratio · lr``.

Multiplier of the base learning rate at optimiser step ``s`` (0-based; the step about to
be taken), with W warm-up steps and S total steps (the schedule of Diffusion Policy,
Chi et al. 2023, and of ``diffusers.optimization.get_cosine_schedule_with_warmup``)::

    m(s) = s / W                                          for s < W
    m(s) = r + (1 − r) · ½ · (1 + cos(π · (s − W) / (S − W)))   for W <= s <= S
    m(s) = r                                              for s > S

A warm-up longer than the run is cut to ``S`` (W = min(W, S)). The trainer sets the
learning rate from the step number each step, so resuming needs no scheduler state.
"""
from __future__ import annotations

import math


def lr_multiplier(step: int, total_steps: int, warmup_steps: int, min_ratio: float = 0.0) -> float:
    """Warm-up + cosine multiplier in [0, 1] for optimiser step ``step`` (see module docstring)."""
    if total_steps < 1 or warmup_steps < 0 or not 0.0 <= min_ratio <= 1.0:
        raise ValueError(
            f"lr_multiplier: need total_steps >= 1, warmup_steps >= 0, min_ratio in [0,1]; "
            f"got {total_steps}, {warmup_steps}, {min_ratio}"
        )
    if step < 0:
        raise ValueError(f"lr_multiplier: step must be >= 0, got {step}")
    warmup_steps = min(warmup_steps, total_steps)
    if step < warmup_steps:
        return step / warmup_steps
    progress = min(1.0, (step - warmup_steps) / max(1, total_steps - warmup_steps))
    return min_ratio + (1.0 - min_ratio) * 0.5 * (1.0 + math.cos(math.pi * progress))


class WarmupCosineSchedule:
    """Sets ``lr`` of every optimiser parameter group from the step number."""

    def __init__(self, base_lr: float, total_steps: int, warmup_steps: int, min_ratio: float = 0.0):
        if not base_lr > 0:
            raise ValueError(f"WarmupCosineSchedule: base_lr must be > 0, got {base_lr}")
        lr_multiplier(0, total_steps, warmup_steps, min_ratio)  # validates the arguments
        self.base_lr = float(base_lr)
        self.total_steps = int(total_steps)
        self.warmup_steps = int(warmup_steps)
        self.min_ratio = float(min_ratio)

    def lr(self, step: int) -> float:
        return self.base_lr * lr_multiplier(step, self.total_steps, self.warmup_steps, self.min_ratio)

    def apply(self, optimizer, step: int) -> float:
        """Set the learning rate for optimiser step ``step``; returns it."""
        value = self.lr(step)
        for group in optimizer.param_groups:
            group["lr"] = value
        return value
