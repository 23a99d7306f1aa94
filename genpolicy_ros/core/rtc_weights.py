"""RTC soft-mask weights in NumPy — the one formula, usable without torch.

The chunk scheduler (runtime/, in the real-time process, which never imports torch)
builds the frozen-prefix weights of every RTC request with it; the samplers' torch side
(core/inpainting.py ``rtc_prefix_weights``) returns the same numbers as a tensor
(pinned by test/core/test_rtc_weights.py).
"""
from __future__ import annotations

import math

import numpy as np

WEIGHT_SCHEDULES = ("exp", "linear")


def rtc_prefix_weights_np(horizon: int, num_frozen: int, num_blend: int, schedule: str = "exp") -> np.ndarray:
    """Soft-mask weights ``[horizon]`` float64 for RTC (Black et al. 2025, arXiv 2506.07339, eq. 5).

    Rows ``0 … num_frozen−1`` get 1 (the actions that execute during inference, the
    paper's ``d``); the next ``num_blend`` rows decay toward 0; the rest get 0. With
    ``j = i − num_frozen`` and ``c_j = (num_blend − j) / (num_blend + 1)`` ∈ (0, 1):
    ``"exp"``: ``w_j = c_j · (e^{c_j} − 1) / (e − 1)`` (the paper's schedule); ``"linear"``: ``w_j = c_j``.
    """
    for name, value in (("horizon", horizon), ("num_frozen", num_frozen), ("num_blend", num_blend)):
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
            raise ValueError(f"rtc_prefix_weights: {name} must be an int, got {value!r}")
    if horizon < 1:
        raise ValueError(f"rtc_prefix_weights: horizon must be >= 1, got {horizon}")
    if num_frozen < 0 or num_blend < 0:
        raise ValueError(f"rtc_prefix_weights: num_frozen and num_blend must be >= 0, got {num_frozen}, {num_blend}")
    if num_frozen + num_blend > horizon:
        raise ValueError(f"rtc_prefix_weights: num_frozen + num_blend = {num_frozen + num_blend} exceeds "
                         f"horizon {horizon}")
    if schedule not in WEIGHT_SCHEDULES:
        raise ValueError(f"rtc_prefix_weights: schedule must be one of {WEIGHT_SCHEDULES}, got {schedule!r}")
    weights = np.zeros(int(horizon), dtype=np.float64)  # [T]
    weights[:num_frozen] = 1.0
    j = np.arange(num_blend, dtype=np.float64)  # [num_blend]
    c = (num_blend - j) / (num_blend + 1)  # [num_blend] in (0, 1)
    blend = c * np.expm1(c) / (math.e - 1.0) if schedule == "exp" else c
    weights[num_frozen:num_frozen + num_blend] = blend
    return weights
