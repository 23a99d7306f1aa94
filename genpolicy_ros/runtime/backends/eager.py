"""Eager PyTorch: ``policy.sample`` as written. The reference every other backend is tested against."""
from __future__ import annotations

import torch

from .base import BackendError, InferenceBackend, chunk_shape, make_noise, obs_to_tensors, verify_close


class EagerBackend(InferenceBackend):
    """Runs the policy's own sampler loop in eager mode (always available, every setting)."""

    name = "eager"

    @classmethod
    def available(cls, device: str = "cpu") -> tuple[bool, str]:
        if str(device).startswith("cuda") and not torch.cuda.is_available():
            return False, f"device {device!r} requested but torch {torch.__version__} sees no CUDA device"
        return True, ""

    def __init__(self, policy, device: str = "cpu", cache_dir=None, **kwargs):
        super().__init__(policy, device, cache_dir, **kwargs)
        if self.precision != "fp32":
            raise ValueError("the eager backend runs fp32 only")
        self.policy.to(self.device)

    def prepare(self, settings, example_obs, *, with_prefix: bool = False) -> None:
        """Warm-up: one chunk, checked for shape and finiteness (the eager path is its own reference)."""
        obs = obs_to_tensors(example_obs, self.device)
        batch = next(iter(_leaves(obs))).shape[0]
        noise = make_noise(chunk_shape(self.policy, batch), seed=0).to(self.device)  # [B, T_p, D_a]
        out = self.eager_sample(obs, noise, settings.resolved(self.policy))
        verify_close(out, out, "eager warm-up", 0.0)  # shape + finiteness
        if tuple(out.shape) != tuple(noise.shape):
            raise BackendError(f"eager warm-up: output shape {tuple(out.shape)} != {tuple(noise.shape)}")

    def sample(self, obs, noise, settings, *, prefix_actions=None, prefix_weights=None, prefix_mode="hard"):
        self.last_path = "eager"
        return self.eager_sample(obs, noise, settings.resolved(self.policy), prefix_actions,
                                 prefix_weights, prefix_mode)


def _leaves(obs):
    for value in obs.values():
        if isinstance(value, dict):
            yield from _leaves(value)
        else:
            yield value
