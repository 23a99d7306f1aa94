"""Chunk latency per device × backend × sampler-steps, and the speed-up over eager.

For one (device, sampler, steps) cell every requested backend is prepared, then timed
*interleaved* (eager, B, C, eager, B, C, …) so that background load on a shared machine
hits all of them alike; the speed-up is the ratio of p50s measured in that same loop.
Repeat ``i`` gives every backend the same initial noise (``make_noise(seed + i)``) and
the same global RNG state (DDPM draws fresh noise inside its loop), so each output is
compared with eager's: ``max_abs_diff_vs_eager`` goes into the row.

A model is either flow or diffusion. Rows of the other family run on a *twin*: the same
architecture built from the same config with ``kind`` swapped and the same weights
loaded (latency does not depend on what the weights are). Those rows say ``twin: true``.

GPU rows need CUDA; without it each GPU cell is one row with ``status: skipped`` and the
reason, and nothing GPU-related is imported beyond ``torch.cuda.is_available()``.
"""
from __future__ import annotations

import dataclasses
import math
import re
import time
from dataclasses import dataclass
from typing import Callable, Dict, List, Optional, Sequence, Tuple

import numpy as np
import torch

from ..backends import BACKENDS, BackendError, create_backend
from ..backends.base import SamplerSettings, chunk_shape, make_noise
from ..generation_worker import example_obs_from_config, to_policy_obs

DEFAULT_SPECS = ("ddpm-100", "ddim-10", "flow-5", "flow-10")
DEFAULT_BACKENDS = ("eager", "compile", "onnxruntime", "cuda_graph", "tensorrt", "torch_tensorrt")
DEFAULT_DEVICES = ("cpu", "cuda")
FAMILY_OF_SAMPLER = {"flow": "flow", "ddim": "diffusion", "ddpm": "diffusion"}
_SPEC_RE = re.compile(r"^(flow|ddim|ddpm)-([1-9][0-9]*)$")


@dataclass(frozen=True)
class SamplerSpec:
    """One sampler/steps cell, written ``<sampler>-<steps>`` (``flow-10``, ``ddpm-100``)."""

    sampler: str
    steps: int

    def __post_init__(self):
        if self.sampler not in FAMILY_OF_SAMPLER:
            raise ValueError(f"SamplerSpec.sampler must be one of {sorted(FAMILY_OF_SAMPLER)}, got {self.sampler!r}")
        if isinstance(self.steps, bool) or not isinstance(self.steps, int) or self.steps < 1:
            raise ValueError(f"SamplerSpec.steps must be an int >= 1, got {self.steps!r}")

    @classmethod
    def parse(cls, text: str) -> "SamplerSpec":
        m = _SPEC_RE.match(text.strip())
        if not m:
            raise ValueError(f"sampler spec must look like flow-10, ddim-10 or ddpm-100, got {text!r}")
        return cls(m.group(1), int(m.group(2)))

    @property
    def name(self) -> str:
        return f"{self.sampler}-{self.steps}"

    @property
    def family(self) -> str:
        return FAMILY_OF_SAMPLER[self.sampler]

    def settings(self) -> SamplerSettings:
        eta = 0.0 if self.sampler == "ddim" else None  # deterministic DDIM: graph backends can capture it
        return SamplerSettings(sampler=self.sampler, num_steps=self.steps, eta=eta)


@dataclass(frozen=True)
class LatencyConfig:
    """What the latency section measures (validated)."""

    specs: Tuple[SamplerSpec, ...] = tuple(SamplerSpec.parse(s) for s in DEFAULT_SPECS)
    backends: Tuple[str, ...] = DEFAULT_BACKENDS
    devices: Tuple[str, ...] = DEFAULT_DEVICES
    repeats: int = 30
    warmup: int = 3
    threads: int = 1
    seed: int = 0
    cache_dir: Optional[str] = None
    precisions: Tuple[str, ...] = ("fp32",)  # fp16 rows: CUDA only (skipped with the reason on the CPU)

    def __post_init__(self):
        if not self.specs or not all(isinstance(s, SamplerSpec) for s in self.specs):
            raise ValueError("LatencyConfig.specs must be a non-empty tuple of SamplerSpec")
        unknown = [b for b in self.backends if b not in BACKENDS]
        if not self.backends or unknown:
            raise ValueError(f"LatencyConfig.backends: unknown {unknown} (choose from {list(BACKENDS)})")
        bad_dev = [d for d in self.devices if d not in ("cpu", "cuda")]
        if not self.devices or bad_dev:
            raise ValueError(f"LatencyConfig.devices must be cpu and/or cuda, got {list(self.devices)}")
        bad_prec = [p for p in self.precisions if p not in ("fp32", "fp16")]
        if not self.precisions or bad_prec:
            raise ValueError(f"LatencyConfig.precisions must be fp32 and/or fp16, got {list(self.precisions)}")
        for name, lo in (("repeats", 1), ("warmup", 0), ("threads", 1)):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int) or v < lo:
                raise ValueError(f"LatencyConfig.{name} must be an int >= {lo}, got {v!r}")


# --------------------------------------------------------------------------- policies
def twin_policy(policy, family: str):
    """``policy`` itself when its kind is ``family``; otherwise a same-architecture twin
    (config with ``kind`` swapped, same state dict) -> ``(policy, is_twin)``."""
    from ...core.policy import GenerativePolicy

    if policy.config.kind == family:
        return policy, False
    cfg = dataclasses.replace(policy.config, kind=family)
    twin = GenerativePolicy.from_config(cfg)
    twin.load_state_dict(policy.state_dict(), strict=True)  # same encoder/network/normalisers
    return twin.eval(), True


def example_observation(config, seed: int) -> dict:
    """A batched observation (``[1, ...]`` tensors) with seeded, non-trivial values."""
    obs = example_obs_from_config(config)  # single observation, numpy
    rng = np.random.default_rng(seed)
    if "state" in obs:
        obs["state"] = rng.normal(0.0, 0.1, obs["state"].shape).astype(np.float32)  # [T_o, D_s]
    for cam, img in obs.get("images", {}).items():
        obs["images"][cam] = rng.uniform(0, 1, img.shape).astype(np.float32)  # [T_o, 3, H, W]
    return to_policy_obs(obs)


def cuda_status() -> Tuple[bool, str]:
    """``(True, device name)`` or ``(False, reason)``."""
    if not torch.cuda.is_available():
        return False, f"no CUDA device visible to torch {torch.__version__}"
    return True, torch.cuda.get_device_name(0)


# --------------------------------------------------------------------------- measuring
def _percentiles(ms: np.ndarray) -> dict:
    return {"p50_ms": float(np.percentile(ms, 50)), "p99_ms": float(np.percentile(ms, 99)),
            "mean_ms": float(ms.mean()), "min_ms": float(ms.min()), "max_ms": float(ms.max())}


def _to(obs, device: str):
    return {k: (_to(v, device) if isinstance(v, dict) else v.to(device)) for k, v in obs.items()}


def measure_cell(policy, spec: SamplerSpec, device: str, config: LatencyConfig, *, twin: bool,
                 progress: Optional[Callable[[], None]] = None) -> List[dict]:
    """Rows for one (device, spec): one per requested backend (timed, skipped or failed)."""
    rows: List[dict] = []
    base = {"device": device, "sampler": spec.sampler, "steps": spec.steps, "spec": spec.name, "twin": twin}
    if spec.family == "diffusion" and spec.steps > policy.config.diffusion.num_train_steps:
        reason = f"{spec.steps} steps > num_train_steps {policy.config.diffusion.num_train_steps}"
        return [dict(base, backend=b, status="skipped", reason=reason) for b in config.backends]
    settings = spec.settings()
    obs = example_observation(policy.config, config.seed)
    # eager fp32 first: the reference; then every (backend, precision) asked for
    order = [("eager", "fp32")] + [(b, p) for p in config.precisions for b in config.backends
                                   if (b, p) != ("eager", "fp32")]
    prepared: Dict[str, object] = {}
    for name, precision in order:
        label = name if precision == "fp32" else f"{name}:{precision}"
        cell = dict(base, backend=name, precision=precision, label=label)
        ok, reason = BACKENDS[name].available(device)
        if ok and precision == "fp16" and not (device.startswith("cuda") and BACKENDS[name].fp16_capable):
            ok, reason = False, f"{name} has no fp16 on {device}"
        if not ok:
            rows.append(dict(cell, status="skipped", reason=reason))
            continue
        t = time.perf_counter()
        try:
            backend = create_backend(name, policy, device, config.cache_dir, num_threads=config.threads,
                                     precision=precision)
            backend.prepare(settings, obs)
        except Exception as exc:  # noqa: BLE001 - a backend that cannot run this cell is reported, not fatal
            reason = str(exc) if isinstance(exc, BackendError) else f"{type(exc).__name__}: {exc}"
            rows.append(dict(cell, status="skipped" if "cannot capture" in reason else "failed", reason=reason))
            continue
        prepared[label] = (backend, time.perf_counter() - t, cell)
    if "eager" not in prepared:  # nothing to compare with
        return rows + [dict(base, backend=n, status="failed", reason="eager reference failed")
                       for n in prepared]

    shape = chunk_shape(policy)  # (1, T_p, D_a)
    times = {name: [] for name in prepared}
    diffs = {name: 0.0 for name in prepared}
    paths = {name: set() for name in prepared}
    dev_obs = obs
    for i in range(config.warmup + config.repeats):
        noise = make_noise(shape, config.seed + i)  # [1, T_p, D_a]
        ref = None
        for name, (backend, _, _) in prepared.items():
            torch.manual_seed(config.seed + i)  # DDPM's in-loop noise: the same for every backend
            t = time.perf_counter()
            out = backend.sample(dev_obs, noise, settings)  # [1, T_p, D_a] CPU (returns synchronise)
            elapsed = time.perf_counter() - t
            if i < config.warmup:
                continue
            times[name].append(elapsed)
            paths[name].add(backend.last_path)
            if ref is None:
                ref = out
            diffs[name] = max(diffs[name], float((out.float() - ref.float()).abs().max()))
        if progress is not None:
            progress()
    eager_p50 = float(np.median(times["eager"])) * 1e3
    for name, (backend, prepare_s, cell) in prepared.items():
        ms = np.asarray(times[name]) * 1e3  # [repeats]
        row = dict(cell, status="ok", runs=int(ms.size), prepare_s=float(prepare_s),
                   path=sorted(paths[name])[0] if len(paths[name]) == 1 else sorted(paths[name]),
                   max_abs_diff_vs_eager=diffs[name], **_percentiles(ms))
        row["speedup_vs_eager"] = eager_p50 / row["p50_ms"] if row["p50_ms"] > 0 else None
        row["samples_ms"] = [float(x) for x in ms]
        rows.append(row)
        backend.close()
    rank = {n: i for i, n in enumerate(config.backends)}
    rows.sort(key=lambda r: rank.get(r["backend"], len(rank)))
    return rows


def measure_latency(policy, config: LatencyConfig, *, progress: Optional[Callable[[], None]] = None) -> List[dict]:
    """All rows: device × spec × backend (see module docstring)."""
    torch.set_num_threads(config.threads)
    rows: List[dict] = []
    twins = {}
    for device in config.devices:
        if device == "cuda":
            ok, why = cuda_status()
            if not ok:
                rows += [dict(device=device, backend=b, sampler=s.sampler, steps=s.steps, spec=s.name,
                              twin=s.family != policy.config.kind, status="skipped", reason=why)
                         for s in config.specs for b in config.backends]
                continue
        for spec in config.specs:
            if spec.family not in twins:
                twins[spec.family] = twin_policy(policy, spec.family)
            pol, is_twin = twins[spec.family]
            pol.to(device)
            rows += measure_cell(pol, spec, device, config, twin=is_twin, progress=progress)
            pol.to("cpu")
    return rows


def speedup_summary(rows: Sequence[dict]) -> Dict[str, Dict[str, dict]]:
    """``{device: {spec: {best_backend, speedup, eager_p50_ms, best_p50_ms, max_abs_diff_vs_eager}}}``
    — the best backend is the one with the smallest p50 among rows that ran."""
    out: Dict[str, Dict[str, dict]] = {}
    for device in sorted({r["device"] for r in rows}):
        for spec in dict.fromkeys(r["spec"] for r in rows if r["device"] == device):
            ok = [r for r in rows if r["device"] == device and r["spec"] == spec and r["status"] == "ok"]
            eager = next((r for r in ok if r["backend"] == "eager" and r.get("precision", "fp32") == "fp32"), None)
            if eager is None:
                continue
            best = min(ok, key=lambda r: r["p50_ms"])
            out.setdefault(device, {})[spec] = {
                "best_backend": best["backend"], "best_precision": best.get("precision", "fp32"),
                "speedup": eager["p50_ms"] / best["p50_ms"],
                "eager_p50_ms": eager["p50_ms"], "best_p50_ms": best["p50_ms"],
                "max_abs_diff_vs_eager": best["max_abs_diff_vs_eager"], "twin": best["twin"]}
    return out


def delay_rows(rows: Sequence[dict], spec: str, dt: float, device: str = "cpu") -> Optional[int]:
    """``ceil(p99 / dt)`` of the fastest backend for ``spec`` (the generation delay in rows
    a deployment would plan for), or None when the spec was not measured."""
    ok = [r for r in rows if r["device"] == device and r["spec"] == spec and r["status"] == "ok"]
    if not ok:
        return None
    best = min(ok, key=lambda r: r["p50_ms"])
    return max(1, int(math.ceil(best["p99_ms"] / 1e3 / dt - 1e-9)))
