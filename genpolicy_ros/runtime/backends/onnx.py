"""ONNX Runtime backend: the whole unrolled N-step sampler as one ONNX graph.

Why this is fast on a CPU (measured on the 2-core machine, 5 M-param U-Net, T_p=16,
10 Euler steps, 1 thread, interleaved p50: eager 88 ms, unrolled ONNX 28 ms (3.1×),
per-step ONNX 33 ms (2.6×), torch.compile of the denoiser 84 ms (1.05×)): most of eager's
time is PyTorch's batch-1 Conv1d path (``aten::_slow_conv2d_forward`` ≈ 64 % of a
forward in the profiler), which ONNX Runtime's conv kernels avoid; unrolling the step loop
(encoder once + N denoiser evaluations + N solver updates in one static graph, fixed
noise as an input) removes the Python between steps and folds the constant timesteps,
their embeddings and the DDIM coefficients at export — worth another ~15 %.

Settings a fixed graph cannot express (DDPM, DDIM η > 0, steps/shapes/guidance weight not
prepared) do not drop to eager: they run the policy's Python loop over a *per-step*
ONNX export of the denoiser alone (batch axis dynamic, so guidance's doubled batch fits;
``last_path`` = ``"per_step: <reason>"``). Only RTC *guided* prefixes (a vector–Jacobian
product through the denoiser) run eager. ``mode="per_step"`` uses that path for
everything (fast export: ~1 s instead of ~10 s).

Inputs of the unrolled graph: ``noise [B,T_p,D_a]``, optionally ``prefix_actions
[B,T_p,D_a]`` and ``prefix_weights [T_p]`` (hard-mask prefix inpainting), then the
observation leaves by dotted name (``obs.state``, ``obs.images.<camera>``). Output:
``actions [B,T_p,D_a]`` in robot units.

Session options: ``intra_op_num_threads`` = the process's torch thread count (or
``num_threads``), one inter-op thread, sequential execution, all graph optimisations, and
thread spinning off (spinning workers would steal the core the executor needs on a
2-core machine).

Exporter: ``exporter="torchscript"`` (default) traces with ``torch.onnx.export(dynamo=False)``;
``exporter="dynamo"`` uses the supported ``torch.export``-based exporter (needs
``onnxscript``). Why the tracer stays the default (torch 2.13, measured in one run on the
2-core machine under load, reach_flow 1.6 M params, flow-10, 1 thread):

* coverage: ``torch.export`` cannot export the graphs the node needs — the hard-RTC-prefix
  sampler (a host read ``bool((weights[k:] != 0).any())`` in ``core/policy.py``) and any
  DDIM sampler (``timesteps.tolist()`` in ``core/diffusion.py``); only plain flow exports;
* export time: 77.6 s vs 10.6 s (7×), paid at a cold configure;
* parity with eager: 1.2e-6 vs 9.8e-7 (both fine); run time: 17.8 vs 23.9 ms p50 — the
  dynamo graph is 1.34× faster (546 vs 1272 nodes: no Shape/Slice/Constant chains, fused Mish).

Once core drops those two host reads, ``dynamo`` is the better default (and the tracer
is deprecated); until then it is an option for plain flow graphs
(``genpolicy export --exporter dynamo``).
"""
from __future__ import annotations

import importlib.util
import io
import logging
import time
import warnings
from dataclasses import replace

import numpy as np
import torch

from .base import BackendError, SamplerSettings
from .cache import EngineCache, EngineKey, code_digest, device_name, library_versions, weights_digest
from .graph import GraphBackend, GraphSpec, UnrolledSampler, swapped_network

OPSET = 17
LOG = logging.getLogger("genpolicy_ros.runtime.backends")
EXPORTERS = ("torchscript", "dynamo")


def export_onnx(module: torch.nn.Module, inputs: list, input_names: list[str], output_names: list[str],
                dynamic_axes: dict | None = None, exporter: str = "torchscript") -> bytes:
    """``module(*inputs)`` as ONNX bytes (static shapes unless ``dynamic_axes``).

    ``torchscript``: the tracing exporter (``dynamo=False``); ``dynamo``: the
    ``torch.export``-based exporter (``dynamo=True``, needs ``onnxscript``).
    """
    if exporter not in EXPORTERS:
        raise ValueError(f"exporter must be one of {list(EXPORTERS)}, got {exporter!r}")
    buf = io.BytesIO()
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")  # tracer / deprecation chatter
        if exporter == "torchscript":
            torch.onnx.export(module, tuple(inputs), buf, dynamo=False, input_names=input_names,
                              output_names=output_names, opset_version=OPSET, do_constant_folding=True,
                              dynamic_axes=dynamic_axes)
            return buf.getvalue()
        if importlib.util.find_spec("onnxscript") is None:
            raise BackendError("the dynamo ONNX exporter needs onnxscript (pip install onnxscript)")
        dynamic_shapes = None
        if dynamic_axes:
            batch = torch.export.Dim("B")
            dynamic_shapes = tuple({0: batch} if name in dynamic_axes else None for name in input_names)
        program = torch.onnx.export(module, tuple(inputs), dynamo=True, input_names=input_names,
                                    output_names=output_names, opset_version=max(OPSET, 18),
                                    dynamic_shapes=dynamic_shapes, optimize=True, verbose=False)
        program.save(buf)
        return buf.getvalue()


def make_session(model_bytes: bytes, device: str, num_threads: int | None, spinning: bool = False):
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.intra_op_num_threads = int(num_threads or torch.get_num_threads())
    so.inter_op_num_threads = 1
    so.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    so.log_severity_level = 3
    so.add_session_config_entry("session.intra_op.allow_spinning", "1" if spinning else "0")
    providers = ["CPUExecutionProvider"]
    if str(device).startswith("cuda"):
        providers = ["CUDAExecutionProvider", "CPUExecutionProvider"]
    try:
        return ort.InferenceSession(model_bytes, sess_options=so, providers=providers)
    except Exception as exc:  # noqa: BLE001 - onnxruntime raises its own exception types
        raise BackendError(f"onnxruntime could not load the model: {exc}") from exc


class OnnxRuntimeBackend(GraphBackend):
    """ONNX Runtime (CPU; CUDA execution provider on a GPU device)."""

    name = "onnxruntime"
    modes = ("unrolled", "per_step")

    def __init__(self, policy, device: str = "cpu", cache_dir=None, *, mode: str = "unrolled",
                 spinning: bool = False, per_step_fallback: bool = True, exporter: str = "torchscript", **kwargs):
        super().__init__(policy, device, cache_dir, **kwargs)
        if mode not in self.modes:
            raise ValueError(f"onnxruntime mode must be one of {list(self.modes)}, got {mode!r}")
        if exporter not in EXPORTERS:
            raise ValueError(f"onnxruntime exporter must be one of {list(EXPORTERS)}, got {exporter!r}")
        self.mode = mode
        self.exporter = exporter
        self.spinning = bool(spinning)
        self.per_step_fallback = bool(per_step_fallback)
        self._denoiser = None  # per-step ONNX denoiser: the fast path for settings without a graph
        self._denoiser_example = None  # (spec, inputs) it is built from when deferred
        self.cache = EngineCache(cache_dir) if cache_dir is not None else None
        self._weights_sha = None

    @classmethod
    def available(cls, device: str = "cpu") -> tuple[bool, str]:
        try:
            import onnxruntime as ort
        except ImportError as exc:
            return False, f"onnxruntime is not installed ({exc}); pip install onnxruntime"
        if importlib.util.find_spec("onnx") is None:  # torch.onnx.export needs it (not imported here: 0.5 s)
            return False, "onnx is not installed; pip install onnx"
        if str(device).startswith("cuda") and "CUDAExecutionProvider" not in ort.get_available_providers():
            return False, (f"onnxruntime {ort.__version__} has no CUDAExecutionProvider "
                           f"(providers: {ort.get_available_providers()}); install onnxruntime-gpu")
        return True, ""

    def describe(self) -> str:
        return f"{self.name}[{self.mode}] on {self.device} ({self.precision})"

    def _on_clone(self) -> None:
        self.per_step_fallback = False  # the serving backend already has its per-step denoiser

    # ---------------------------------------------------------------- build
    def _key(self, spec: GraphSpec, shapes: dict) -> EngineKey:
        if self._weights_sha is None:
            self._weights_sha = weights_digest(self.policy)
        s = spec.settings
        return EngineKey(
            backend=f"{self.name}:{self.mode}", weights_sha256=self._weights_sha, code_sha256=code_digest(),
            device=device_name(self.device), versions=library_versions("onnx", "onnxruntime"),
            precision=self.precision, shapes=shapes,
            sampler={"sampler": s.sampler, "num_steps": s.num_steps, "eta": s.eta,
                     "guidance_scale": s.guidance_scale},
            extra={"exporter": self.exporter},
        )

    def _model_bytes(self, key: EngineKey, export, what: str) -> bytes:
        data = self.cache.load(key, "onnx") if self.cache is not None else None
        info = {"cache": "hit" if data is not None else ("miss" if self.cache is not None else "off")}
        if data is None:
            self.report(f"onnxruntime: exporting {what} to ONNX ({self.exporter} exporter; not in the engine cache)")
            t = time.perf_counter()
            data = export()
            info["build_s"] = time.perf_counter() - t
            self.report(f"onnxruntime: exported {what} in {info['build_s']:.1f} s")
            if self.cache is not None:
                self.cache.store(key, "onnx", data)
        else:
            self.report(f"onnxruntime: {what} loaded from the engine cache")
        self._last_info = info
        return data

    def _session_or_rebuild(self, key: EngineKey, export, what: str):
        data = self._model_bytes(key, export, what)
        try:
            return make_session(data, self.device, self.num_threads, self.spinning)
        except BackendError:
            if self.cache is None or self._last_info["cache"] != "hit":
                raise
            # A cached file that passed its hash check but does not load (e.g. written by
            # a different onnxruntime): drop it and rebuild once.
            self.cache.remove(key, "onnx")
            return make_session(self._model_bytes(key, export, what), self.device, self.num_threads, self.spinning)

    def _build(self, spec: GraphSpec, example_inputs: list):
        if self.mode == "unrolled":
            runner = self._build_unrolled(spec, example_inputs)
            info = dict(self._last_info)
            if self.per_step_fallback and self._denoiser is None:
                if self.defer_extras:
                    self._denoiser_example = (spec, example_inputs)  # built by background_work()
                else:
                    self._try_build_denoiser(spec, example_inputs)
        else:
            if self._denoiser is None:
                self._denoiser = self._build_denoiser(spec, example_inputs)
            info = dict(self._last_info)
            runner = self._per_step_runner(spec)
        self.build_info[spec] = info
        return runner

    def _build_unrolled(self, spec, example_inputs):
        names = spec.input_names
        shapes = {n: list(x.shape) for n, x in zip(names, example_inputs)}
        key = self._key(spec, shapes)
        module = UnrolledSampler(self.policy, spec)
        what = f"the {spec.settings.label} sampler{' + RTC prefix' if spec.with_prefix else ''}"
        session = self._session_or_rebuild(
            key, lambda: export_onnx(module, example_inputs, names, ["actions"], exporter=self.exporter), what)

        def run(inputs: list) -> torch.Tensor:
            feeds = {n: np.ascontiguousarray(x.numpy()) for n, x in zip(names, inputs)}
            return torch.from_numpy(session.run(["actions"], feeds)[0])  # [B, T_p, D_a]

        return run

    def _try_build_denoiser(self, spec, example_inputs) -> None:
        try:
            self._denoiser = self._build_denoiser(spec, example_inputs)
        except Exception as exc:  # noqa: BLE001 - the fallback then stays eager
            LOG.warning("onnxruntime: per-step denoiser export failed (%s); other settings run eager", exc)

    def background_work(self):
        if self._denoiser is not None or self._denoiser_example is None:
            return None
        builder, (spec, inputs) = self.detached(), self._denoiser_example
        self._denoiser_example = None

        def build_per_step_denoiser():
            builder._try_build_denoiser(spec, inputs)
            self._denoiser = builder._denoiser  # published with one assignment

        return build_per_step_denoiser

    def _build_denoiser(self, spec, example_inputs) -> "_OrtDenoiser":
        """Export the denoiser alone, batch axis dynamic (classifier-free guidance doubles it)."""
        module = UnrolledSampler(self.policy, spec)
        probe = _DenoiserProbe(self.policy.network)
        with torch.no_grad(), swapped_network(self.policy, probe):
            module(*example_inputs)  # records one (sample, timestep, cond) call
        if probe.args is None:
            raise BackendError("per-step export: the sampler never called policy.network")
        net_inputs = list(probe.args)
        net_names = ["sample", "timestep", "cond"][: len(net_inputs)]
        shapes = {n: ["B", *x.shape[1:]] for n, x in zip(net_names, net_inputs)}
        key = self._key(replace(spec, settings=SamplerSettings()), shapes)  # one export for all settings
        key = replace(key, backend=f"{self.name}:denoiser", sampler={})
        axes = {n: {0: "B"} for n in [*net_names, "output"]}
        session = self._session_or_rebuild(
            key, lambda: export_onnx(self.policy.network, net_inputs, net_names, ["output"], dynamic_axes=axes,
                                     exporter=self.exporter), "the per-step denoiser")
        return _OrtDenoiser(session, net_names)

    def _per_step_runner(self, spec):
        module = UnrolledSampler(self.policy, spec)
        denoiser = self._denoiser

        def run(inputs: list) -> torch.Tensor:
            with torch.inference_mode(), swapped_network(self.policy, denoiser):
                return module(*inputs)

        return run

    def _fallback_sample(self, obs, noise, settings, prefix_actions, prefix_weights, prefix_mode, reason):
        # RTC guided inpainting needs gradients through the denoiser: eager only.
        guided = prefix_actions is not None and prefix_mode == "guided"
        if self._denoiser is None or guided:
            return super()._fallback_sample(obs, noise, settings, prefix_actions, prefix_weights,
                                            prefix_mode, reason)
        self.last_path = f"per_step: {reason}"
        with swapped_network(self.policy, self._denoiser):
            return self.eager_sample(obs, noise, settings, prefix_actions, prefix_weights, prefix_mode)


class _DenoiserProbe(torch.nn.Module):
    """Calls through to the real denoiser and remembers the arguments of the first call."""

    def __init__(self, net):
        super().__init__()
        self.net = net
        self.args = None

    def forward(self, *args):
        if self.args is None:
            self.args = tuple(a.detach().clone() for a in args if a is not None)
        return self.net(*args)


class _OrtDenoiser(torch.nn.Module):
    """``forward(sample, timestep, cond)`` evaluated by an ONNX Runtime session."""

    def __init__(self, session, names):
        super().__init__()
        self.session = session
        self.names = names

    def forward(self, *args):
        feeds = {n: np.ascontiguousarray(a.detach().float().cpu().numpy())
                 for n, a in zip(self.names, args) if a is not None}
        return torch.from_numpy(self.session.run(["output"], feeds)[0])
