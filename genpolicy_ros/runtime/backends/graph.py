"""What graph backends share: the unrolled sampler, the graph table, verification, fallbacks.

A graph backend specialises one captured graph to one :class:`GraphSpec` (resolved
sampler settings, observation shapes, noise shape, hard-prefix inputs or not). The
``with_prefix`` graph with all-zero prefix weights computes exactly the plain sampler, so
one graph serves requests with and without an RTC prefix.

Subclasses implement ``_build(spec, example_inputs) -> runner`` where
``runner(list of CPU tensors in spec.input_names order) -> CPU tensor [B, T_p, D_a]``.
"""
from __future__ import annotations

import abc
import contextlib
import copy
import time
import warnings
from dataclasses import dataclass, replace
from typing import Callable, Iterator

import torch

from ...core.inpainting import check_prefix_values
from .base import (
    BackendError,
    InferenceBackend,
    SamplerSettings,
    batch_of,
    chunk_shape,
    flatten_obs,
    graph_unsupported_reason,
    make_noise,
    obs_signature,
    obs_to_tensors,
    unflatten_obs,
    verify_close,
)


@dataclass(frozen=True)
class GraphSpec:
    """What one captured graph is specialised to (one entry of a backend's graph table)."""

    settings: SamplerSettings  # resolved; debug_sleep_s stripped
    obs_sig: tuple  # ((name, shape), ...)
    noise_shape: tuple  # (B, T_p, D_a)
    with_prefix: bool  # hard-mask prefix inpainting inputs present

    @property
    def input_names(self) -> list[str]:
        names = ["noise"]
        if self.with_prefix:
            names += ["prefix_actions", "prefix_weights"]
        return names + [name for name, _ in self.obs_sig]


class UnrolledSampler(torch.nn.Module):
    """The whole N-step sampler as one module with tensor-only inputs, for export/capture.

    ``forward(noise, [prefix_actions, prefix_weights], *obs_leaves) -> actions [B, T_p, D_a]``
    calls ``policy.sample`` with the sampler settings fixed at construction, so tracing it
    unrolls the Python step loop: encoder once, N denoiser evaluations and N solver updates
    in one graph; constant timesteps/coefficients (flow t_i, DDIM ᾱ) fold into constants.
    The prefix values are not checked inside (``check_values=False``: no host read in a
    captured graph); :meth:`GraphBackend.sample` checks them before every call.
    """

    def __init__(self, policy, spec: GraphSpec):
        super().__init__()
        self.policy = policy
        self.spec = spec
        self._obs_names = [name for name, _ in spec.obs_sig]
        self._kwargs = spec.settings.policy_kwargs()

    def forward(self, noise, *rest):
        kwargs = dict(self._kwargs)
        if self.spec.with_prefix:
            prefix_actions, prefix_weights, *rest = rest
            kwargs.update(prefix_actions=prefix_actions, prefix_weights=prefix_weights, prefix_mode="hard")
        obs = unflatten_obs(self._obs_names, rest)
        return self.policy.sample(obs, noise=noise, check_values=False, **kwargs)


@contextlib.contextmanager
def swapped_network(policy, replacement: torch.nn.Module) -> Iterator[None]:
    """Temporarily replace ``policy.network`` (the denoiser) by ``replacement``.

    Used by the per-step paths: the policy's own sampler loop then calls the
    compiled/exported denoiser, so sampler semantics stay the policy's.
    """
    original = policy.network
    # nn.Module.__setattr__ refuses to replace a registered child by a non-Module; use the
    # module dict directly so any callable works and restore it exactly afterwards.
    policy._modules["network"] = replacement
    try:
        yield
    finally:
        policy._modules["network"] = original


class GraphBackend(InferenceBackend):
    """Shared logic of backends that specialise a graph to (settings, shapes)."""

    verify_tol: float = 1e-4  # fp32; subclasses running fp16 use 1e-2

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        if self.precision == "fp16":
            self.verify_tol = 1e-2
        self._graphs: dict[GraphSpec, Callable[[list], torch.Tensor]] = {}
        self.build_info: dict[GraphSpec, dict] = {}  # spec -> {"cache": "hit"/"miss"/..., "build_s": ...}

    def _spec(self, settings, obs, noise_shape, with_prefix) -> GraphSpec:
        resolved = replace(settings.resolved(self.policy), debug_sleep_s=0.0)
        return GraphSpec(resolved, obs_signature(obs), tuple(noise_shape), bool(with_prefix))

    @staticmethod
    def _inputs(spec: GraphSpec, obs, noise, prefix_actions=None, prefix_weights=None) -> list:
        leaves = [torch.as_tensor(x, dtype=torch.float32) for _, x in flatten_obs(obs)]
        head = [torch.as_tensor(noise, dtype=torch.float32)]
        if spec.with_prefix:
            head += [torch.as_tensor(prefix_actions, dtype=torch.float32),
                     torch.as_tensor(prefix_weights, dtype=torch.float32)]
        return head + leaves

    def _lookup(self, spec: GraphSpec):
        """``(runner, spec it was built for)``: the exact graph, or the prefix twin for a
        request without a prefix; ``(None, spec)`` when neither is built."""
        runner = self._graphs.get(spec)
        if runner is None and not spec.with_prefix:
            twin = replace(spec, with_prefix=True)
            if twin in self._graphs:
                return self._graphs[twin], twin
        return runner, spec

    def graph_status(self, settings, example_obs, *, with_prefix=False, prefix_mode="hard"):
        obs = obs_to_tensors(example_obs)
        spec = self._spec(settings, obs, chunk_shape(self.policy, batch_of(obs)), with_prefix)
        reason = graph_unsupported_reason(spec.settings, prefix_mode if with_prefix else None)
        if reason is not None:
            return "none", reason
        return ("graph", "") if self._lookup(spec)[0] is not None else ("build", "")

    def prepare(self, settings, example_obs, *, with_prefix=False):
        obs = obs_to_tensors(example_obs)
        noise_shape = chunk_shape(self.policy, batch=batch_of(obs))
        spec = self._spec(settings, obs, noise_shape, with_prefix)
        reason = graph_unsupported_reason(spec.settings, "hard" if with_prefix else None)
        if reason is not None:
            raise BackendError(f"{self.name} cannot capture these settings: {reason}")
        if spec in self._graphs:
            return
        t = time.perf_counter()
        label = f"{spec.settings.label}{' + RTC prefix' if with_prefix else ''}"
        prefix_a = prefix_w = None
        if with_prefix:
            prefix_a = make_noise(noise_shape, seed=1)  # [B, T_p, D_a] any non-trivial values
            prefix_w = torch.zeros(noise_shape[1])  # [T_p]
            prefix_w[: max(1, noise_shape[1] // 4)] = 1.0
        with warnings.catch_warnings():
            # exporters/compilers import deprecated torch.jit pieces; not actionable here
            warnings.simplefilter("ignore", DeprecationWarning)
            runner = self._build(spec, self._inputs(spec, obs, make_noise(noise_shape, seed=0), prefix_a, prefix_w))
            info = self.build_info.setdefault(spec, {})
            # Warm-up + verification against eager fp32 on the example and, for a fresh
            # build, on a second unrelated input (catches values a trace baked in as constants).
            self.report(f"{self.name}: verifying the {label} graph against eager")
            for seed in (0,) if info.get("cache") == "hit" else (0, 2):
                noise = make_noise(noise_shape, seed=seed)  # [B, T_p, D_a]
                got = runner(self._inputs(spec, obs, noise, prefix_a, prefix_w))
                ref = self.eager_sample(obs, noise, spec.settings, prefix_a, prefix_w, "hard", reference=True)
                info["max_abs_err"] = verify_close(got, ref, f"{self.name} ({label}, {self.precision})",
                                                   self.verify_tol)
        info["prepare_s"] = time.perf_counter() - t
        self._graphs[spec] = runner

    def detached(self) -> "GraphBackend":
        """A builder for another thread: shares the graph table (a finished graph lands
        there with one dict assignment and ``sample`` picks it up on its next call) but
        works on a deep copy of the policy, which the serving thread never touches. Call
        it from the serving thread (the copy must not catch a swapped-in denoiser)."""
        clone = copy.copy(self)
        clone.policy = copy.deepcopy(self.policy)
        clone._on_clone()
        return clone

    def _on_clone(self) -> None:
        """Hook for subclasses whose per-instance build state must not be shared with a clone."""

    def sample(self, obs, noise, settings, *, prefix_actions=None, prefix_weights=None, prefix_mode="hard"):
        obs = obs_to_tensors(obs)
        with_prefix = prefix_actions is not None
        spec = self._spec(settings, obs, tuple(noise.shape), with_prefix)
        reason = graph_unsupported_reason(spec.settings, prefix_mode if with_prefix else None)
        runner = None
        if reason is None:
            runner, built = self._lookup(spec)
            if runner is not None and built.with_prefix and not with_prefix:
                # A hard-prefix graph with all-zero weights computes exactly the plain sampler
                # (x + 0·(target − x) = x; no frozen rows).
                spec, with_prefix = built, True
                prefix_actions = torch.zeros(spec.noise_shape)  # [B, T_p, D_a]
                prefix_weights = torch.zeros(spec.noise_shape[1])  # [T_p]
            elif runner is None:
                reason = "settings/shapes not prepared yet"
        if runner is None:
            return self._fallback_sample(obs, noise, spec.settings, prefix_actions, prefix_weights,
                                         prefix_mode, reason)
        self.last_path = "graph"
        if with_prefix and prefix_weights is None:
            prefix_weights = torch.ones(spec.noise_shape[1])  # [T_p]
        inputs = self._inputs(spec, obs, noise, prefix_actions, prefix_weights)
        if with_prefix:  # the graph checks nothing: the values are checked here, on the host
            check_prefix_values(inputs[1], inputs[2], "prefix")
        return runner(inputs)

    def _fallback_sample(self, obs, noise, settings, prefix_actions, prefix_weights, prefix_mode, reason):
        """Settings without a graph: eager PyTorch (backends may offer something faster)."""
        self.last_path = f"eager: {reason}"
        return self.eager_sample(obs, noise, settings, prefix_actions, prefix_weights, prefix_mode)

    @abc.abstractmethod
    def _build(self, spec: GraphSpec, example_inputs: list) -> Callable[[list], torch.Tensor]:
        ...
