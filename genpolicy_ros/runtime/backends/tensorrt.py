"""TensorRT backend: the unrolled N-step sampler as one TensorRT engine (fp32 or fp16).

Route: the same unrolled-sampler ONNX graph as the onnxruntime backend → TensorRT's ONNX
parser → a serialised engine (plain bytes, cached by :mod:`.cache` with its key: weights,
code, GPU model + compute capability, TensorRT/torch versions, precision, shapes,
sampler/steps). Loading is ``Runtime.deserialize_cuda_engine(bytes)``: no pickle, and an
engine built for another GPU or TensorRT version never matches the key.

We go through the ``tensorrt`` package rather than ``torch_tensorrt`` because the latter
saves compiled modules as exported programs (pickled constants); the serialised engine
keeps the cache free of pickle. Imports are lazy: on machines without CUDA/TensorRT,
:meth:`available` returns the reason and nothing else is touched.

fp16 engines are verified against eager fp32 with a 1e-2 relative tolerance.
"""
from __future__ import annotations

import time

import torch

from .base import BackendError, GraphBackend, GraphSpec, UnrolledSampler, cuda_unavailable_reason
from .cache import EngineCache, EngineKey, code_digest, device_name, library_versions, weights_digest
from .onnx import export_onnx


class TensorRTBackend(GraphBackend):
    name = "tensorrt"

    def __init__(self, policy, device: str = "cuda", cache_dir=None, *, workspace_gib: float = 2.0, **kwargs):
        super().__init__(policy, device, cache_dir, **kwargs)
        if not self.device.startswith("cuda"):
            raise ValueError(f"tensorrt needs a CUDA device, got {self.device!r}")
        self.verify_tol = 1e-2 if self.precision == "fp16" else 1e-4
        self.workspace_gib = float(workspace_gib)
        self.cache = EngineCache(cache_dir) if cache_dir is not None else None
        self.policy.to(self.device)
        self._keep = []

    @classmethod
    def available(cls, device: str = "cuda") -> tuple[bool, str]:
        reason = cuda_unavailable_reason(device)
        if reason:
            return False, reason
        try:
            import tensorrt  # noqa: F401
        except ImportError as exc:
            return False, f"the tensorrt package is not installed ({exc})"
        try:
            import onnx  # noqa: F401
        except ImportError as exc:
            return False, f"onnx is not installed ({exc}); needed to export the sampler"
        return True, ""

    def _engine_bytes(self, spec: GraphSpec, example_inputs: list) -> bytes:
        import tensorrt as trt

        names = spec.input_names
        s = spec.settings
        key = EngineKey(
            backend=self.name, weights_sha256=weights_digest(self.policy), code_sha256=code_digest(),
            device=device_name(self.device), versions=library_versions("tensorrt", "onnx"),
            precision=self.precision, shapes={n: list(x.shape) for n, x in zip(names, example_inputs)},
            sampler={"sampler": s.sampler, "num_steps": s.num_steps, "eta": s.eta,
                     "guidance_scale": s.guidance_scale},
            extra={"workspace_gib": self.workspace_gib})
        data = self.cache.load(key, "engine") if self.cache is not None else None
        if data is not None:
            self.build_info[spec] = {"cache": "hit"}
            return data
        t = time.perf_counter()
        module = UnrolledSampler(self.policy, spec)
        dev = torch.device(self.device)
        onnx_bytes = export_onnx(module, [x.to(dev) for x in example_inputs], names, ["actions"])
        logger = trt.Logger(trt.Logger.WARNING)
        builder = trt.Builder(logger)
        flags = 0
        if hasattr(trt.NetworkDefinitionCreationFlag, "EXPLICIT_BATCH"):
            flags = 1 << int(trt.NetworkDefinitionCreationFlag.EXPLICIT_BATCH)
        network = builder.create_network(flags)
        parser = trt.OnnxParser(network, logger)
        if not parser.parse(onnx_bytes):
            errors = "; ".join(str(parser.get_error(i)) for i in range(parser.num_errors))
            raise BackendError(f"TensorRT could not parse the exported sampler: {errors}")
        config = builder.create_builder_config()
        config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, int(self.workspace_gib * (1 << 30)))
        if self.precision == "fp16":
            config.set_flag(trt.BuilderFlag.FP16)
        serialized = builder.build_serialized_network(network, config)
        if serialized is None:
            raise BackendError("TensorRT engine build failed (see the TensorRT log above)")
        data = bytes(serialized)
        self.build_info[spec] = {"cache": "miss" if self.cache is not None else "off",
                                 "build_s": time.perf_counter() - t}
        if self.cache is not None:
            self.cache.store(key, "engine", data)
        return data

    def _build(self, spec: GraphSpec, example_inputs: list):
        import tensorrt as trt

        data = self._engine_bytes(spec, example_inputs)
        runtime = trt.Runtime(trt.Logger(trt.Logger.WARNING))
        engine = runtime.deserialize_cuda_engine(data)
        if engine is None:
            raise BackendError("TensorRT could not deserialise the engine (corrupt or built elsewhere)")
        context = engine.create_execution_context()
        dev = torch.device(self.device)
        names = spec.input_names
        buffers = {n: x.to(dev).contiguous().clone() for n, x in zip(names, example_inputs)}  # static inputs
        out_shape = tuple(engine.get_tensor_shape("actions"))
        buffers["actions"] = torch.empty(out_shape, dtype=torch.float32, device=dev)  # [B, T_p, D_a]
        for n, buf in buffers.items():
            context.set_tensor_address(n, buf.data_ptr())
        stream = torch.cuda.Stream(device=dev)
        self._keep.append((runtime, engine, context, buffers, stream))

        def run(inputs: list) -> torch.Tensor:
            for n, x in zip(names, inputs):
                buffers[n].copy_(x)
            stream.wait_stream(torch.cuda.current_stream(dev))
            if not context.execute_async_v3(stream.cuda_stream):
                raise BackendError("TensorRT execution failed")
            torch.cuda.current_stream(dev).wait_stream(stream)
            return buffers["actions"].float().cpu()

        return run

    def close(self) -> None:
        self._keep.clear()
        self._graphs.clear()
