"""TensorRT backends: the unrolled N-step sampler as one serialised TensorRT engine (fp32/fp16).

Two routes build the engine bytes; both run them the same way (:class:`EngineBackend`):

* ``tensorrt`` — the unrolled-sampler ONNX graph (as for onnxruntime) → TensorRT's ONNX
  parser → ``build_serialized_network``. fp16 uses the builder's FP16 flag (weak typing;
  a TensorRT without it reports that fp16 needs the torch_tensorrt route).
* ``torch_tensorrt`` (:mod:`.torch_trt`) — ``torch.export`` of the unrolled sampler →
  ``torch_tensorrt.dynamo.convert_exported_program_to_serialized_trt_engine``.

Either way the result is a plain serialised engine (bytes) cached by :mod:`.cache` under
its key (weights, code, GPU model + compute capability, TensorRT/torch versions,
precision, shapes, sampler/steps). Loading is ``Runtime.deserialize_cuda_engine(bytes)``:
no pickle (``torch_tensorrt``'s own save format would pickle), and an engine built for
another GPU or TensorRT version never matches the key. Imports are lazy: on machines
without CUDA/TensorRT, ``available()`` returns the reason and nothing else is touched.
fp16 engines are verified against eager fp32 with a 1e-2 relative tolerance.
"""
from __future__ import annotations

import abc
import importlib.util
import time

import torch

from .base import BackendError, cuda_unavailable_reason
from .cache import EngineCache, EngineKey, code_digest, device_name, library_versions, weights_digest
from .graph import GraphBackend, GraphSpec, UnrolledSampler
from .onnx import export_onnx


def _torch_dtype(trt, dtype) -> torch.dtype:
    table = {trt.DataType.FLOAT: torch.float32, trt.DataType.HALF: torch.float16, trt.DataType.INT32: torch.int32}
    if hasattr(trt.DataType, "BF16"):
        table[trt.DataType.BF16] = torch.bfloat16
    if dtype not in table:
        raise BackendError(f"TensorRT engine tensor of unsupported type {dtype}")
    return table[dtype]


class EngineBackend(GraphBackend):
    """Runs serialised TensorRT engines; subclasses produce the bytes (``_engine_bytes``)."""

    fp16_capable = True
    extension = "engine"
    libraries: tuple = ("tensorrt",)

    def __init__(self, policy, device: str = "cuda", cache_dir=None, *, workspace_gib: float = 2.0, **kwargs):
        super().__init__(policy, device, cache_dir, **kwargs)
        if not self.device.startswith("cuda"):
            raise ValueError(f"{self.name} needs a CUDA device, got {self.device!r}")
        self.workspace_gib = float(workspace_gib)
        self.cache = EngineCache(cache_dir) if cache_dir is not None else None
        self.policy.to(self.device)
        self._keep = []  # runtimes, engines, contexts and their buffers stay alive here

    @classmethod
    def available(cls, device: str = "cuda") -> tuple[bool, str]:
        reason = cuda_unavailable_reason(device)
        if reason:
            return False, reason
        for lib in cls.libraries:
            if importlib.util.find_spec(lib) is None:
                return False, f"the {lib} package is not installed (pip install -e '.[gpu]')"
        return True, ""

    def _key(self, spec: GraphSpec, example_inputs: list) -> EngineKey:
        s = spec.settings
        return EngineKey(
            backend=self.name, weights_sha256=weights_digest(self.policy), code_sha256=code_digest(),
            device=device_name(self.device), versions=library_versions(*self.libraries),
            precision=self.precision, shapes={n: list(x.shape) for n, x in zip(spec.input_names, example_inputs)},
            sampler={"sampler": s.sampler, "num_steps": s.num_steps, "eta": s.eta, "guidance_scale": s.guidance_scale},
            extra={"workspace_gib": self.workspace_gib})

    @abc.abstractmethod
    def _build_engine(self, spec: GraphSpec, example_inputs: list) -> bytes:
        """Serialised engine bytes for ``spec`` (slow: minutes for big models)."""

    def _engine_bytes(self, spec: GraphSpec, example_inputs: list) -> bytes:
        key = self._key(spec, example_inputs)
        data = self.cache.load(key, self.extension) if self.cache is not None else None
        if data is not None:
            self.build_info[spec] = {"cache": "hit"}
            self.report(f"{self.name}: {spec.settings.label} engine loaded from the engine cache")
            return data
        self.report(f"{self.name}: building the {spec.settings.label} {self.precision} engine "
                    f"(not in the engine cache)")
        t = time.perf_counter()
        data = self._build_engine(spec, example_inputs)
        self.build_info[spec] = {"cache": "miss" if self.cache is not None else "off",
                                 "build_s": time.perf_counter() - t}
        self.report(f"{self.name}: engine built in {self.build_info[spec]['build_s']:.1f} s")
        if self.cache is not None:
            self.cache.store(key, self.extension, data)
        return data

    def _build(self, spec: GraphSpec, example_inputs: list):
        import tensorrt as trt

        data = self._engine_bytes(spec, example_inputs)
        runtime = trt.Runtime(trt.Logger(trt.Logger.WARNING))
        engine = runtime.deserialize_cuda_engine(data)
        if engine is None:
            raise BackendError(f"{self.name}: TensorRT could not deserialise the engine (corrupt or built elsewhere)")
        context = engine.create_execution_context()
        dev = torch.device(self.device)
        io = [engine.get_tensor_name(i) for i in range(engine.num_io_tensors)]
        ins = [n for n in io if engine.get_tensor_mode(n) == trt.TensorIOMode.INPUT]
        outs = [n for n in io if engine.get_tensor_mode(n) == trt.TensorIOMode.OUTPUT]
        if len(ins) != len(example_inputs) or len(outs) != 1:
            raise BackendError(f"{self.name}: engine has inputs {ins} and outputs {outs}; expected "
                               f"{len(example_inputs)} inputs ({spec.input_names}) and one output")
        if set(ins) == set(spec.input_names):
            ins = list(spec.input_names)  # bind by name; otherwise by position (torch.export order)
        buffers = {}  # static device buffers the engine reads and writes
        for n, x in zip(ins, example_inputs):
            buffers[n] = x.to(dev, _torch_dtype(trt, engine.get_tensor_dtype(n))).contiguous().clone()
        out_name = outs[0]
        buffers[out_name] = torch.empty(tuple(engine.get_tensor_shape(out_name)),  # [B, T_p, D_a]
                                        dtype=_torch_dtype(trt, engine.get_tensor_dtype(out_name)), device=dev)
        for n, buf in buffers.items():
            context.set_tensor_address(n, buf.data_ptr())
        stream = torch.cuda.Stream(device=dev)
        self._keep.append((runtime, engine, context, buffers, stream))

        def run(inputs: list) -> torch.Tensor:
            for n, x in zip(ins, inputs):
                buffers[n].copy_(x)
            stream.wait_stream(torch.cuda.current_stream(dev))
            if not context.execute_async_v3(stream.cuda_stream):
                raise BackendError(f"{self.name}: TensorRT execution failed")
            torch.cuda.current_stream(dev).wait_stream(stream)
            return buffers[out_name].float().cpu()

        return run

    def close(self) -> None:
        self._keep.clear()
        self._graphs.clear()


class TensorRTBackend(EngineBackend):
    """The ONNX-parser route (see module docstring)."""

    name = "tensorrt"
    libraries = ("tensorrt", "onnx")

    def _build_engine(self, spec: GraphSpec, example_inputs: list) -> bytes:
        import tensorrt as trt

        dev = torch.device(self.device)
        module = UnrolledSampler(self.policy, spec)
        onnx_bytes = export_onnx(module, [x.to(dev) for x in example_inputs], spec.input_names, ["actions"])
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
            if not hasattr(trt.BuilderFlag, "FP16"):
                raise BackendError(f"TensorRT {trt.__version__} has no weakly typed FP16 flag; "
                                   "use the torch_tensorrt backend for fp16")
            config.set_flag(trt.BuilderFlag.FP16)
        serialized = builder.build_serialized_network(network, config)
        if serialized is None:
            raise BackendError("TensorRT engine build failed (see the TensorRT log above)")
        return bytes(serialized)
