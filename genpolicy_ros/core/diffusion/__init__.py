"""DDPM/DDIM for action chunks: forward process and targets, samplers, prefix inpainting.

Conventions (docs/internals.md): integer timesteps ``k ∈ [0, K)``, ``k = K − 1`` noisiest;
samplers work in normalised action space. A denoiser is called as::

    model_fn(x [B, T, D] float, t [B] int64) -> output [B, T, D]

where ``output`` is ε (``"epsilon"``), x0 (``"sample"``) or v (``"v_prediction"``).

Formulas (ᾱ_k from :class:`~genpolicy_ros.core.schedules.NoiseSchedule`):
  * forward process  x_k = sqrt(ᾱ_k)·x0 + sqrt(1−ᾱ_k)·ε        (Ho et al. 2020, eq. 4)
  * v target         v   = sqrt(ᾱ_k)·ε − sqrt(1−ᾱ_k)·x0       (Salimans & Ho 2022, §4)
  * DDIM update      (Song et al. 2021, arXiv 2010.02502, eq. 12)
        x_prev = sqrt(ᾱ_prev)·x̂0 + sqrt(1−ᾱ_prev−σ²)·ε̂ + σ·z,
        σ = η·sqrt((1−ᾱ_prev)/(1−ᾱ_k))·sqrt(1−ᾱ_k/ᾱ_prev)
  * DDPM update      posterior q(x_prev | x_k, x̂0) (Ho et al. 2020, eqs. 6–7)

Modules: :mod:`.targets` (forward process, training targets, x̂0/ε̂ from a model output),
:mod:`.samplers` (inference timesteps, DDIM, DDPM), :mod:`.prefix` (real-time-chunking
prefix: the replacement hook on x̂0 and RTC's guidance, Black et al. 2025).
"""
from .prefix import PREFIX_MODES
from .samplers import TIMESTEP_SPACINGS, VARIANCE_TYPES, ddim_sample, ddim_timesteps, ddpm_sample
from .targets import PREDICTION_TYPES, predict_x0_eps, q_sample, training_target

__all__ = ["PREDICTION_TYPES", "PREFIX_MODES", "TIMESTEP_SPACINGS", "VARIANCE_TYPES", "ddim_sample",
           "ddim_timesteps", "ddpm_sample", "predict_x0_eps", "q_sample", "training_target"]
