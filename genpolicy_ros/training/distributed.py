"""Several training processes under ``torchrun`` (data parallel).

``torchrun --nproc_per_node N -m genpolicy_ros.cli train ...`` starts N copies of the
trainer with the environment variables ``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK``,
``MASTER_ADDR`` and ``MASTER_PORT`` set. :func:`init_from_env` joins the process group
(``gloo`` on CPU, ``nccl`` when training on CUDA), each rank draws a disjoint shard of
every epoch (:class:`StepBatchSampler`, built on ``DistributedSampler``), and
:class:`LossModule` wrapped in ``DistributedDataParallel`` averages gradients, so the
ranks keep identical weights (DDP broadcasts rank 0's weights when it wraps). Only rank 0
writes files. Without those variables everything degrades to a single process.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Iterator, List

import torch
import torch.distributed as dist
from torch import nn
from torch.utils.data import DistributedSampler, Sampler


@dataclass(frozen=True)
class DistInfo:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    device: torch.device = torch.device("cpu")

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def enabled(self) -> bool:
        return self.world_size > 1


def resolve_device(name: str, local_rank: int = 0) -> torch.device:
    """``auto`` → this rank's CUDA device when available, else CPU."""
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    if name == "cuda":
        if not torch.cuda.is_available():
            raise RuntimeError("device 'cuda' requested but torch.cuda.is_available() is False")
        return torch.device("cuda", local_rank % torch.cuda.device_count())
    device = torch.device(name)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise RuntimeError(f"device {name!r} requested but torch.cuda.is_available() is False")
    return device


def init_from_env(device: str = "auto") -> DistInfo:
    """Join the ``torchrun`` process group if ``WORLD_SIZE`` > 1; return this rank's info."""
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    dev = resolve_device(device, local_rank)
    if world_size > 1:
        if dev.type == "cuda":
            torch.cuda.set_device(dev)
        backend = "nccl" if dev.type == "cuda" else "gloo"
        if not dist.is_initialized():
            dist.init_process_group(backend=backend, init_method="env://", rank=rank, world_size=world_size)
    return DistInfo(rank=rank, world_size=world_size, local_rank=local_rank, device=dev)


def shutdown(info: DistInfo) -> None:
    if info.enabled and dist.is_initialized():
        dist.destroy_process_group()


def barrier(info: DistInfo) -> None:
    if info.enabled:
        dist.barrier()


def all_reduce_mean(value: float, info: DistInfo) -> float:
    """Mean of a Python float over the ranks (the value itself in a single process)."""
    if not info.enabled:
        return float(value)
    t = torch.tensor([float(value)], dtype=torch.float64, device=info.device)  # [1]
    dist.all_reduce(t, op=dist.ReduceOp.SUM)
    return float(t.item()) / info.world_size


def all_gather_tensor(tensor: torch.Tensor, info: DistInfo) -> List[torch.Tensor]:
    """Same-shape tensors from every rank, on the CPU, in rank order."""
    if not info.enabled:
        return [tensor.detach().cpu()]
    local = tensor.detach().to(info.device)
    out = [torch.empty_like(local) for _ in range(info.world_size)]
    dist.all_gather(out, local)
    return [t.cpu() for t in out]


class LossModule(nn.Module):
    """``forward(batch) = policy.loss(batch)``, so that DDP's gradient hooks see the call."""

    def __init__(self, policy: nn.Module):
        super().__init__()
        self.policy = policy

    def forward(self, batch):
        return self.policy.loss(batch)


def wrap(policy: nn.Module, info: DistInfo) -> nn.Module:
    """A module whose ``forward(batch)`` returns ``policy.loss(batch)``; DDP-wrapped if distributed.

    ``static_graph=True``: the set of parameters a policy uses is the same every step
    (e.g. the null-condition embedding is used on every step when ``cond_dropout > 0`` and
    never when it is 0), so DDP learns it from the first step; no per-step graph search.
    """
    module = LossModule(policy)
    if not info.enabled:
        return module
    device_ids = [info.device.index] if info.device.type == "cuda" else None
    return nn.parallel.DistributedDataParallel(module, device_ids=device_ids, static_graph=True)


class StepBatchSampler(Sampler[List[int]]):
    """Endless batches of dataset indices, a pure function of (seed, step, rank, world size).

    Epoch ``e`` is a ``DistributedSampler(shuffle=True, seed, drop_last=True)`` permutation
    with ``set_epoch(e)``; this rank's share is cut into ``batches_per_epoch`` full batches.
    Iteration starts at optimiser step ``start_step``, so a resumed run sees exactly the
    batches it would have seen without the interruption.
    """

    def __init__(self, num_samples: int, batch_size: int, seed: int, info: DistInfo = DistInfo(),
                 start_step: int = 0):
        self.num_samples = int(num_samples)
        self.batch_size = int(batch_size)
        self.seed = int(seed)
        self.info = info
        self.start_step = int(start_step)
        per_rank = self.num_samples // info.world_size
        self.batches_per_epoch = per_rank // self.batch_size
        if self.batches_per_epoch < 1:
            raise ValueError(
                f"the data set has {self.num_samples} windows ({per_rank} per process with "
                f"{info.world_size} process(es)), fewer than batch_size {self.batch_size}: "
                "lower --batch-size or add episodes"
            )

    def _epoch_indices(self, epoch: int) -> List[int]:
        sampler = DistributedSampler(
            range(self.num_samples),
            num_replicas=self.info.world_size,
            rank=self.info.rank,
            shuffle=True,
            seed=self.seed,
            drop_last=True,
        )
        sampler.set_epoch(epoch)
        return list(sampler)

    def batch_at(self, step: int) -> List[int]:
        epoch, k = divmod(step, self.batches_per_epoch)
        idx = self._epoch_indices(epoch)
        return idx[k * self.batch_size:(k + 1) * self.batch_size]

    def epoch_of(self, step: int) -> int:
        return step // self.batches_per_epoch

    def __iter__(self) -> Iterator[List[int]]:
        step = self.start_step
        epoch, k = divmod(step, self.batches_per_epoch)
        while True:
            idx = self._epoch_indices(epoch)
            for b in range(k, self.batches_per_epoch):
                yield idx[b * self.batch_size:(b + 1) * self.batch_size]
            epoch, k = epoch + 1, 0
