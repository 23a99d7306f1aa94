"""``torch_tensorrt`` backend: ``torch.export`` of the unrolled sampler → one serialised engine.

``torch_tensorrt.dynamo.convert_exported_program_to_serialized_trt_engine`` compiles the
whole exported program (encoder + N denoiser evaluations + N solver updates) into one
TensorRT engine and returns its bytes; those are cached and run exactly like the ONNX
route's engines (:class:`~.tensorrt.EngineBackend`), so the cache stays pickle-free.

Precision: fp32 as exported; fp16 through Torch-TensorRT's rule-based autocast
(``use_explicit_typing`` + ``enable_autocast``, newer releases) or, on releases without
it, the weakly typed ``enabled_precisions={float16}``. Which keywords a release takes is
read from its signature, so one code path serves several releases; an unknown release
fails verification loudly rather than building the wrong precision.
"""
from __future__ import annotations

import dataclasses
import inspect

import torch

from .base import BackendError
from .graph import GraphSpec, UnrolledSampler
from .tensorrt import EngineBackend


def conversion_kwargs(accepted: set[str], precision: str, example_inputs: list, workspace_bytes: int) -> dict:
    """Keyword arguments for the converter, given the names this release accepts."""
    kwargs: dict = {"arg_inputs" if "arg_inputs" in accepted else "inputs": list(example_inputs)}
    if "workspace_size" in accepted:
        kwargs["workspace_size"] = int(workspace_bytes)
    if precision == "fp16":
        low = next((n for n in ("low_precision_type", "autocast_low_precision_type") if n in accepted), None)
        if "enable_autocast" in accepted and low is not None:
            kwargs.update(use_explicit_typing=True, enable_autocast=True, **{low: torch.float16})
        elif "enabled_precisions" in accepted:
            kwargs["enabled_precisions"] = {torch.float16, torch.float32}
            if "use_explicit_typing" in accepted:
                kwargs["use_explicit_typing"] = False
        else:
            raise BackendError("this torch_tensorrt release offers neither autocast nor enabled_precisions for fp16")
    return kwargs


class TorchTensorRTBackend(EngineBackend):
    name = "torch_tensorrt"
    libraries = ("tensorrt", "torch_tensorrt")

    def _build_engine(self, spec: GraphSpec, example_inputs: list) -> bytes:
        import torch_tensorrt

        dev = torch.device(self.device)
        inputs = [x.to(dev) for x in example_inputs]
        module = UnrolledSampler(self.policy, spec).eval()
        try:
            with torch.no_grad():
                exported = torch.export.export(module, tuple(inputs))
        except Exception as exc:  # noqa: BLE001 - torch.export raises many types
            raise BackendError(f"torch.export of the {spec.settings.label} sampler failed: {exc}") from exc
        convert = torch_tensorrt.dynamo.convert_exported_program_to_serialized_trt_engine
        accepted = set(inspect.signature(convert).parameters)
        settings_cls = getattr(torch_tensorrt.dynamo, "CompilationSettings", None)
        if settings_cls is not None and dataclasses.is_dataclass(settings_cls):
            accepted |= {f.name for f in dataclasses.fields(settings_cls)}
        kwargs = conversion_kwargs(accepted, self.precision, inputs, int(self.workspace_gib * (1 << 30)))
        data = convert(exported, **kwargs)
        if not data:
            raise BackendError("torch_tensorrt returned an empty engine")
        return bytes(data)
