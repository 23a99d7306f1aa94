"""Training: configs, EMA, LR schedule, the training loop and multi-process support.

``genpolicy train`` (``training/cli_train.py``) wires these to an episode data set.
"""
from .config import EMAConfig, TrainConfig
from .ema import EMA, ema_decay
from .schedule import WarmupCosineSchedule, lr_multiplier
from .trainer import Trainer, TrainResult, latest_checkpoint

__all__ = [
    "EMAConfig",
    "TrainConfig",
    "EMA",
    "ema_decay",
    "WarmupCosineSchedule",
    "lr_multiplier",
    "Trainer",
    "TrainResult",
    "latest_checkpoint",
]
