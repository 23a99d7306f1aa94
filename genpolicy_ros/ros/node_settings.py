"""Node parameters -> what the engine and the input side apply, and the checks that need
the model (torch-free; used by the policy node's on-set callback and its transitions)."""
from __future__ import annotations

import importlib.util
from typing import Any, Dict

from genpolicy_ros.runtime.engine import EngineSettings

from .node_inputs import InputSettings
from .parameters import NodeParams

_SAMPLERS_OF_KIND = {"flow": ("flow",), "diffusion": ("ddim", "ddpm"), "regression": ()}
# What a backend needs before the child even tries (the child makes the real check).
_BACKEND_MODULES = {"onnxruntime": "onnxruntime", "openvino": "openvino", "tensorrt": "tensorrt",
                    "torch_tensorrt": "torch_tensorrt"}
_GPU_ONLY = ("tensorrt", "torch_tensorrt", "cuda_graph")


def backend_precheck(backend: str, device: str) -> str:
    """Torch-free "can this backend possibly run here" ('' = try it); the generation child
    makes the real check. Saves several child restarts on an obvious misconfiguration."""
    module = _BACKEND_MODULES.get(backend)
    if module and importlib.util.find_spec(module) is None:
        return f"Python package {module!r} is not installed"
    if backend in _GPU_ONLY and device == "cpu":
        return f"{backend} needs a CUDA device"
    return ""


def model_checks(cfg, values: Dict[str, Any]) -> str:
    """Parameter checks that need the model's config ('' = fine): sampler vs model kind,
    DDIM steps vs training steps."""
    fits = _SAMPLERS_OF_KIND.get(cfg.kind, ())
    sampler = values["sampler"]
    if sampler != "auto" and sampler not in fits:
        return (f"sampler {sampler!r} does not fit this {cfg.kind} model "
                f"(use auto or one of {list(fits)})")
    effective = cfg.default_sampler if sampler == "auto" else sampler
    if cfg.kind == "diffusion" and effective == "ddim" \
            and values["num_steps"] > cfg.diffusion.num_train_steps:
        return (f"num_steps {values['num_steps']} exceeds the model's {cfg.diffusion.num_train_steps} "
                "diffusion training steps")
    return ""


def engine_settings(p: NodeParams) -> EngineSettings:
    """The engine's run-time settings from validated node parameters."""
    sampler = None if p.sampler == "auto" else p.sampler  # None = the model's default
    return EngineSettings(
        sampler=sampler, num_steps=p.num_steps,
        guidance_scale=p.guidance_scale, ddim_eta=p.ddim_eta, control_rate_hz=p.control_rate_hz,
        action_horizon=p.action_horizon, chunk_blending=p.chunk_blending, rtc_prefix_mode=p.rtc_prefix_mode,
        inference_delay_steps=p.inference_delay_steps, max_joint_velocity=p.max_joint_velocity,
        max_joint_acceleration=p.max_joint_acceleration, max_tracking_error=p.max_tracking_error,
        observation_timeout_s=p.observation_timeout_s, enabled=p.enabled, seed=p.seed)


def input_settings(p: NodeParams, cfg) -> InputSettings:
    """What the input side reads per message; ``image_resize: auto`` = the model's recorded
    ``observation.image_preprocess``."""
    resize = cfg.observation.image_preprocess if p.image_resize == "auto" else p.image_resize
    return InputSettings(unstamped_inputs=p.unstamped_inputs, image_resize=resize)
