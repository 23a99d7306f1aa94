"""How one chunk is sampled: :class:`SamplerSettings`, torch-free.

The real-time (node) process builds these and sends them to the generation child; only
the child imports torch. ``runtime/backends`` re-exports the class.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, replace

SAMPLERS = ("flow", "ddim", "ddpm", "regression")
PREFIX_MODES = ("hard", "guided")
PRECISIONS = ("fp32", "fp16", "bf16")  # fp16: CUDA backends; bf16: openvino on CPUs with bf16


def _finite(v) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(float(v))


@dataclass(frozen=True)
class SamplerSettings:
    """How one chunk is sampled (the ★ run-time parameters of the node).

    ``sampler``/``num_steps``/``eta`` ``None`` mean "the policy's default".
    ``guidance_scale`` is the classifier-free guidance weight w (1 = plain conditional).
    ``debug_sleep_s`` is test-only: the generation worker's child sleeps that long
    before sampling (used to inject a hang); it is never part of an engine key.
    """

    sampler: str | None = None
    num_steps: int | None = None
    guidance_scale: float = 1.0
    eta: float | None = None
    debug_sleep_s: float = 0.0

    def __post_init__(self):
        if self.sampler is not None and self.sampler not in SAMPLERS:
            raise ValueError(f"SamplerSettings.sampler must be one of {list(SAMPLERS)} or None, "
                             f"got {self.sampler!r}")
        if self.num_steps is not None and (
                isinstance(self.num_steps, bool) or not isinstance(self.num_steps, int) or self.num_steps < 1):
            raise ValueError(f"SamplerSettings.num_steps must be an int >= 1 or None, got {self.num_steps!r}")
        if not _finite(self.guidance_scale) or self.guidance_scale < 0:
            raise ValueError(f"SamplerSettings.guidance_scale must be a finite number >= 0, "
                             f"got {self.guidance_scale!r}")
        if self.eta is not None and (not _finite(self.eta) or self.eta < 0):
            raise ValueError(f"SamplerSettings.eta must be a finite number >= 0 or None, got {self.eta!r}")
        if not _finite(self.debug_sleep_s) or self.debug_sleep_s < 0:
            raise ValueError(f"SamplerSettings.debug_sleep_s must be a finite number >= 0, "
                             f"got {self.debug_sleep_s!r}")

    def resolved(self, policy) -> "SamplerSettings":
        """Fill ``None`` fields from the policy config (so engine keys are explicit)."""
        cfg = getattr(policy, "config", None)
        sampler, steps, eta = self.sampler, self.num_steps, self.eta
        if cfg is not None:
            if sampler is None:
                sampler = getattr(cfg, "default_sampler", None)
            if steps is None:
                sub = cfg.flow if sampler == "flow" else cfg.diffusion if sampler in ("ddim", "ddpm") else None
                steps = getattr(sub, "default_steps", None) if sub is not None else None
            if eta is None and sampler == "ddim":
                eta = getattr(cfg.diffusion, "eta", None)
        return replace(self, sampler=sampler, num_steps=steps, eta=eta)

    def policy_kwargs(self) -> dict:
        """Keyword arguments for ``policy.sample`` (None entries left out = policy default)."""
        kw = {"sampler": self.sampler, "num_steps": self.num_steps,
              "guidance_scale": float(self.guidance_scale), "eta": self.eta}
        return {k: v for k, v in kw.items() if v is not None}

    @property
    def label(self) -> str:
        """Short name for logs and diagnostics, e.g. ``flow-10`` or ``ddim-10 eta=0.5 w=2``."""
        text = f"{self.sampler or 'default'}-{self.num_steps if self.num_steps is not None else 'default'}"
        if self.eta:
            text += f" eta={self.eta:g}"
        if self.guidance_scale != 1.0:
            text += f" w={self.guidance_scale:g}"
        return text
