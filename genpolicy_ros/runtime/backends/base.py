"""The inference-backend interface and the pieces every backend shares.

An *inference backend* turns one observation (+ fixed noise) into one action chunk with
the policy's sampler, as fast as the hardware allows. All backends compute the same
function as eager ``GenerativePolicy.sample`` (tested to 1e-4 in fp32, 1e-2 in fp16)::

    sample(obs, noise [B, T_p, D_a], settings, prefix_actions?, prefix_weights?)
        -> actions [B, T_p, D_a] in robot units (torch, CPU)

Life cycle (mirrors the lifecycle node's configure step)::

    backend = create_backend(name, policy, device, cache_dir, precision=...)  # cheap, no build
    backend.prepare(settings, example_obs)   # build / compile / export (or load from the
                                             # engine cache), warm up, check shape + values
    backend.sample(obs, noise, settings)     # many times; O(graph) per call

Graph backends (:mod:`.graph`: ONNX Runtime, CUDA graphs, TensorRT, torch.compile)
capture the *whole* N-step sampler for one fixed setting (sampler, steps, guidance weight,
shapes). A call whose settings the graph cannot express — DDIM η > 0 / DDPM (fresh noise
drawn inside the loop), RTC *guided* prefix (needs a vector–Jacobian product), or
settings not built yet — runs a fallback path for that call; ``last_path``
says which path ran and why. :meth:`InferenceBackend.graph_status` tells whether settings
have a graph, could get one, or cannot; :meth:`InferenceBackend.detached` gives a builder
on a copy of the policy so that a background thread can build while ``sample`` serves.

``precision``: ``fp32`` everywhere; ``fp16`` only on CUDA (TensorRT engines, or
``torch.autocast`` for eager / CUDA graph / compile); ``bf16`` only with openvino on a CPU
that has it. ``progress`` (a callable taking one
line of text, optional) receives the steps of long builds (export, engine build).
"""
from __future__ import annotations

import abc
import contextlib
import logging
from typing import Any, Callable, ClassVar, Mapping, Sequence

import numpy as np
import torch

from ..sampler_settings import PRECISIONS, PREFIX_MODES, SAMPLERS, SamplerSettings  # noqa: F401 (re-exported)

LOG = logging.getLogger("genpolicy_ros.runtime.backends")


class BackendError(RuntimeError):
    """A backend could not be built, loaded or verified; the message says why."""


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


def graph_unsupported_reason(settings: SamplerSettings, prefix_mode: str | None) -> str | None:
    """Why a fixed graph cannot express these (resolved) settings, or None if it can.

    Classifier-free guidance is captured (w is a constant of the graph; the conditional and
    unconditional halves run as one batch of 2 inside it); fresh noise inside the loop and
    the guided prefix's vector–Jacobian product are not."""
    if settings.sampler == "ddpm":
        return "sampler=ddpm draws fresh noise every step (runs eager)"
    if settings.sampler == "ddim" and settings.eta:
        return f"ddim eta={settings.eta} > 0 draws fresh noise every step (runs eager)"
    if prefix_mode == "guided":
        return "prefix_mode=guided needs a vector-Jacobian product per step (runs eager)"
    return None


# --------------------------------------------------------------------------- interface
class InferenceBackend(abc.ABC):
    """One way of running the policy's sampler. Subclasses set ``name`` and implement
    :meth:`available`, :meth:`prepare` and :meth:`sample` (graph backends: :mod:`.graph`).

    ``fp16_capable``: whether the class runs ``precision="fp16"`` (on CUDA only);
    ``bf16_capable``: whether it runs ``precision="bf16"`` (openvino, on CPUs with bf16).
    """

    name: ClassVar[str] = "abstract"
    fp16_capable: ClassVar[bool] = False
    bf16_capable: ClassVar[bool] = False

    def __init__(self, policy, device: str = "cpu", cache_dir=None, *,
                 precision: str = "fp32", num_threads: int | None = None):
        if precision not in PRECISIONS:
            raise ValueError(f"precision must be one of {list(PRECISIONS)}, got {precision!r}")
        if precision == "fp16":
            if not str(device).startswith("cuda"):
                raise ValueError(f"precision fp16 needs a CUDA device (device is {device!r}); use fp32 on the CPU")
            if not self.fp16_capable:
                raise ValueError(f"the {self.name} backend has no fp16")
        if precision == "bf16" and not self.bf16_capable:
            raise ValueError(f"the {self.name} backend has no bf16 (the openvino backend has, on CPUs with "
                             f"AVX512_BF16 or AMX)")
        self.policy = policy
        self.device = str(device)
        self.precision = precision
        self.num_threads = num_threads
        self.cache_dir = cache_dir
        self.progress: Callable[[str], None] | None = None  # build-step lines, see module docstring
        self.defer_extras = False  # True: leave non-essential builds to background_work()
        self.last_path = "unprepared"  # "graph" | "per_step: <reason>" | "eager: <reason>" after each sample()
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

    def graph_status(self, settings: SamplerSettings, example_obs: Mapping[str, Any], *,
                     with_prefix: bool = False, prefix_mode: str = "hard") -> tuple[str, str]:
        """``("graph", "")`` when a prepared graph serves these settings, ``("build", "")``
        when one could be built, ``("none", reason)`` when they run without a graph."""
        return "none", f"the {self.name} backend runs no graphs"

    def background_work(self) -> Callable[[], None] | None:
        """With ``defer_extras``: work ``prepare`` left out to start faster (e.g. the per-step
        fallback path), as a callable to run in a background thread, or None. Call it from
        the serving thread; the callable publishes its result itself."""
        return None

    def detached(self) -> "InferenceBackend":
        """A copy whose :meth:`prepare` may run in another thread while this one serves
        (graph backends); call it from the serving thread."""
        raise BackendError(f"the {self.name} backend has nothing to build")

    def close(self) -> None:
        """Release sessions / device memory."""

    def describe(self) -> str:
        return f"{self.name} on {self.device} ({self.precision})"

    def report(self, text: str) -> None:
        """A progress line: logged, and passed to ``progress`` when set."""
        LOG.info(text)
        if self.progress is not None:
            self.progress(text)

    # ---------------------------------------------------------------- shared helpers
    def autocast(self):
        """``torch.autocast`` to fp16 on CUDA when ``precision == "fp16"``, else a no-op."""
        if self.precision == "fp16":
            return torch.autocast(device_type="cuda", dtype=torch.float16, cache_enabled=False)
        return contextlib.nullcontext()

    def eager_sample(self, obs, noise, settings: SamplerSettings, prefix_actions=None,
                     prefix_weights=None, prefix_mode="hard", *, reference: bool = False) -> torch.Tensor:
        """``policy.sample`` in eager PyTorch on the backend's device; ``reference=True``
        always in fp32 (what graphs are verified against), else at the backend's precision."""
        dev = torch.device(self.device)

        def to(x):
            return None if x is None else torch.as_tensor(x, dtype=torch.float32).to(dev)

        kwargs = settings.policy_kwargs()
        if prefix_actions is not None:
            kwargs.update(prefix_actions=to(prefix_actions), prefix_weights=to(prefix_weights),
                          prefix_mode=prefix_mode)
        # RTC guided inpainting differentiates through the denoiser: no inference mode then.
        guided = prefix_actions is not None and prefix_mode == "guided"
        with contextlib.nullcontext() if guided else torch.inference_mode(), \
                contextlib.nullcontext() if reference else self.autocast():
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


def batch_of(obs: Mapping[str, Any]) -> int:
    leaves = flatten_obs(obs)
    if not leaves:
        raise ValueError("example observation is empty")
    return int(np.shape(leaves[0][1])[0])



def cuda_unavailable_reason(device: str) -> str:
    """Why a CUDA-only backend cannot run on ``device``; ``""`` when it can."""
    import torch

    if not torch.cuda.is_available():
        return f"torch {torch.__version__} sees no CUDA device"
    if not str(device).startswith("cuda"):
        return f"device is {device!r}, not cuda"
    return ""
