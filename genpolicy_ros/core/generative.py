"""The three ways a policy turns its denoiser into actions: FlowMatching, Diffusion, Regression.

Each is built once from the :class:`~genpolicy_ros.core.config.PolicyConfig`
(:func:`build_method`) and offers the same two operations, in the normalised action space:

    loss(predict, x1, generator=None, coupling_cond=None) -> scalar training loss
    sample(predict, x_init, options, prefix=None, generator=None) -> x [B, T_p, D_a]

``predict(x [B, T_p, D_a], timestep [B] float) -> [B, T_p, D_a]`` is the network with the
condition closed over (classifier-free guidance included at sampling); the methods know
nothing of observations, normalisers or parameters. The layering follows LeRobot's
diffusion policy (policy → model → network) and flow_matching's nouns (path, solver with
a time grid): the policy owns the network and the data, a method owns the path /
schedule and the solver.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Optional

import torch
import torch.nn.functional as F

from . import coupling as coupling_mod
from .config import DiffusionConfig, FlowConfig, PolicyConfig
from .diffusion import ddim_sample, ddpm_sample, q_sample, training_target
from .flow import LinearPath, integrate, sample_time
from .inpainting import PrefixConstraint
from .schedules import NoiseSchedule

Predict = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


@dataclass(frozen=True)
class SampleOptions:
    """Per-chunk sampler settings (``None`` = the method's default from the config).

    ``sampler``: one of the method's ``samplers``; ``num_steps``: solver / denoising steps;
    ``method``: ODE method (flow); ``eta``: DDIM η (diffusion).
    """

    sampler: str
    num_steps: Optional[int] = None
    method: Optional[str] = None
    eta: Optional[float] = None


class FlowMatching:
    """Conditional flow matching (Lipman et al. 2023) on the linear path ``x_t = t·x1 +
    (1−t)·x0``, velocity target ``x1 − x0``, optional minibatch OT coupling (Tong et al.
    2023; condition-aware C²OT, arXiv 2503.10636); sampled by integrating t: 0 → 1."""

    kind = "flow"
    samplers = ("flow",)
    needs_noise = True
    uses_condition_dropout = True

    def __init__(self, config: FlowConfig):
        self.config = config

    def loss(self, predict: Predict, x1: torch.Tensor, generator: Optional[torch.Generator] = None,
             coupling_cond: Optional[torch.Tensor] = None) -> torch.Tensor:
        """``‖v_θ(x_t, t·s) − (x1 − x0)‖²`` with ``t`` from ``config.time_distribution``
        (s = ``flow_time_scale``); ``coupling_cond [B, ...]`` is the (detached) condition
        the ``ot_cond`` coupling pairs by."""
        fc, B = self.config, x1.shape[0]
        x0 = torch.randn(x1.shape, generator=generator, device=x1.device)  # [B, T_p, D_a] noise
        if fc.coupling != "independent":
            if fc.coupling == "ot_cond":
                perm = coupling_mod.ot_coupling(x0, x1, cond=coupling_cond.reshape(B, -1),
                                                cond_weight=fc.ot_cond_weight)  # [B]
            else:  # ot_blind: the ablation that ignores the condition
                perm = coupling_mod.ot_coupling(x0, x1)  # [B]
            x0 = x0[perm]
        t = sample_time(B, fc.time_distribution, generator=generator, device=x1.device,
                        **fc.time_params)  # [B] in [0, 1]
        x_t = LinearPath.interpolate(x0, x1, t)  # [B, T_p, D_a]
        target = LinearPath.target_velocity(x0, x1)  # [B, T_p, D_a]
        return F.mse_loss(predict(x_t, t * fc.flow_time_scale), target)

    def sample(self, predict: Predict, x_init: torch.Tensor, options: SampleOptions,
               prefix: Optional[PrefixConstraint] = None, generator: Optional[torch.Generator] = None) -> torch.Tensor:
        fc = self.config
        scale = fc.flow_time_scale

        def velocity(x, t):  # t: [B] float in [0, 1]
            return predict(x, t * scale)

        return integrate(velocity, x_init, options.num_steps or fc.default_steps,
                         options.method or fc.default_method, prefix=prefix)


class Diffusion:
    """DDPM training (Ho et al. 2020) with ε / x0 / v targets, sampled with DDIM (Song et
    al. 2021) or ancestral DDPM: the Diffusion Policy recipe (Chi et al. 2023)."""

    kind = "diffusion"
    samplers = ("ddim", "ddpm")
    needs_noise = True
    uses_condition_dropout = True

    def __init__(self, config: DiffusionConfig):
        self.config = config
        self.schedule = NoiseSchedule(num_train_steps=config.num_train_steps, beta_schedule=config.beta_schedule,
                                      beta_start=config.beta_start, beta_end=config.beta_end)

    def loss(self, predict: Predict, x1: torch.Tensor, generator: Optional[torch.Generator] = None,
             coupling_cond: Optional[torch.Tensor] = None) -> torch.Tensor:
        """``‖f_θ(q(x_k | x0), k) − target‖²`` with target ε, x0 or v."""
        dc, B = self.config, x1.shape[0]
        noise = torch.randn(x1.shape, generator=generator, device=x1.device)  # [B, T_p, D_a]
        k = torch.randint(0, dc.num_train_steps, (B,), generator=generator, device=x1.device)  # [B] long
        x_k = q_sample(self.schedule, x1, noise, k)  # [B, T_p, D_a]
        target = training_target(self.schedule, x1, noise, k, dc.prediction_type)
        return F.mse_loss(predict(x_k, k.to(x1.dtype)), target)

    def sample(self, predict: Predict, x_init: torch.Tensor, options: SampleOptions,
               prefix: Optional[PrefixConstraint] = None, generator: Optional[torch.Generator] = None) -> torch.Tensor:
        dc = self.config

        def model_fn(x, k):  # k: [B] long diffusion step
            return predict(x, k.to(x.dtype))

        if options.sampler == "ddim":
            return ddim_sample(model_fn, x_init, self.schedule, options.num_steps or dc.default_steps,
                               eta=dc.eta if options.eta is None else float(options.eta), spacing=dc.spacing,
                               prediction_type=dc.prediction_type, clip_sample=dc.clip_sample,
                               generator=generator, prefix=prefix)
        return ddpm_sample(model_fn, x_init, self.schedule, prediction_type=dc.prediction_type,
                           clip_sample=dc.clip_sample, generator=generator, num_steps=options.num_steps,
                           prefix=prefix)


class Regression:
    """The MSE baseline: the same network with fixed zero input and timestep 0 predicts
    the normalised chunk directly. It averages modes (the failure the generative methods
    exist to avoid); no noise, no classifier-free guidance, no prefix."""

    kind = "regression"
    samplers = ("regression",)
    needs_noise = False
    uses_condition_dropout = False

    def __init__(self, config: PolicyConfig):
        self.config = config

    @staticmethod
    def _predict_chunk(predict: Predict, like: torch.Tensor) -> torch.Tensor:
        zeros = torch.zeros_like(like)  # [B, T_p, D_a]
        return predict(zeros, torch.zeros(like.shape[0], device=like.device, dtype=like.dtype))

    def loss(self, predict: Predict, x1: torch.Tensor, generator: Optional[torch.Generator] = None,
             coupling_cond: Optional[torch.Tensor] = None) -> torch.Tensor:
        """``‖f_θ(0, 0) − x1‖²``."""
        return F.mse_loss(self._predict_chunk(predict, x1), x1)

    def sample(self, predict: Predict, x_init: torch.Tensor, options: SampleOptions,
               prefix: Optional[PrefixConstraint] = None, generator: Optional[torch.Generator] = None) -> torch.Tensor:
        """The chunk for ``x_init``'s shape (its values are not used)."""
        return self._predict_chunk(predict, x_init)


METHODS = {"flow": FlowMatching, "diffusion": Diffusion, "regression": Regression}


def build_method(config: PolicyConfig):
    """The method object of ``config.kind``, built from its section of the config."""
    if config.kind == "flow":
        return FlowMatching(config.flow)
    if config.kind == "diffusion":
        return Diffusion(config.diffusion)
    if config.kind == "regression":
        return Regression(config)
    raise ValueError(f"PolicyConfig.kind must be one of {sorted(METHODS)}, got {config.kind!r}")
