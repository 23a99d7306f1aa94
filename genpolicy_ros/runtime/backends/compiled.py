"""torch.compile backend (TorchInductor; C++/OpenMP kernels on CPU, Triton on GPU).

``scope="network"`` (default) compiles the denoiser once (static shapes: one graph reused
for every step) and keeps the policy's Python step loop; ``scope="sampler"`` compiles the
whole unrolled sampler (longer compile, no Python between steps). The policy lives on
``device`` (inputs are moved there, outputs come back to the CPU); fp16 runs under
``torch.autocast`` on CUDA. Inductor keeps its own on-disk cache
(``TORCHINDUCTOR_CACHE_DIR``); nothing is written to the engine cache. Compilation happens
in :meth:`prepare` (tens of seconds on 2 cores), never mid-run.
"""
from __future__ import annotations

import shutil

import torch

from .graph import GraphBackend, GraphSpec, UnrolledSampler, swapped_network


class CompiledBackend(GraphBackend):
    name = "compile"
    scopes = ("network", "sampler")
    fp16_capable = True

    def __init__(self, policy, device: str = "cpu", cache_dir=None, *, scope: str = "network",
                 mode: str | None = None, **kwargs):
        super().__init__(policy, device, cache_dir, **kwargs)
        if scope not in self.scopes:
            raise ValueError(f"compile scope must be one of {list(self.scopes)}, got {scope!r}")
        self.scope = scope
        self.mode = mode
        self.policy.to(self.device)
        self._compiled_net = None

    @classmethod
    def available(cls, device: str = "cpu") -> tuple[bool, str]:
        if not hasattr(torch, "compile"):
            return False, f"torch {torch.__version__} has no torch.compile"
        try:
            import torch._dynamo as dynamo  # noqa: F401
        except Exception as exc:  # noqa: BLE001
            return False, f"torch._dynamo unavailable ({exc})"
        if str(device).startswith("cuda"):
            if not torch.cuda.is_available():
                return False, f"torch {torch.__version__} sees no CUDA device"
        elif not (shutil.which("g++") or shutil.which("c++") or shutil.which("clang++")):
            return False, "no C++ compiler on PATH (TorchInductor needs one for CPU kernels)"
        return True, ""

    def describe(self) -> str:
        return f"{self.name}[{self.scope}] on {self.device} ({self.precision})"

    def _on_clone(self) -> None:
        self._compiled_net = None  # a clone compiles its own copy of the network

    def _build(self, spec: GraphSpec, example_inputs: list):
        self.report(f"compile: compiling the {spec.settings.label} {self.scope} (TorchInductor)")
        module = UnrolledSampler(self.policy, spec)
        self.build_info[spec] = {"cache": "inductor"}
        dev = torch.device(self.device)
        autocast = self.autocast

        if self.scope == "sampler":
            compiled = torch.compile(module, dynamic=False, mode=self.mode)

            def run(inputs):
                with torch.inference_mode(), autocast():
                    return compiled(*[x.to(dev) for x in inputs]).float().cpu()

            return run

        if self._compiled_net is None:
            self._compiled_net = torch.compile(self.policy.network, dynamic=False, mode=self.mode)
        net, policy = self._compiled_net, self.policy

        def run(inputs):
            with torch.inference_mode(), autocast(), swapped_network(policy, net):
                return module(*[x.to(dev) for x in inputs]).float().cpu()

        return run
