"""Eager PyTorch: ``policy.sample`` as written. The reference every other backend is tested against.

fp16 (CUDA only) runs under ``torch.autocast``; the reference used to verify other
backends is always fp32 (``eager_sample(..., reference=True)``).
"""
from __future__ import annotations

import torch

from .base import BackendError, InferenceBackend, batch_of, chunk_shape, make_noise, obs_to_tensors, verify_close


class EagerBackend(InferenceBackend):
    """Runs the policy's own sampler loop in eager mode (always available, every setting)."""

    name = "eager"
    fp16_capable = True

    @classmethod
    def available(cls, device: str = "cpu") -> tuple[bool, str]:
        if str(device).startswith("cuda") and not torch.cuda.is_available():
            return False, f"device {device!r} requested but torch {torch.__version__} sees no CUDA device"
        return True, ""

    def __init__(self, policy, device: str = "cpu", cache_dir=None, **kwargs):
        super().__init__(policy, device, cache_dir, **kwargs)
        self.policy.to(self.device)

    def prepare(self, settings, example_obs, *, with_prefix: bool = False) -> None:
        """Warm-up: one chunk, checked for shape and finiteness (fp16: and against fp32 within 1e-2)."""
        obs = obs_to_tensors(example_obs, self.device)
        noise = make_noise(chunk_shape(self.policy, batch_of(obs)), seed=0)  # [B, T_p, D_a]
        resolved = settings.resolved(self.policy)
        out = self.eager_sample(obs, noise, resolved)
        if tuple(out.shape) != tuple(noise.shape):
            raise BackendError(f"eager warm-up: output shape {tuple(out.shape)} != {tuple(noise.shape)}")
        if self.precision == "fp16":
            verify_close(out, self.eager_sample(obs, noise, resolved, reference=True), "eager fp16", 1e-2)
        else:
            verify_close(out, out, "eager warm-up", 0.0)  # finiteness

    def sample(self, obs, noise, settings, *, prefix_actions=None, prefix_weights=None, prefix_mode="hard"):
        self.last_path = "eager"
        return self.eager_sample(obs, noise, settings.resolved(self.policy), prefix_actions,
                                 prefix_weights, prefix_mode)
