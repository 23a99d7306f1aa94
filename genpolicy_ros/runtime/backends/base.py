"""The inference-backend interface and the pieces every backend shares.

An *inference backend* turns one observation (+ fixed noise) into one action chunk with
the policy's sampler, as fast as the hardware allows. All backends compute the same
function as eager ``GenerativePolicy.sample`` (tested to 1e-4 in fp32)::

    sample(obs, noise [B, T_p, D_a], settings, prefix_actions?, prefix_weights?)
        -> actions [B, T_p, D_a] in robot units (torch, CPU)

Life cycle (mirrors the lifecycle node's configure step)::

    backend = create_backend(name, policy, device, cache_dir)   # cheap, no build
    backend.prepare(settings, example_obs)   # build / compile / export (or load from the
                                             # engine cache), warm up, check shape + values
    backend.sample(obs, noise, settings)     # many times; O(graph) per call

Graph backends (ONNX Runtime, CUDA graphs, TensorRT) capture the *whole* N-step sampler
for one fixed setting (sampler, steps, shapes). A call whose settings the graph cannot
express — classifier-free guidance ≠ 1, DDIM η > 0 / DDPM (fresh noise drawn inside the
loop), RTC *guided* prefix (needs a vector–Jacobian product), or settings that were never
prepared — runs eager PyTorch for that call instead; ``last_path`` says which path ran and
why, and unprepared settings are remembered in ``pending`` so the owner can build them
while idle (``prepare_pending``).
"""
from __future__ import annotations

import abc
import contextlib
import logging
import math
import warnings
from dataclasses import dataclass, replace
from typing import Any, Callable, ClassVar, Iterator, Mapping, Sequence

import numpy as np
import torch

from ...core.inpainting import check_prefix_values

LOG = logging.getLogger("genpolicy_ros.runtime.backends")

SAMPLERS = ("flow", "ddim", "ddpm", "regression")
PREFIX_MODES = ("hard", "guided")
PRECISIONS = ("fp32", "fp16")


class BackendError(RuntimeError):
    """A backend could not be built, loaded or verified; the message says why."""


# --------------------------------------------------------------------------- settings
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


def _finite(v) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(float(v))


# --------------------------------------------------------------------------- observations
def flatten_obs(obs: Mapping[str, Any], prefix: str = "obs") -> list[tuple[str, Any]]:
    """Nested observation dict -> ``[(dotted name, leaf)]`` sorted by name.

    ``{"state": s, "images": {"front": f}}`` -> ``[("obs.images.front", f), ("obs.state", s)]``.
    The names become the graph input names of exported engines.
    """
    out = []
    for key in sorted(obs):
        if "." in key:
            raise ValueError(f"observation key {key!r} must not contain '.'")
        value = obs[key]
        name = f"{prefix}.{key}"
        if isinstance(value, Mapping):
            out.extend(flatten_obs(value, name))
        else:
            out.append((name, value))
    return out


def unflatten_obs(names: Sequence[str], leaves: Sequence[Any]) -> dict:
    """Inverse of :func:`flatten_obs`."""
    root: dict = {}
    for name, leaf in zip(names, leaves):
        parts = name.split(".")[1:]  # drop the "obs" prefix
        node = root
        for part in parts[:-1]:
            node = node.setdefault(part, {})
        node[parts[-1]] = leaf
    return root


def obs_to_tensors(obs: Mapping[str, Any], device: str | torch.device = "cpu") -> dict:
    """Nested dict of numpy arrays / tensors -> same nesting of float32 tensors on ``device``."""
    names, leaves = zip(*flatten_obs(obs)) if obs else ((), ())
    tensors = [torch.as_tensor(np.asarray(x) if not isinstance(x, torch.Tensor) else x)
               .to(device=device, dtype=torch.float32) for x in leaves]
    return unflatten_obs(names, tensors)


def obs_signature(obs: Mapping[str, Any]) -> tuple:
    """``((name, shape), ...)`` — what a static graph is specialised to."""
    return tuple((name, tuple(np.shape(leaf))) for name, leaf in flatten_obs(obs))


def chunk_shape(policy, batch: int = 1) -> tuple[int, int, int]:
    """``(B, T_p, D_a)`` of the policy's action chunks."""
    cfg = policy.config
    return (batch, int(cfg.horizon.T_p), int(cfg.action.dim))


def make_noise(shape: Sequence[int], seed: int | None) -> torch.Tensor:
    """Standard-normal initial noise ``x0`` [B, T_p, D_a] from a CPU generator seeded with ``seed``.

    Every backend and the in-process reference draw the noise this way, so equal seeds give
    equal chunks whatever backend or process computes them.
    """
    gen = torch.Generator(device="cpu")
    if seed is None:
        gen.seed()
    else:
        gen.manual_seed(int(seed))
    return torch.randn(tuple(shape), generator=gen, dtype=torch.float32)  # [B, T_p, D_a]


# --------------------------------------------------------------------------- graph settings
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


def graph_unsupported_reason(settings: SamplerSettings, prefix_mode: str | None) -> str | None:
    """Why a fixed graph cannot express these (resolved) settings, or None if it can."""
    if settings.guidance_scale != 1.0:
        return f"guidance_scale={settings.guidance_scale} (classifier-free guidance runs eager)"
    if settings.sampler == "ddpm":
        return "sampler=ddpm draws fresh noise every step (runs eager)"
    if settings.sampler == "ddim" and settings.eta:
        return f"ddim eta={settings.eta} > 0 draws fresh noise every step (runs eager)"
    if prefix_mode == "guided":
        return "prefix_mode=guided needs a vector-Jacobian product per step (runs eager)"
    return None


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

    Used by the per-step backends: the policy's own sampler loop then calls the
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


# --------------------------------------------------------------------------- interface
class InferenceBackend(abc.ABC):
    """One way of running the policy's sampler. Subclasses set ``name`` and implement
    :meth:`available` and, for graph backends, :meth:`_build`."""

    name: ClassVar[str] = "abstract"

    def __init__(self, policy, device: str = "cpu", cache_dir=None, *,
                 precision: str = "fp32", num_threads: int | None = None):
        if precision not in PRECISIONS:
            raise ValueError(f"precision must be one of {list(PRECISIONS)}, got {precision!r}")
        self.policy = policy
        self.device = str(device)
        self.precision = precision
        self.num_threads = num_threads
        self.cache_dir = cache_dir
        self.last_path = "unprepared"  # "graph" | "eager: <reason>" after each sample()
        self.pending: dict[GraphSpec, tuple] = {}  # spec -> example inputs, built by prepare_pending
        policy.eval()

    # ---------------------------------------------------------------- capability
    @classmethod
    @abc.abstractmethod
    def available(cls, device: str = "cpu") -> tuple[bool, str]:
        """``(True, "")`` or ``(False, reason)`` — cheap; imports GPU libraries lazily."""

    # ---------------------------------------------------------------- use
    @abc.abstractmethod
    def prepare(self, settings: SamplerSettings, example_obs: Mapping[str, Any], *,
                with_prefix: bool = False) -> None:
        """Build (or load) what ``sample`` needs for these settings and shapes, warm up and
        verify against eager; raises :class:`BackendError` with a reason on failure."""

    @abc.abstractmethod
    def sample(self, obs: Mapping[str, Any], noise: torch.Tensor, settings: SamplerSettings, *,
               prefix_actions: torch.Tensor | None = None, prefix_weights: torch.Tensor | None = None,
               prefix_mode: str = "hard") -> torch.Tensor:
        """One chunk ``[B, T_p, D_a]`` (robot units, CPU float32)."""

    def prepare_pending(self) -> int:
        """Build graphs for settings that were requested but not prepared; returns how many."""
        return 0

    def close(self) -> None:
        """Release sessions / device memory."""

    def describe(self) -> str:
        return f"{self.name} on {self.device} ({self.precision})"

    # ---------------------------------------------------------------- shared helpers
    def eager_sample(self, obs, noise, settings: SamplerSettings, prefix_actions=None,
                     prefix_weights=None, prefix_mode="hard") -> torch.Tensor:
        """The reference path: ``policy.sample`` in eager PyTorch."""
        dev = torch.device(self.device)

        def to(x):
            return None if x is None else torch.as_tensor(x, dtype=torch.float32).to(dev)

        kwargs = settings.policy_kwargs()
        if prefix_actions is not None:
            kwargs.update(prefix_actions=to(prefix_actions), prefix_weights=to(prefix_weights),
                          prefix_mode=prefix_mode)
        # RTC guided inpainting differentiates through the denoiser: no inference mode then.
        guided = prefix_actions is not None and prefix_mode == "guided"
        with contextlib.nullcontext() if guided else torch.inference_mode():
            out = self.policy.sample(obs_to_tensors(obs, dev), noise=to(noise), **kwargs)
        return out.float().cpu()


def verify_close(got: torch.Tensor, ref: torch.Tensor, what: str, tol: float) -> float:
    """Raise :class:`BackendError` unless ``got`` matches ``ref`` (shape, finiteness, values).

    Tolerance is relative to the reference magnitude: ``|got − ref| ≤ tol · max(1, |ref|)``.
    Returns the max abs error.
    """
    got = torch.as_tensor(got).detach().float().cpu()
    ref = torch.as_tensor(ref).detach().float().cpu()
    if tuple(got.shape) != tuple(ref.shape):
        raise BackendError(f"{what}: output shape {tuple(got.shape)} != eager {tuple(ref.shape)}")
    if not torch.isfinite(got).all():
        raise BackendError(f"{what}: output has non-finite values")
    err = (got - ref).abs().max().item() if got.numel() else 0.0
    scale = max(1.0, ref.abs().max().item() if ref.numel() else 0.0)
    if err > tol * scale:
        raise BackendError(f"{what}: output differs from eager by {err:.3g} (> {tol:g}·{scale:.3g})")
    return err


class GraphBackend(InferenceBackend):
    """Shared logic of backends that specialise a graph to (settings, shapes).

    Subclasses implement ``_build(spec, example_inputs) -> runner`` where
    ``runner(list of CPU tensors in spec.input_names order) -> CPU tensor``.
    """

    verify_tol: float = 1e-4

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self._graphs: dict[GraphSpec, Callable[[list], torch.Tensor]] = {}
        self.build_info: dict[GraphSpec, dict] = {}  # spec -> {"cache": "hit"/"miss", "build_s": ...}

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

    def prepare(self, settings, example_obs, *, with_prefix=False):
        obs = obs_to_tensors(example_obs)
        noise_shape = chunk_shape(self.policy, batch=_batch_of(obs))
        spec = self._spec(settings, obs, noise_shape, with_prefix)
        reason = graph_unsupported_reason(spec.settings, "hard" if with_prefix else None)
        if reason is not None:
            raise BackendError(f"{self.name} cannot capture these settings: {reason}")
        if spec in self._graphs:
            return
        noise = make_noise(noise_shape, seed=0)  # [B, T_p, D_a]
        prefix_a = prefix_w = None
        if with_prefix:
            prefix_a = self.eager_sample(obs, make_noise(noise_shape, seed=1), spec.settings)  # [B,T_p,D_a]
            prefix_w = torch.zeros(noise_shape[1])  # [T_p]
            prefix_w[: max(1, noise_shape[1] // 4)] = 1.0
        inputs = self._inputs(spec, obs, noise, prefix_a, prefix_w)
        with warnings.catch_warnings():
            # exporters/compilers import deprecated torch.jit pieces; not actionable here
            warnings.simplefilter("ignore", DeprecationWarning)
            runner = self._build(spec, inputs)
            # Warm-up + verification on the example and on a second, unrelated input
            # (catches values that a trace baked in as constants).
            for seed in (0, 2):
                noise = make_noise(noise_shape, seed=seed)
                inputs = self._inputs(spec, obs, noise, prefix_a, prefix_w)
                got = runner(inputs)
                ref = self.eager_sample(obs, noise, spec.settings, prefix_a, prefix_w, "hard")
                verify_close(got, ref, f"{self.name} ({spec.settings.sampler}, {spec.settings.num_steps} steps)",
                             self.verify_tol)
        self._graphs[spec] = runner
        self.pending.pop(spec, None)

    def prepare_pending(self) -> int:
        built = 0
        for spec, (settings, obs, with_prefix) in list(self.pending.items()):
            self.pending.pop(spec, None)
            try:
                self.prepare(settings, obs, with_prefix=with_prefix)
                built += 1
            except Exception as exc:  # noqa: BLE001 - stays eager for these settings
                LOG.warning("%s: could not prepare %s: %s (those chunks stay eager)", self.name,
                            spec.settings, exc)
        return built

    def sample(self, obs, noise, settings, *, prefix_actions=None, prefix_weights=None, prefix_mode="hard"):
        obs = obs_to_tensors(obs)
        with_prefix = prefix_actions is not None
        spec = self._spec(settings, obs, tuple(noise.shape), with_prefix)
        reason = graph_unsupported_reason(spec.settings, prefix_mode if with_prefix else None)
        runner = self._graphs.get(spec) if reason is None else None
        if runner is None and reason is None and not with_prefix:
            # A hard-prefix graph with all-zero weights computes exactly the plain sampler
            # (x + 0·(target − x) = x; no frozen rows), so one graph serves both.
            twin = replace(spec, with_prefix=True)
            runner = self._graphs.get(twin)
            if runner is not None:
                spec, with_prefix = twin, True
                prefix_actions = torch.zeros(spec.noise_shape)  # [B, T_p, D_a]
                prefix_weights = torch.zeros(spec.noise_shape[1])  # [T_p]
        if runner is None:
            if reason is None:
                reason = "settings/shapes not prepared yet"
                self.pending.setdefault(spec, (settings, obs, with_prefix))
            return self._fallback_sample(obs, noise, spec.settings, prefix_actions, prefix_weights,
                                         prefix_mode, reason)
        self.last_path = "graph"
        if with_prefix and prefix_weights is None:
            prefix_weights = torch.ones(spec.noise_shape[1])
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


def _batch_of(obs: Mapping[str, Any]) -> int:
    leaves = flatten_obs(obs)
    if not leaves:
        raise ValueError("example observation is empty")
    return int(np.shape(leaves[0][1])[0])


# --------------------------------------------------------------------------- measurement
def measure_latency(backends: Mapping[str, "InferenceBackend"], obs, settings: SamplerSettings, *,
                    runs: int = 50, warmup: int = 3, seed: int = 0) -> dict[str, dict]:
    """Per-chunk latency of several prepared backends, runs *interleaved* (A, B, A, B, …) so
    that background load affects all of them alike. Returns ``{name: {"p50_ms", "p90_ms",
    "min_ms", "runs"}}``; compare backends by the ratio of their p50s."""
    import time

    noise = make_noise(chunk_shape(next(iter(backends.values())).policy, _batch_of(obs)), seed)
    times: dict[str, list[float]] = {name: [] for name in backends}
    for i in range(warmup + runs):
        for name, backend in backends.items():
            t = time.perf_counter()
            backend.sample(obs, noise, settings)
            if i >= warmup:
                times[name].append(time.perf_counter() - t)
    out = {}
    for name, ts in times.items():
        arr = np.asarray(ts) * 1e3
        out[name] = {"p50_ms": float(np.median(arr)), "p90_ms": float(np.percentile(arr, 90)),
                     "min_ms": float(arr.min()), "runs": len(ts)}
    return out


def cuda_unavailable_reason(device: str) -> str:
    """Why a CUDA-only backend cannot run on ``device``; ``""`` when it can."""
    import torch

    if not torch.cuda.is_available():
        return f"torch {torch.__version__} sees no CUDA device"
    if not str(device).startswith("cuda"):
        return f"device is {device!r}, not cuda"
    return ""
