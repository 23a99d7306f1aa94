"""The denoiser interface shared by every network that samplers call.

    forward(sample [B, T_p, D_a], timestep [B] float, cond [B, T_o, F]) -> [B, T_p, D_a]

``forward`` = :meth:`Denoiser.check_inputs` + :meth:`Denoiser.denoise`. A direct call is
checked; a sampler checks the shapes once per chunk and runs its 10–40 calls inside
:meth:`Denoiser.inputs_checked`, so that no check runs in the step loop (or in a traced
graph). The calls still go through ``nn.Module.__call__`` (hooks keep working).
"""
from __future__ import annotations

import contextlib
from typing import Iterator

import torch
from torch import nn


class Denoiser(nn.Module):
    """Base class: subclasses implement ``check_inputs`` (raise ``ValueError`` on shapes
    that do not fit the network) and ``denoise`` (the computation, no checks)."""

    def __init__(self) -> None:
        super().__init__()
        self._inputs_checked = False  # plain attribute, not state

    def check_inputs(self, sample: torch.Tensor, timestep: torch.Tensor, cond: torch.Tensor | None) -> None:
        raise NotImplementedError

    def denoise(self, sample: torch.Tensor, timestep: torch.Tensor, cond: torch.Tensor | None) -> torch.Tensor:
        raise NotImplementedError

    @contextlib.contextmanager
    def inputs_checked(self) -> Iterator[None]:
        """Inside this block ``forward`` skips :meth:`check_inputs`: the caller checked the
        shapes of the (fixed-shape) calls it is about to make."""
        previous, self._inputs_checked = self._inputs_checked, True
        try:
            yield
        finally:
            self._inputs_checked = previous

    def forward(self, sample: torch.Tensor, timestep: torch.Tensor, cond: torch.Tensor | None = None) -> torch.Tensor:
        if not self._inputs_checked:
            self.check_inputs(sample, timestep, cond)
        return self.denoise(sample, timestep, cond)
