"""Training hyper-parameters, validated on construction.

Defaults follow Diffusion Policy (Chi et al. 2023, arXiv 2303.04137): AdamW with
lr 1e-4, weight decay 1e-6, betas (0.95, 0.999); cosine schedule with linear warm-up;
an EMA of the weights with power 0.75 and max decay 0.9999, used for inference.
``batch_size`` is per process: under ``torchrun`` with W processes an optimiser step
sees ``W · batch_size`` windows.
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field, fields
from typing import Optional, Tuple


def _check_int(owner: str, name: str, value, minimum: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ValueError(f"{owner}.{name} must be an int >= {minimum}, got {value!r}")


def _check_float(owner: str, name: str, value, minimum: float, maximum: float = math.inf,
                 min_inclusive: bool = True) -> None:
    ok = (
        not isinstance(value, bool)
        and isinstance(value, (int, float))
        and math.isfinite(value)
        and (value >= minimum if min_inclusive else value > minimum)
        and value <= maximum
    )
    if not ok:
        lo = "[" if min_inclusive else "("
        raise ValueError(f"{owner}.{name} must be a finite number in {lo}{minimum}, {maximum}], got {value!r}")


@dataclass
class EMAConfig:
    """EMA of the weights: decay(k) = clamp(1 − (1 + k/inv_gamma)^(−power), min_decay, max_decay),
    k = optimiser steps after ``update_after_step`` (Diffusion Policy's ``EMAModel``)."""

    enabled: bool = True
    power: float = 0.75
    max_decay: float = 0.9999
    min_decay: float = 0.0
    inv_gamma: float = 1.0
    update_after_step: int = 0

    def __post_init__(self):
        if not isinstance(self.enabled, bool):
            raise ValueError(f"EMAConfig.enabled must be a bool, got {self.enabled!r}")
        _check_float("EMAConfig", "power", self.power, 0.0, min_inclusive=False)
        _check_float("EMAConfig", "max_decay", self.max_decay, 0.0, 1.0)
        _check_float("EMAConfig", "min_decay", self.min_decay, 0.0, 1.0)
        if self.min_decay > self.max_decay:
            raise ValueError(
                f"EMAConfig.min_decay ({self.min_decay}) must be <= max_decay ({self.max_decay})"
            )
        _check_float("EMAConfig", "inv_gamma", self.inv_gamma, 0.0, min_inclusive=False)
        _check_int("EMAConfig", "update_after_step", self.update_after_step, 0)


@dataclass
class TrainConfig:
    """Everything the training loop needs besides the policy config and the data."""

    steps: int = 2000
    batch_size: int = 64
    lr: float = 1e-4
    weight_decay: float = 1e-6
    betas: Tuple[float, float] = (0.95, 0.999)
    warmup_steps: int = 100
    min_lr_ratio: float = 0.0  # cosine ends at lr · min_lr_ratio
    grad_clip_norm: float = 0.0  # 0 disables clipping
    ema: EMAConfig = field(default_factory=EMAConfig)
    save_every: int = 500  # checkpoint period in steps; 0 = only the final one
    keep_checkpoints: int = 3  # newest checkpoints kept; 0 = keep all
    log_every: int = 10
    seed: int = 0
    num_workers: int = 0
    device: str = "auto"  # auto | cpu | cuda | cuda:N
    pad_after: Optional[int] = None  # action rows allowed past an episode end (None = T_p − 1)

    def __post_init__(self):
        if isinstance(self.ema, dict):
            self.ema = EMAConfig(**_known(EMAConfig, self.ema, "TrainConfig.ema"))
        if not isinstance(self.ema, EMAConfig):
            raise ValueError(f"TrainConfig.ema must be an EMAConfig or dict, got {type(self.ema).__name__}")
        _check_int("TrainConfig", "steps", self.steps, 1)
        _check_int("TrainConfig", "batch_size", self.batch_size, 1)
        _check_float("TrainConfig", "lr", self.lr, 0.0, min_inclusive=False)
        _check_float("TrainConfig", "weight_decay", self.weight_decay, 0.0)
        if not isinstance(self.betas, (list, tuple)) or len(self.betas) != 2:
            raise ValueError(f"TrainConfig.betas must be two numbers in [0, 1), got {self.betas!r}")
        for b in self.betas:
            _check_float("TrainConfig", "betas", b, 0.0, 1.0)
            if b >= 1.0:
                raise ValueError(f"TrainConfig.betas must be two numbers in [0, 1), got {self.betas!r}")
        self.betas = (float(self.betas[0]), float(self.betas[1]))
        _check_int("TrainConfig", "warmup_steps", self.warmup_steps, 0)  # cut to steps when longer
        _check_float("TrainConfig", "min_lr_ratio", self.min_lr_ratio, 0.0, 1.0)
        _check_float("TrainConfig", "grad_clip_norm", self.grad_clip_norm, 0.0)
        _check_int("TrainConfig", "save_every", self.save_every, 0)
        _check_int("TrainConfig", "keep_checkpoints", self.keep_checkpoints, 0)
        _check_int("TrainConfig", "log_every", self.log_every, 1)
        _check_int("TrainConfig", "seed", self.seed, 0)
        _check_int("TrainConfig", "num_workers", self.num_workers, 0)
        if not isinstance(self.device, str) or not (
            self.device in ("auto", "cpu", "cuda") or self.device.startswith("cuda:")
        ):
            raise ValueError(f"TrainConfig.device must be auto, cpu, cuda or cuda:N, got {self.device!r}")
        if self.pad_after is not None:
            _check_int("TrainConfig", "pad_after", self.pad_after, 0)

    def to_dict(self) -> dict:
        d = asdict(self)
        d["betas"] = list(self.betas)
        return d

    @classmethod
    def from_dict(cls, data: dict) -> "TrainConfig":
        return cls(**_known(cls, data, "TrainConfig"))


def _known(cls, data, owner: str) -> dict:
    if not isinstance(data, dict):
        raise ValueError(f"{owner}: expected a mapping, got {type(data).__name__}")
    names = {f.name for f in fields(cls)}
    unknown = sorted(set(data) - names)
    if unknown:
        raise ValueError(f"{owner}: unknown keys {unknown} (known: {sorted(names)})")
    return dict(data)
