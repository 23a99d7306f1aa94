"""What the engine is told: the run-time settings (the ★ node parameters) and the model's
shape (from config.json). Torch-free; validated on construction."""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Dict, Optional

import numpy as np

from .sampler_settings import SamplerSettings

BLENDING = ("none", "ensemble", "rtc")


def _number(name: str, value, lo: float, hi: float, integer: bool = False):
    if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)):
        raise ValueError(f"{name} must be a number, got {value!r}")
    if integer and int(value) != value:
        raise ValueError(f"{name} must be an integer, got {value!r}")
    if not math.isfinite(float(value)) or not lo <= value <= hi:
        raise ValueError(f"{name} must be in [{lo}, {hi}], got {value!r}")


@dataclass(frozen=True)
class EngineSettings:
    """Run-time settings (the ★ parameters of the node), validated on construction.

    ``sampler``/``num_steps``/``ddim_eta``/``action_horizon`` ``None`` = the model's
    default. ``inference_delay_steps = -1`` measures the delay (p95 latency + observation
    age, in rows); ``>= 0`` fixes it (reproducible replays). ``seed = None`` draws fresh
    noise per chunk; an int gives chunk ``k`` the seed ``seed + k`` (deterministic runs).
    """

    sampler: Optional[str] = None
    num_steps: Optional[int] = None
    guidance_scale: float = 1.0
    ddim_eta: Optional[float] = None
    control_rate_hz: float = 100.0
    action_horizon: Optional[int] = None
    chunk_blending: str = "rtc"
    # "hard" (replace the prefix at every sampler step) measured smoother seams than the
    # guided (RTC vector-Jacobian) variant on the shipped models and runs in the ONNX graph.
    rtc_prefix_mode: str = "hard"
    inference_delay_steps: int = -1
    max_joint_velocity: float = 2.0  # rad/s (or m/s), every joint
    max_joint_acceleration: float = 20.0  # rad/s², every joint
    max_jump: float = 0.05  # a first action farther than this from the last command is reported as ramping
    max_tracking_error: float = 0.3  # measured vs commanded path, per joint: above it the filter holds
    position_margin: float = 0.01
    observation_timeout_s: float = 0.5
    enabled: bool = True
    seed: Optional[int] = 0

    def __post_init__(self):
        if self.sampler is not None and self.sampler not in ("flow", "ddim", "ddpm"):
            raise ValueError(f"sampler must be flow, ddim or ddpm, got {self.sampler!r}")
        if self.num_steps is not None:
            _number("num_steps", self.num_steps, 1, 1000, integer=True)
        _number("guidance_scale", self.guidance_scale, 0.0, 20.0)
        if self.ddim_eta is not None:
            _number("ddim_eta", self.ddim_eta, 0.0, 1.0)
        _number("control_rate_hz", self.control_rate_hz, 1.0, 1000.0)
        if self.action_horizon is not None:
            _number("action_horizon", self.action_horizon, 1, 1000, integer=True)
        if self.chunk_blending not in BLENDING:
            raise ValueError(f"chunk_blending must be one of {BLENDING}, got {self.chunk_blending!r}")
        if self.rtc_prefix_mode not in ("guided", "hard"):
            raise ValueError(f"rtc_prefix_mode must be guided or hard, got {self.rtc_prefix_mode!r}")
        _number("inference_delay_steps", self.inference_delay_steps, -1, 1000, integer=True)
        _number("max_joint_velocity", self.max_joint_velocity, 1e-6, 100.0)
        _number("max_joint_acceleration", self.max_joint_acceleration, 1e-6, 1e4)
        _number("max_jump", self.max_jump, 0.0, 10.0)
        _number("max_tracking_error", self.max_tracking_error, 1e-6, 100.0)
        _number("position_margin", self.position_margin, 0.0, 10.0)
        _number("observation_timeout_s", self.observation_timeout_s, 1e-3, 3600.0)
        if not isinstance(self.enabled, bool):
            raise ValueError(f"enabled must be a bool, got {self.enabled!r}")
        if self.seed is not None:
            _number("seed", self.seed, 0, 2**31 - 1, integer=True)

    @property
    def period_s(self) -> float:
        return 1.0 / self.control_rate_hz

    def sampler_settings(self) -> SamplerSettings:
        return SamplerSettings(sampler=self.sampler, num_steps=self.num_steps,
                               guidance_scale=float(self.guidance_scale), eta=self.ddim_eta)


@dataclass(frozen=True)
class ModelInfo:
    """What the engine needs to know about the model (from its config.json)."""

    joint_names: tuple  # action joints, model order
    state_names: tuple  # low-dim observation dims, model order
    camera_names: tuple  # () for state-only models
    lower_limits: np.ndarray  # [D_a]
    upper_limits: np.ndarray  # [D_a]
    T_o: int
    T_p: int
    T_a: int
    dt: float
    # Non-joint low-dim inputs: name -> the state entries it carries (config.json
    # observation.state_inputs); every other state entry comes from the joint states.
    state_inputs: Dict[str, tuple] = field(default_factory=dict)

    def __post_init__(self):
        claimed = [n for names in self.state_inputs.values() for n in names]
        unknown = [n for n in claimed if n not in self.state_names]
        if unknown or len(set(claimed)) != len(claimed):
            raise ValueError(f"ModelInfo.state_inputs must name distinct state entries of {list(self.state_names)}, "
                             f"got {dict(self.state_inputs)}")

    @property
    def joint_state_names(self) -> tuple:
        """State entries read from the joint states (all but the inputs'), model order."""
        claimed = {n for names in self.state_inputs.values() for n in names}
        return tuple(n for n in self.state_names if n not in claimed)

    @classmethod
    def from_policy_config(cls, cfg) -> "ModelInfo":
        return cls(
            state_inputs={name: tuple(spec["names"]) for name, spec in cfg.observation.state_inputs.items()},
            joint_names=tuple(cfg.action.joint_names),
            state_names=tuple(cfg.observation.state_names),
            camera_names=tuple(cfg.observation.camera_names),
            lower_limits=np.asarray(cfg.action.lower_limits, dtype=float),
            upper_limits=np.asarray(cfg.action.upper_limits, dtype=float),
            T_o=int(cfg.horizon.T_o),
            T_p=int(cfg.horizon.T_p),
            T_a=int(cfg.horizon.T_a),
            dt=float(cfg.horizon.dt),
        )

    @property
    def action_dim(self) -> int:
        return len(self.joint_names)
