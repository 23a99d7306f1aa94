"""Networks: denoisers with the common interface (:class:`~.base.Denoiser`)

    forward(sample [B, T_p, D_a], timestep [B] float, cond [B, T_o, F]) -> [B, T_p, D_a]
    (= check_inputs + denoise)

and the observation encoders that produce ``cond``. ``build_denoiser`` is the registry
used by the policy and by checkpoint loading (config dicts come from config.json).
"""
from __future__ import annotations

from torch import nn

from .base import Denoiser
from .dit import DiTConfig, TransformerDenoiser
from .embeddings import MLP, SinusoidalTimeEmbedding, sinusoidal_embedding
from .obs_encoder import ObsEncoderConfig, ObservationEncoder
from .proprio import ProprioMLP
from .unet1d import ConditionalUnet1D, UNet1DConfig
from .vision import (
    KeypointConvEncoder,
    KeypointEncoder,
    ResNetEncoder,
    SpatialSoftmax,
    VisionEncoderConfig,
    build_vision_encoder,
)

# name -> (config dataclass, network class)
DENOISERS = {
    "unet1d": (UNet1DConfig, ConditionalUnet1D),
    "dit": (DiTConfig, TransformerDenoiser),
}


def build_denoiser(name: str, **cfg) -> nn.Module:
    """Build a denoiser by registry name from its config fields, e.g.
    ``build_denoiser("unet1d", action_dim=7, horizon=16, cond_dim=2 * 64)``."""
    if name not in DENOISERS:
        raise ValueError(f"unknown denoiser {name!r}; choose one of {sorted(DENOISERS)}")
    config_cls, net_cls = DENOISERS[name]
    try:
        config = config_cls(**cfg)
    except TypeError as e:  # unknown / missing field: name the config class
        raise TypeError(f"build_denoiser({name!r}): bad config for {config_cls.__name__}: {e}") from None
    return net_cls(config)


def count_parameters(module: nn.Module, trainable_only: bool = True) -> int:
    """Number of (trainable) parameter entries of ``module``."""
    return sum(p.numel() for p in module.parameters() if p.requires_grad or not trainable_only)


__all__ = [
    "DENOISERS",
    "Denoiser",
    "build_denoiser",
    "count_parameters",
    "UNet1DConfig",
    "ConditionalUnet1D",
    "DiTConfig",
    "TransformerDenoiser",
    "VisionEncoderConfig",
    "ResNetEncoder",
    "KeypointEncoder",
    "KeypointConvEncoder",
    "build_vision_encoder",
    "SpatialSoftmax",
    "ProprioMLP",
    "ObsEncoderConfig",
    "ObservationEncoder",
    "MLP",
    "SinusoidalTimeEmbedding",
    "sinusoidal_embedding",
]
