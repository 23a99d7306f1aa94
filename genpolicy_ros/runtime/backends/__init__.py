"""Inference backends, selected by name: ``create_backend(name, policy, device, cache_dir)``.

| name          | what runs                                                   | where      |
|---------------|-------------------------------------------------------------|------------|
| ``eager``     | ``policy.sample`` in eager PyTorch (reference, all settings) | CPU / GPU  |
| ``compile``   | ``torch.compile`` (TorchInductor) of the denoiser           | CPU / GPU  |
| ``onnxruntime`` | whole unrolled N-step sampler as one ONNX graph            | CPU (CUDA EP on GPU) |
| ``openvino``  | the same ONNX graph compiled by OpenVINO (fp32, opt-in bf16) | CPU        |
| ``cuda_graph``| whole N-step sampler captured in one CUDA graph             | GPU        |
| ``tensorrt``  | whole unrolled sampler as one TensorRT engine, ONNX route   | GPU        |
| ``torch_tensorrt`` | the same engine built by torch.export + Torch-TensorRT | GPU        |
| ``auto``      | the first of :data:`AUTO_ORDER` that is available and builds | —          |

``torch`` is accepted as an alias of ``eager`` (the node parameter's spelling).
GPU libraries are imported lazily inside ``available()``/``prepare()``; on a CPU-only
machine those backends report ``(False, reason)``.
"""
from __future__ import annotations

from .base import LOG, BackendError, InferenceBackend, SamplerSettings, chunk_shape, make_noise
from .choice import recorded_choice
from .compiled import CompiledBackend
from .cuda_graph import CudaGraphBackend
from .eager import EagerBackend
from .onnx import OnnxRuntimeBackend
from .openvino import OpenVinoBackend
from .tensorrt import TensorRTBackend
from .torch_trt import TorchTensorRTBackend

BACKENDS: dict[str, type[InferenceBackend]] = {
    "eager": EagerBackend,
    "compile": CompiledBackend,
    "onnxruntime": OnnxRuntimeBackend,
    "openvino": OpenVinoBackend,
    "cuda_graph": CudaGraphBackend,
    "tensorrt": TensorRTBackend,
    "torch_tensorrt": TorchTensorRTBackend,
}
ALIASES = {"torch": "eager"}

#: ``auto`` preference, fastest first; a choice measured on the machine (:mod:`.choice`)
#: goes before it. CPU measured (2-core AMD EPYC, 1 thread, interleaved): OpenVINO
#: 1.2–1.7× faster than ONNX Runtime, which is 3–3.5× faster than eager (torch.compile:
#: denoiser 1.05× eager, whole sampler 0.46× ONNX Runtime after a 200 s compile). CUDA: *not measured yet* (no GPU here;
#: ``scripts/gpu_check.sh`` measures it): engines ≥ CUDA graph ≫ eager is the
#: expectation, torch_tensorrt first as the route the design names.
AUTO_ORDER = {
    "cpu": ("openvino", "onnxruntime", "eager"),
    "cuda": ("torch_tensorrt", "tensorrt", "cuda_graph", "onnxruntime", "eager"),
}

__all__ = ["AUTO_ORDER", "AutoBackend", "BACKENDS", "BackendError", "InferenceBackend", "SamplerSettings",
           "available_backends", "backend_names", "chunk_shape", "create_backend", "make_noise"]


def backend_names() -> list[str]:
    return [*BACKENDS, "auto"]


def available_backends(device: str = "cpu") -> dict[str, tuple[bool, str]]:
    """``{name: (available, reason)}`` for every concrete backend on ``device``."""
    return {name: cls.available(device) for name, cls in BACKENDS.items()}


def create_backend(name: str, policy, device: str = "cpu", cache_dir=None, **options) -> InferenceBackend:
    """Construct the backend called ``name`` (no build yet; call ``prepare``).

    Raises :class:`BackendError` with the reason when an explicitly named backend is not
    available on ``device``; ``auto`` never raises for availability (eager always works).
    """
    name = ALIASES.get(name, name)
    if name == "auto":
        return AutoBackend(policy, device, cache_dir, **options)
    if name not in BACKENDS:
        raise ValueError(f"unknown backend {name!r}; choose one of {backend_names()} (or 'torch')")
    cls = BACKENDS[name]
    ok, reason = cls.available(device)
    if not ok:
        raise BackendError(f"backend {name} unavailable: {reason}")
    return cls(policy, device, cache_dir, **options)


class AutoBackend(InferenceBackend):
    """Tries :data:`AUTO_ORDER` for the device family; the first candidate that is
    available *and* prepares (builds + verifies against eager) is used. Every skipped
    candidate is logged as ``backend X unavailable: <reason>; using Y``.

    ``precision`` and ``num_threads`` go to every candidate (one that cannot run the
    precision is skipped with its reason: nothing is silently run at another precision);
    ``options`` maps a backend name to extra constructor options for it. A choice measured
    on this machine (``genpolicy export MODEL --backend auto``, :mod:`.choice`) and stored
    in the engine cache goes first.
    """

    name = "auto"
    fp16_capable = True
    bf16_capable = True

    def __init__(self, policy, device: str = "cpu", cache_dir=None, *, order=None, **options):
        super().__init__(policy, device, cache_dir, precision=options.pop("precision", "fp32"),
                         num_threads=options.pop("num_threads", None))
        family = "cuda" if str(device).startswith("cuda") else "cpu"
        self.order = tuple(order or AUTO_ORDER[family])
        self.recorded = None if order else recorded_choice(cache_dir, self.device, self.num_threads, self.precision)
        if self.recorded in BACKENDS:
            self.order = (self.recorded, *[n for n in self.order if n != self.recorded])
        self.options = options
        self.chosen: InferenceBackend | None = None
        self.fallbacks: list[str] = []  # the log lines, also kept for diagnostics

    @classmethod
    def available(cls, device: str = "cpu") -> tuple[bool, str]:
        return True, ""

    @property
    def chosen_name(self) -> str:
        return self.chosen.name if self.chosen is not None else "none"

    def describe(self) -> str:
        why = " (measured choice)" if self.recorded and self.chosen and self.chosen.name == self.recorded else ""
        return f"auto{why} → {self.chosen.describe() if self.chosen else 'unprepared'}"

    def _make(self, name: str) -> InferenceBackend:
        cls = BACKENDS[name]
        ok, reason = cls.available(self.device)
        if not ok:
            raise BackendError(reason)
        backend = cls(self.policy, self.device, self.cache_dir, precision=self.precision,
                      num_threads=self.num_threads, **self.options.get(name, {}))
        backend.progress, backend.defer_extras = self.progress, self.defer_extras
        return backend

    def prepare(self, settings, example_obs, *, with_prefix: bool = False) -> None:
        if self.chosen is not None:
            self.chosen.prepare(settings, example_obs, with_prefix=with_prefix)
            return
        failures: list[tuple[str, str]] = []
        for name in self.order:
            try:
                backend = self._make(name)
                backend.prepare(settings, example_obs, with_prefix=with_prefix)
            except Exception as exc:  # noqa: BLE001 - any failure means: try the next one
                failures.append((name, str(exc) or type(exc).__name__))
                continue
            for failed, reason in failures:
                line = f"backend {failed} unavailable: {reason}; using {name}"
                self.fallbacks.append(line)
                LOG.warning(line)
            self.chosen = backend
            return
        raise BackendError("no backend could be prepared: " + "; ".join(f"{n}: {r}" for n, r in failures))

    def _require(self) -> InferenceBackend:
        if self.chosen is None:
            raise BackendError("auto backend used before prepare()")
        return self.chosen

    def sample(self, obs, noise, settings, **kwargs):
        chosen = self._require()
        out = chosen.sample(obs, noise, settings, **kwargs)
        self.last_path = chosen.last_path
        return out

    def graph_status(self, settings, example_obs, **kwargs):
        return self._require().graph_status(settings, example_obs, **kwargs)

    def detached(self):
        return self._require().detached()

    def background_work(self):
        return self._require().background_work()

    def close(self) -> None:
        if self.chosen is not None:
            self.chosen.close()
