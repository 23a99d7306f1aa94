"""CUDA-graph backend: the WHOLE N-step sampler captured once and replayed.

On a GPU, eager batch-1 inference is launch-bound (~200 kernels per U-Net evaluation × N
steps, each a few µs of Python + launch). ``torch.cuda.graphs`` records every kernel of
one ``policy.sample`` call (encoder, N denoiser evaluations, N solver updates) into one
graph; a chunk is then: copy inputs into the static buffers, one ``replay()``, copy the
output out. Shapes, sampler and steps are fixed per captured graph (see
:class:`~.base.GraphSpec`); other settings run eager (``last_path`` says so).

Capture rules respected here: inputs live in static device buffers, warm-up runs happen
on a side stream before capture, and nothing in the captured call may synchronise with
the CPU (``.item()``, host tensors) — a policy that does fails verification in
``prepare`` and the ``auto`` backend moves on to the next candidate. fp16 is captured
under ``torch.autocast`` (its weight-cast cache off, as capture requires).
"""
from __future__ import annotations

import torch

from .base import BackendError, cuda_unavailable_reason
from .graph import GraphBackend, GraphSpec, UnrolledSampler


class CudaGraphBackend(GraphBackend):
    name = "cuda_graph"
    fp16_capable = True

    def __init__(self, policy, device: str = "cuda", cache_dir=None, *, warmup_iters: int = 3, **kwargs):
        super().__init__(policy, device, cache_dir, **kwargs)
        if not self.device.startswith("cuda"):
            raise ValueError(f"cuda_graph needs a CUDA device, got {self.device!r}")
        self.warmup_iters = int(warmup_iters)
        self.policy.to(self.device)
        self._graph_objects = []  # keep graphs and their static buffers alive

    @classmethod
    def available(cls, device: str = "cuda") -> tuple[bool, str]:
        reason = cuda_unavailable_reason(device)
        if reason:
            return False, reason
        return True, ""

    def _build(self, spec: GraphSpec, example_inputs: list):
        self.report(f"cuda_graph: capturing the {spec.settings.label} sampler")
        dev = torch.device(self.device)
        module = UnrolledSampler(self.policy, spec)
        static_in = [x.to(dev).clone() for x in example_inputs]  # captured input buffers
        side = torch.cuda.Stream(device=dev)
        side.wait_stream(torch.cuda.current_stream(dev))
        try:
            with torch.cuda.stream(side), torch.no_grad(), self.autocast():
                for _ in range(max(1, self.warmup_iters)):  # allocator/cuDNN warm-up before capture
                    module(*static_in)
            torch.cuda.current_stream(dev).wait_stream(side)
            graph = torch.cuda.CUDAGraph()
            with torch.no_grad(), torch.cuda.graph(graph), self.autocast():
                static_out = module(*static_in)  # [B, T_p, D_a], captured output buffer
        except Exception as exc:  # noqa: BLE001 - capture errors come in many types
            raise BackendError(f"CUDA graph capture of the sampler failed: {exc}") from exc
        self._graph_objects.append((graph, static_in, static_out))
        self.build_info[spec] = {"cache": "n/a (captured in memory)"}

        def run(inputs: list) -> torch.Tensor:
            for buf, x in zip(static_in, inputs):
                buf.copy_(x, non_blocking=True)
            graph.replay()
            return static_out.float().cpu()  # synchronises with the replay

        return run

    def close(self) -> None:
        self._graph_objects.clear()
        self._graphs.clear()
