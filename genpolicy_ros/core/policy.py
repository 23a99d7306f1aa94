"""GenerativePolicy: normalisers + observation encoder + denoiser + sampler, one object.

The policy maps an observation history to an action chunk ``[B, T_p, D_a]`` in robot
units. Three kinds share the same network and encoder:

* ``flow`` — conditional flow matching (Lipman et al. 2023) on the linear path
  ``x_t = t·x1 + (1−t)·x0`` (t = 0 noise, t = 1 data), velocity target ``u = x1 − x0``,
  optional minibatch OT coupling (Tong et al. 2023; condition-aware as in C²OT,
  arXiv 2503.10636); sampled by integrating t: 0 → 1 (Euler/midpoint/Heun/RK4).
* ``diffusion`` — DDPM (Ho et al. 2020) with ε / x0 / v targets, sampled with DDIM
  (Song et al. 2021) or ancestral DDPM; the Diffusion Policy recipe (Chi et al. 2023).
* ``regression`` — the MSE baseline: the same network with fixed zero input and
  timestep 0 predicts the normalised chunk directly. It averages modes (the failure the
  generative policies exist to avoid).

Classifier-free guidance (Ho & Salimans 2022): during training the condition tokens are
replaced with probability ``cond_dropout`` by a learned null embedding ``[T_o, F]``; at
sampling ``out = out_null + w·(out_cond − out_null)`` with both halves evaluated in one
batched call.

Data flow of :meth:`GenerativePolicy.sample`::

    obs ──state normaliser──► encoder (once per chunk) ──► cond [B, T_o, F]
    noise [B, T_p, D_a] ──► sampler loop: network(x, timestep, cond) ──► x̂ (normalised)
        ──action un-normaliser──► chunk [B, T_p, D_a] in robot units
"""
from __future__ import annotations

import contextlib
from typing import Mapping, Optional

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from .config import PolicyConfig
from .generative import SampleOptions, build_method
from .guidance import cfg_combine
from .inpainting import PrefixConstraint, check_prefix_values
from .networks import Denoiser, build_denoiser
from .networks.obs_encoder import ObsEncoderConfig, ObservationEncoder
from .normalizer import MinMaxNormalizer

SAMPLERS = ("flow", "ddim", "ddpm", "regression")


class GenerativePolicy(nn.Module):
    """Flow-matching / diffusion / regression action-chunk policy (see module docstring).

    Submodules (all of their tensors are in ``state_dict()``): ``action_normalizer``,
    ``state_normalizer``, ``encoder``, ``network`` and the parameter ``null_cond``; with
    ``config.auxiliary.state_names`` also ``aux_normalizer`` and ``aux_head`` (training only).
    """

    def __init__(self, config: PolicyConfig, encoder: nn.Module, network: nn.Module):
        super().__init__()
        if not isinstance(config, PolicyConfig):
            raise TypeError(f"GenerativePolicy: config must be a PolicyConfig, got {type(config).__name__}")
        self.config = config
        self.action_normalizer = MinMaxNormalizer(config.action.dim)
        self.state_normalizer = MinMaxNormalizer(config.observation.state_dim)
        self.encoder = encoder
        self.network = network
        T_o, F_tok = config.horizon.T_o, int(encoder.token_dim)
        self.null_cond = nn.Parameter(torch.zeros(T_o, F_tok))  # [T_o, F] learned "no observation" tokens
        nn.init.normal_(self.null_cond, std=0.02)
        # Training-only supervision (config.AuxiliaryConfig): tokens -> privileged state.
        self.aux_normalizer = self.aux_head = None
        D_aux = len(config.auxiliary.state_names)
        # auxiliary.from_images: the head reads the cameras' features only (the token's tail).
        self._aux_from = F_tok - encoder.config.image_feature_dim * len(encoder.config.camera_names) \
            if config.auxiliary.from_images else 0
        if D_aux:
            self.aux_normalizer = MinMaxNormalizer(D_aux)
            self.aux_head = nn.Linear(F_tok - self._aux_from, D_aux)  # [.., F or F_img] -> [.., D_aux]
        # FlowMatching / Diffusion / Regression (core.generative): plain objects, nothing of
        # them goes into the state dict.
        self.method = build_method(config)

    # ------------------------------------------------------------------ building
    @classmethod
    def from_config(cls, config: PolicyConfig) -> "GenerativePolicy":
        """Build encoder and network from ``config`` (seeded by ``config.seed``)."""
        devnull = torch.random.fork_rng(devices=[])  # do not disturb the caller's global RNG
        with devnull:
            torch.manual_seed(config.seed)
            obs, hor = config.observation, config.horizon
            enc_cfg = ObsEncoderConfig(
                state_dim=obs.state_dim,
                T_o=hor.T_o,
                camera_names=tuple(obs.camera_names),
                image_size=tuple(obs.image_size),
                **config.encoder.params,
            )
            encoder = ObservationEncoder(enc_cfg)
            network = build_denoiser(
                config.network.name,
                **_network_dims(config.network.name, config.network.params, config.action.dim,
                                hor.T_p, hor.T_o, int(encoder.token_dim)),
            )
            return cls(config, encoder, network)

    @torch.no_grad()
    def fit_normalizers(self, actions, states=None, aux_states=None) -> "GenerativePolicy":
        """Fit the min/max normalisers: ``actions [N, ..., D_a]``, ``states [N, ..., D_s]``,
        ``aux_states [N, ..., D_aux]`` (the auxiliary targets, when the config names any)."""
        self.action_normalizer.fit(actions)
        if states is not None and self.config.observation.state_dim > 0:
            self.state_normalizer.fit(states)
        if aux_states is not None and self.aux_normalizer is not None:
            self.aux_normalizer.fit(aux_states)
        return self

    @property
    def device(self) -> torch.device:
        return self.null_cond.device

    # ------------------------------------------------------------------ conditioning
    def encode(self, obs: Mapping) -> torch.Tensor:
        """Observation dict (robot units, batch first) -> condition tokens ``[B, T_o, F]``.

        Run once per chunk: the sampler loop reuses the tokens for every network call.
        """
        if not isinstance(obs, Mapping):
            raise TypeError(f"encode: obs must be a dict, got {type(obs).__name__}")
        T_o = self.config.horizon.T_o
        enc_in = {}
        if self.config.observation.state_dim > 0:
            if "state" not in obs:
                raise ValueError("encode: obs['state'] is required by this model "
                                 f"(state_names={list(self.config.observation.state_names)})")
            state = torch.as_tensor(obs["state"], dtype=torch.float32, device=self.device)  # [B, T_o, D_s]
            want = (T_o, self.config.observation.state_dim)
            if state.dim() != 3 or tuple(state.shape[1:]) != want:
                raise ValueError(f"encode: obs['state'] must be [B, {want[0]}, {want[1]}], got {tuple(state.shape)}")
            enc_in["state"] = self.state_normalizer.normalize(state)  # [B, T_o, D_s] in [-1, 1]
        if self.config.observation.camera_names:
            images = obs.get("images") or {}
            enc_in["images"] = {}
            for cam in self.config.observation.camera_names:
                if cam not in images:
                    raise ValueError(f"encode: obs['images'][{cam!r}] is required by this model")
                enc_in["images"][cam] = torch.as_tensor(images[cam], dtype=torch.float32,
                                                        device=self.device)  # [B, T_o, 3, H, W]
        cond = self.encoder(enc_in)  # [B, T_o, F]
        return cond

    def _null_like(self, cond: torch.Tensor) -> torch.Tensor:
        return self.null_cond.unsqueeze(0).expand(cond.shape[0], -1, -1).to(cond.dtype)  # [B, T_o, F]

    # ------------------------------------------------------------------ training
    def loss(self, batch: Mapping, generator: Optional[torch.Generator] = None):
        """Training loss on a robot-unit batch -> ``(scalar loss, info dict)``: the method's
        loss (:mod:`genpolicy_ros.core.generative`) on the normalised chunk, with the
        condition dropped to the null tokens with probability ``cond_dropout``, plus the
        auxiliary state loss when the config names auxiliary targets."""
        cfg = self.config
        action = torch.as_tensor(batch["action"], dtype=torch.float32, device=self.device)  # [B, T_p, D_a]
        want = (cfg.horizon.T_p, cfg.action.dim)
        if action.dim() != 3 or tuple(action.shape[1:]) != want:
            raise ValueError(f"loss: batch['action'] must be [B, {want[0]}, {want[1]}], got {tuple(action.shape)}")
        B = action.shape[0]
        x1 = self.action_normalizer.normalize(action)  # [B, T_p, D_a] in [-1, 1]
        cond_full = self.encode(batch["obs"])  # [B, T_o, F]
        cond = cond_full
        dropped = torch.zeros(B, dtype=torch.bool, device=self.device)  # [B]
        if self.training and cfg.cond_dropout > 0 and self.method.uses_condition_dropout:
            dropped = torch.rand(B, generator=generator, device=self.device) < cfg.cond_dropout  # [B]
            cond = torch.where(dropped.view(B, 1, 1), self._null_like(cond_full), cond_full)  # [B, T_o, F]
        info = {"kind": cfg.kind, "cond_dropped": float(dropped.float().mean())}

        def predict(x, timestep):
            return self.network(x, timestep, cond)  # [B, T_p, D_a]

        loss = self.method.loss(predict, x1, generator=generator, coupling_cond=cond_full.detach())
        info["action_loss"] = float(loss.detach())
        if self.aux_head is not None and cfg.auxiliary.weight > 0:
            if "aux_state" not in batch:
                raise ValueError(f"loss: this model is trained with auxiliary targets "
                                 f"{list(cfg.auxiliary.state_names)}: batch['aux_state'] [B, T_o, D_aux] is required")
            aux = torch.as_tensor(batch["aux_state"], dtype=torch.float32, device=self.device)  # [B, T_o, D_aux]
            want = (cfg.horizon.T_o, len(cfg.auxiliary.state_names))
            if aux.dim() != 3 or tuple(aux.shape[1:]) != want:
                raise ValueError(f"loss: batch['aux_state'] must be [B, {want[0]}, {want[1]}], got {tuple(aux.shape)}")
            aux_pred = self.aux_head(cond_full[..., self._aux_from:])  # [B, T_o, D_aux], normalised units
            aux_loss = F.mse_loss(aux_pred, self.aux_normalizer.normalize(aux))
            info["aux_loss"] = float(aux_loss.detach())
            loss = loss + cfg.auxiliary.weight * aux_loss
        info["loss"] = float(loss.detach())
        return loss, info

    @torch.no_grad()
    def predict_aux_state(self, obs: Mapping) -> torch.Tensor:
        """The auxiliary head's estimate of the training-only state, robot units [B, T_o, D_aux]
        (a diagnostic: how well the encoder locates what it was taught to)."""
        if self.aux_head is None:
            raise ValueError("predict_aux_state: this model has no auxiliary state (config.auxiliary.state_names)")
        return self.aux_normalizer.unnormalize(self.aux_head(self.encode(obs)[..., self._aux_from:]))

    # ------------------------------------------------------------------ sampling
    def _predictor(self, cond: torch.Tensor, guidance_scale: float):
        """``predict(x, timestep float [B]) -> out [B, T_p, D_a]`` with classifier-free guidance."""
        w = float(guidance_scale)
        if w == 1.0:
            return lambda x, ts: self.network(x, ts, cond)
        null = self._null_like(cond)  # [B, T_o, F]
        if w == 0.0:
            return lambda x, ts: self.network(x, ts, null)
        both_cond = torch.cat([null, cond], dim=0)  # [2B, T_o, F]

        def predict(x, ts):
            out = self.network(torch.cat([x, x], 0), torch.cat([ts, ts], 0), both_cond)  # [2B, T_p, D_a]
            uncond, conditional = out.chunk(2, dim=0)
            return cfg_combine(uncond, conditional, w)

        return predict

    def _network_checked_once(self, x_init: torch.Tensor, cond: torch.Tensor):
        """Check the denoiser's input shapes once for the chunk; the step loop then runs
        without per-call checks. A network swapped in by a backend (compiled / exported)
        is left as it is."""
        if not isinstance(self.network, Denoiser):
            return contextlib.nullcontext()
        timestep = torch.zeros(x_init.shape[0], dtype=x_init.dtype, device=x_init.device)  # [B]
        self.network.check_inputs(x_init, timestep, cond)
        return self.network.inputs_checked()

    def sample(
        self,
        obs: Mapping,
        *,
        sampler: Optional[str] = None,
        num_steps: Optional[int] = None,
        guidance_scale: float = 1.0,
        eta: Optional[float] = None,
        method: Optional[str] = None,
        generator: Optional[torch.Generator] = None,
        seed: Optional[int] = None,
        noise: Optional[torch.Tensor] = None,
        prefix_actions=None,
        prefix_weights=None,
        prefix_mode: str = "guided",
        max_guidance: float = 5.0,
        check_values: bool = True,
    ) -> torch.Tensor:
        """Sample an action chunk ``[B, T_p, D_a]`` in robot units.

        Args:
            obs: batched observation dict (robot units), see ``docs/internals.md``.
            sampler: ``flow`` | ``ddim`` | ``ddpm`` (| ``regression``); default from the
                config; must match the policy kind.
            num_steps: solver / denoising steps (default from the config).
            guidance_scale: CFG weight w (1 = plain conditional, 0 = unconditional).
            eta: DDIM η (default from the config). method: ODE method for flow.
            generator / seed / noise: randomness; ``noise [B, T_p, D_a]`` (normalised
                space) pins the initial sample (deterministic samplers then give
                identical chunks).
            prefix_actions: ``[B, k, D_a]`` or ``[k, D_a]`` robot-unit actions the first
                rows must agree with (real-time chunking); ``prefix_weights [T_p]``
                (default 1 on the first k rows, 0 elsewhere); ``prefix_mode``
                ``guided`` (replacement + RTC guidance, clipped at ``max_guidance``) or
                ``hard`` (replacement only).
            check_values: check the prefix values (finite, weights in [0, 1]). Shapes and
                arguments are always checked, once per chunk; ``False`` is for the graph
                backends, which check their inputs on the host before every call and
                capture this method: with it, the sampling path reads no tensor back to
                the host (a CUDA graph cannot).
        """
        cfg = self.config
        sampler = cfg.default_sampler if sampler is None else sampler
        if sampler not in SAMPLERS:
            raise ValueError(f"sample: sampler must be one of {SAMPLERS}, got {sampler!r}")
        if sampler not in self.method.samplers:
            raise ValueError(f"sample: sampler {sampler!r} does not fit a {cfg.kind!r} policy "
                             f"(use one of {list(self.method.samplers)})")
        if not (isinstance(guidance_scale, (int, float)) and np.isfinite(guidance_scale) and guidance_scale >= 0):
            raise ValueError(f"sample: guidance_scale must be a finite number >= 0, got {guidance_scale!r}")
        if sampler == "regression" and guidance_scale != 1.0:
            raise ValueError("sample: guidance_scale applies to flow/diffusion policies, not regression")
        if num_steps is not None and (isinstance(num_steps, bool) or not isinstance(num_steps, int) or num_steps < 1):
            raise ValueError(f"sample: num_steps must be an int >= 1, got {num_steps!r}")

        with torch.no_grad():
            cond = self.encode(obs)  # [B, T_o, F], once per chunk
            B = cond.shape[0]
            shape = (B, cfg.horizon.T_p, cfg.action.dim)
            if not self.method.needs_noise:
                x_init = torch.zeros(shape, device=cond.device, dtype=cond.dtype)  # [B, T_p, D_a], shape only
                prefix = None
            else:
                x_init = self._initial_noise(shape, noise, generator, seed)  # [B, T_p, D_a]
                if generator is None and seed is not None:
                    generator = torch.Generator(device=self.device).manual_seed(int(seed) + 1)
                prefix = self._prefix(prefix_actions, prefix_weights, prefix_mode, max_guidance, B, check_values)
            predict = self._predictor(cond, guidance_scale)
            options = SampleOptions(sampler=sampler, num_steps=num_steps, method=method, eta=eta)
            with self._network_checked_once(x_init, cond):
                x = self.method.sample(predict, x_init, options, prefix=prefix, generator=generator)
            return self.action_normalizer.unnormalize(x)  # [B, T_p, D_a] robot units

    def _initial_noise(self, shape, noise, generator, seed) -> torch.Tensor:
        if noise is not None:
            noise = torch.as_tensor(noise, dtype=torch.float32, device=self.device)
            if tuple(noise.shape) != tuple(shape):
                raise ValueError(f"sample: noise must be {list(shape)} (normalised space), got {list(noise.shape)}")
            return noise
        if generator is None and seed is not None:
            generator = torch.Generator(device=self.device).manual_seed(int(seed))
        return torch.randn(shape, generator=generator, device=self.device)  # [B, T_p, D_a]

    def _prefix(self, prefix_actions, prefix_weights, mode, max_guidance, B,
                check_values: bool = True) -> Optional[PrefixConstraint]:
        if prefix_actions is None:
            if prefix_weights is not None:
                raise ValueError("sample: prefix_weights given without prefix_actions")
            return None
        T_p, D_a = self.config.horizon.T_p, self.config.action.dim
        pa = torch.as_tensor(prefix_actions, dtype=torch.float32, device=self.device)
        if pa.dim() == 2:
            pa = pa.unsqueeze(0)  # [1, k, D_a]
        if pa.dim() != 3 or pa.shape[2] != D_a or not 1 <= pa.shape[1] <= T_p or pa.shape[0] not in (1, B):
            raise ValueError(f"sample: prefix_actions must be [B or 1, k, {D_a}] with 1 <= k <= {T_p}, "
                             f"got {tuple(pa.shape)}")
        k = pa.shape[1]
        target = torch.zeros(pa.shape[0], T_p, D_a, device=self.device)  # [B|1, T_p, D_a]
        target[:, :k] = self.action_normalizer.normalize(pa)
        if prefix_weights is None:
            weights = torch.zeros(T_p)  # [T_p]
            weights[:k] = 1.0
        else:
            weights = torch.as_tensor(prefix_weights, dtype=torch.float32).reshape(-1)  # [T_p]
            if weights.shape[0] != T_p:
                raise ValueError(f"sample: prefix_weights must have T_p={T_p} entries, got {weights.shape[0]}")
        if check_values:  # once here, not again in PrefixConstraint
            check_prefix_values(pa, weights, "sample: prefix", num_given=k)
        return PrefixConstraint(target=target, weights=weights.to(self.device), mode=mode,
                                max_guidance=float(max_guidance), check_values=False)

    def sample_chunk(self, single_obs: Mapping, **kw) -> np.ndarray:
        """One observation without batch dim (``state [T_o, D_s]``, images ``[T_o, 3, H, W]``;
        a leading batch dim of 1 is accepted too) -> ``np.ndarray [T_p, D_a]`` float32."""
        obs = {}
        if "state" in single_obs and single_obs["state"] is not None:
            s = torch.as_tensor(np.asarray(single_obs["state"]), dtype=torch.float32)
            obs["state"] = s.unsqueeze(0) if s.dim() == 2 else s  # [1, T_o, D_s]
        if single_obs.get("images"):
            obs["images"] = {}
            for cam, img in single_obs["images"].items():
                im = torch.as_tensor(np.asarray(img), dtype=torch.float32)
                obs["images"][cam] = im.unsqueeze(0) if im.dim() == 4 else im  # [1, T_o, 3, H, W]
        chunk = self.sample(obs, **kw)  # [1, T_p, D_a]
        if chunk.shape[0] != 1:
            raise ValueError(f"sample_chunk: expected one observation, got a batch of {chunk.shape[0]}")
        return chunk[0].detach().cpu().numpy().astype(np.float32)


def _network_dims(name: str, params: Mapping, action_dim: int, T_p: int, T_o: int, token_dim: int) -> dict:
    """Keyword arguments of ``build_denoiser`` whose dimensions come from the policy."""
    dims = {"action_dim": action_dim, "horizon": T_p}
    if name == "unet1d":
        dims["cond_dim"] = T_o * token_dim
    else:
        dims.update({"n_obs_tokens": T_o, "cond_dim_per_token": token_dim})
    clash = sorted(set(dims) & set(params))
    if clash:
        raise ValueError(f"NetworkConfig.params must not set {clash}: they come from the action spec, "
                         "horizons and encoder")
    return {**params, **dims}
