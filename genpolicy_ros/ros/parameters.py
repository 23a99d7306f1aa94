"""The policy node's parameter table, as data, and its validation (architecture.md contract).

One :class:`ParamSpec` per contract parameter gives type, default, range / enum,
whether it may change at run time (★ in architecture.md) and a description. From it:

- :func:`build_descriptors` -> ``rcl_interfaces/ParameterDescriptor`` objects (ranges,
  ``read_only``) for ``node.declare_parameters``; :func:`declaration_list` packs them
  with the defaults.
- :func:`validate_update` — the pure check behind the node's on-set-parameters callback
  (the only hook Humble has): a batch is accepted whole or rejected whole with a reason
  (reliability.md row 13: out of range, wrong type, NaN/Inf, unknown enum, read-only).
- :class:`NodeParams` — the validated, frozen set of values the node applies at the next
  chunk boundary ("validate in the on-set callback, apply elsewhere", ros2/demos).

Type rules (decided here, and mirrored by the descriptors):

- a ``double`` parameter accepts an ``int`` (``ros2 param set … 2`` and YAML ``2`` arrive
  as integers) and stores it as ``float``; for that, double descriptors are declared with
  ``dynamic_typing=True`` so rclpy hands the value to our check instead of refusing it.
- an ``integer`` parameter does **not** accept a float (not even ``3.0``), and ``bool`` is
  never a number (Python's ``bool`` is an ``int`` subclass; we reject it explicitly).
- ``joint_names`` is a string array; ``[]`` means "take them from the model". It is
  declared with ``dynamic_typing=True`` because rclpy types an empty default list as a
  byte array, which would then refuse the string list coming from a params file; a
  NOT_SET value (rcl's reading of ``joint_names: []`` in YAML) also means "from the model".

Read-only: non-★ parameters are read-only once the node is configured. By default the
descriptors say ``read_only=True`` (set them from the params file or the launch file);
``build_descriptors(static_read_only=False)`` leaves them writable so that a node may
accept a new ``model_path`` between cleanup and configure, with ``validate_update(...,
configured=...)`` doing the gating.
"""
from __future__ import annotations

import math
import numbers
import re
from dataclasses import dataclass, fields
from typing import Any, Dict, Iterable, List, Mapping, Optional, Sequence, Tuple

STRING = "string"
INTEGER = "integer"
DOUBLE = "double"
BOOL = "bool"
STRING_ARRAY = "string_array"
_KINDS = (STRING, INTEGER, DOUBLE, BOOL, STRING_ARRAY)


@dataclass(frozen=True)
class ParamSpec:
    """One parameter: name, kind, default, bounds/enum, ★ runtime flag, description.

    Numeric bounds are inclusive unless ``min_exclusive`` (for "> 0" parameters).
    """

    name: str
    kind: str
    default: Any
    description: str
    runtime: bool = False
    minimum: Optional[float] = None
    maximum: Optional[float] = None
    min_exclusive: bool = False
    choices: Optional[Tuple[str, ...]] = None
    pattern: Optional[str] = None
    constraint_text: str = ""

    def __post_init__(self):
        if self.kind not in _KINDS:
            raise ValueError(f"{self.name}: unknown parameter kind {self.kind!r}")
        if self.kind in (INTEGER, DOUBLE) and (self.minimum is None or self.maximum is None):
            raise ValueError(f"{self.name}: numeric parameters need minimum and maximum")
        ok, reason, _ = self.check(self.default)
        if not ok:
            raise ValueError(f"{self.name}: default {self.default!r} is invalid: {reason}")

    @property
    def dynamic_typing(self) -> bool:
        """Declared with dynamic typing (see the module docstring for why)."""
        return self.kind in (DOUBLE, STRING_ARRAY)

    def constraints(self) -> str:
        """Human-readable constraint, used in descriptors and rejection reasons."""
        if self.constraint_text:
            return self.constraint_text
        if self.choices is not None:
            return "one of: " + ", ".join(self.choices)
        if self.kind in (INTEGER, DOUBLE):
            low = "(" if self.min_exclusive else "["
            return f"in {low}{self.minimum}, {self.maximum}]"
        return ""

    def check(self, value: Any) -> Tuple[bool, str, Any]:
        """Validate one value -> ``(ok, reason, value coerced to the stored type)``."""
        kind = self.kind
        if kind == BOOL:
            if not isinstance(value, bool):
                return False, f"{self.name}: expected bool, got {type(value).__name__}", None
            return True, "", value
        if kind in (INTEGER, DOUBLE):
            if isinstance(value, bool) or not isinstance(value, numbers.Real):
                return False, f"{self.name}: expected {kind}, got {type(value).__name__}", None
            if kind == INTEGER and not isinstance(value, numbers.Integral):
                return False, f"{self.name}: expected integer, got {type(value).__name__}", None
            number = int(value) if kind == INTEGER else float(value)
            if not math.isfinite(number):
                return False, f"{self.name}: value must be finite, got {value!r}", None
            too_low = number <= self.minimum if self.min_exclusive else number < self.minimum
            if too_low or number > self.maximum:
                return False, f"{self.name}: {value!r} out of range, must be {self.constraints()}", None
            return True, "", number
        if kind == STRING:
            if not isinstance(value, str):
                return False, f"{self.name}: expected string, got {type(value).__name__}", None
            if self.choices is not None and value not in self.choices:
                return False, f"{self.name}: {value!r} is not {self.constraints()}", None
            if self.pattern is not None and not re.fullmatch(self.pattern, value):
                return False, f"{self.name}: {value!r} is not {self.constraints()}", None
            return True, "", value
        # STRING_ARRAY; None = NOT_SET, which is how rcl reads an empty YAML list
        if value is None:
            return True, "", ()
        if isinstance(value, (str, bytes)) or not isinstance(value, (list, tuple)):
            return False, f"{self.name}: expected a list of strings, got {type(value).__name__}", None
        items = tuple(value)
        if any(not isinstance(v, str) or not v for v in items):
            return False, f"{self.name}: every entry must be a non-empty string", None
        if len(set(items)) != len(items):
            return False, f"{self.name}: duplicate entries in {list(items)}", None
        return True, "", items


# The contract table (architecture.md, "parameters"). runtime=True marks the ★ ones.
PARAMETERS: Tuple[ParamSpec, ...] = (
    ParamSpec("model_path", STRING, "",
              "Model directory (config.json + model.safetensors); '' = the shipped default model."),
    ParamSpec("backend", STRING, "auto",
              "Inference backend: auto (the fastest available: recorded by `genpolicy export`, else "
              "OpenVINO / ONNX Runtime on a CPU, TensorRT / CUDA graph on a GPU), torch (eager), onnxruntime, "
              "openvino, tensorrt (ONNX route), torch_tensorrt, cuda_graph, compile.",
              choices=("auto", "torch", "onnxruntime", "openvino", "tensorrt", "torch_tensorrt", "cuda_graph",
                       "compile")),
    ParamSpec("precision", STRING, "fp32",
              "Inference precision: fp32, fp16 (CUDA backends) or bf16 (OpenVINO on CPUs with bf16); "
              "a backend without it refuses at configure (never a silent fp32).",
              choices=("fp32", "fp16", "bf16")),
    ParamSpec("emulate_latency_ms", DOUBLE, 0.0,
              "Latency emulation for studying slow models (0 = off): every chunk takes at least this long "
              "in the generation process; reported in /diagnostics and ~/action_chunk. Never use on a robot.",
              minimum=0.0, maximum=10000.0),
    ParamSpec("device", STRING, "auto", "Inference device: auto, cpu, cuda or cuda:N.",
              pattern=r"auto|cpu|cuda(:[0-9]+)?", constraint_text="auto, cpu, cuda or cuda:N"),
    ParamSpec("sampler", STRING, "auto",
              "Sampler: flow for flow-matching models, ddim or ddpm for diffusion models; "
              "auto = the model's own default.",
              runtime=True, choices=("auto", "flow", "ddim", "ddpm")),
    ParamSpec("num_steps", INTEGER, 10, "Denoising / integration steps per chunk.",
              runtime=True, minimum=1, maximum=1000),
    ParamSpec("guidance_scale", DOUBLE, 1.0,
              "Classifier-free guidance weight w (1 = plain conditional sampling).",
              runtime=True, minimum=0.0, maximum=20.0),
    ParamSpec("ddim_eta", DOUBLE, 0.0, "DDIM eta (0 = deterministic DDIM, 1 = DDPM-like).",
              runtime=True, minimum=0.0, maximum=1.0),
    ParamSpec("control_rate_hz", DOUBLE, 100.0, "Executor rate: commands published per second.",
              runtime=True, minimum=1.0, maximum=1000.0),
    ParamSpec("action_horizon", INTEGER, 8,
              "T_a: actions executed from a chunk before replanning (<= the model's T_p).",
              runtime=True, minimum=1, maximum=1000),
    ParamSpec("chunk_blending", STRING, "rtc",
              "How a new chunk joins the executing one: none, ensemble (temporal), rtc "
              "(real-time chunking, inpaints the frozen prefix).",
              runtime=True, choices=("none", "ensemble", "rtc")),
    ParamSpec("rtc_prefix_mode", STRING, "hard",
              "How chunk_blending rtc imposes the frozen prefix while sampling: hard (replace the prefix "
              "at every sampler step) or guided (Black et al. 2025: pull the velocity toward it through a "
              "vector-Jacobian product, with soft weights over the overlap).",
              runtime=True, choices=("hard", "guided")),
    ParamSpec("inference_delay_steps", INTEGER, -1,
              "Expected inference delay in control steps; -1 = measured (p95 of latency).",
              runtime=True, minimum=-1, maximum=1000),
    ParamSpec("output_mode", STRING, "joint_trajectory",
              "joint_trajectory (JointTrajectory to joint_trajectory_controller) or "
              "forward_command (Float64MultiArray to forward_position_controller).",
              choices=("joint_trajectory", "forward_command")),
    ParamSpec("joint_names", STRING_ARRAY, (),
              "Robot joint names in the model's order; [] = take them from the model."),
    ParamSpec("max_joint_velocity", DOUBLE, 2.0,
              "Velocity limit per joint applied by the safety filter (rad/s or m/s).",
              runtime=True, minimum=0.0, maximum=100.0, min_exclusive=True),
    ParamSpec("max_joint_acceleration", DOUBLE, 20.0,
              "Acceleration limit per joint applied by the safety filter (rad/s² or m/s²).",
              runtime=True, minimum=0.0, maximum=10000.0, min_exclusive=True),
    ParamSpec("max_tracking_error", DOUBLE, 0.3,
              "Hold (ERROR on /diagnostics) when a measured joint position is farther than this from "
              "the commands of the last 0.5 s (rad or m): a robot that did not follow, or a bogus joint "
              "state; resumes from the last command after consistent measurements, never jumps.",
              runtime=True, minimum=0.0, maximum=100.0, min_exclusive=True),
    ParamSpec("unstamped_inputs", STRING, "reject",
              "Messages with header stamp 0: reject (default; latency compensation needs the sensor's "
              "stamp) or receive_time (stamp them on arrival with the node's clock: transport and "
              "driver delays become invisible).",
              runtime=True, choices=("reject", "receive_time")),
    ParamSpec("image_resize", STRING, "auto",
              "Camera frames of another size than the model's: auto (the preprocessing the model was "
              "trained with, observation.image_preprocess), resize, center_crop_resize or reject.",
              runtime=True, choices=("auto", "resize", "center_crop_resize", "reject")),
    ParamSpec("observation_timeout_s", DOUBLE, 0.5,
              "Observations older than this (by header stamp) stop generation and hold.",
              runtime=True, minimum=0.0, maximum=3600.0, min_exclusive=True),
    ParamSpec("enabled", BOOL, True, "False = hold (publish the hold target, no new chunks).",
              runtime=True),
    ParamSpec("seed", INTEGER, 0, "Random seed for the sampler's noise.",
              minimum=0, maximum=2**31 - 1),
)
SPECS: Dict[str, ParamSpec] = {spec.name: spec for spec in PARAMETERS}
RUNTIME_PARAMETERS = frozenset(s.name for s in PARAMETERS if s.runtime)


def default_values() -> Dict[str, Any]:
    """Name -> default value for every parameter."""
    return {spec.name: spec.default for spec in PARAMETERS}


# --------------------------------------------------------------------------- descriptors


def build_descriptor(spec: ParamSpec, static_read_only: bool = True):
    """``rcl_interfaces/ParameterDescriptor`` for one spec (ranges, read_only, typing)."""
    from rcl_interfaces.msg import FloatingPointRange, IntegerRange, ParameterDescriptor, ParameterType

    types = {STRING: ParameterType.PARAMETER_STRING,
             INTEGER: ParameterType.PARAMETER_INTEGER,
             DOUBLE: ParameterType.PARAMETER_DOUBLE,
             BOOL: ParameterType.PARAMETER_BOOL,
             STRING_ARRAY: ParameterType.PARAMETER_STRING_ARRAY}
    star = "" if spec.runtime else " Read-only after configure."
    descriptor = ParameterDescriptor(
        name=spec.name,
        type=types[spec.kind],
        description=spec.description + star,
        additional_constraints=spec.constraints(),
        read_only=(not spec.runtime) and static_read_only,
        dynamic_typing=spec.dynamic_typing,
    )
    if spec.kind == DOUBLE:
        # ROS ranges are inclusive; an exclusive 0 is enforced by validate_update.
        descriptor.floating_point_range = [FloatingPointRange(
            from_value=float(spec.minimum), to_value=float(spec.maximum), step=0.0)]
    elif spec.kind == INTEGER:
        descriptor.integer_range = [IntegerRange(
            from_value=int(spec.minimum), to_value=int(spec.maximum), step=1)]
    return descriptor


def build_descriptors(static_read_only: bool = True) -> Dict[str, Any]:
    """Name -> ParameterDescriptor for every contract parameter."""
    return {spec.name: build_descriptor(spec, static_read_only) for spec in PARAMETERS}


def declaration_list(static_read_only: bool = True) -> List[Tuple[str, Any, Any]]:
    """``[(name, default, descriptor)]`` for ``node.declare_parameters("", ...)``."""
    descriptors = build_descriptors(static_read_only)
    return [(spec.name, list(spec.default) if spec.kind == STRING_ARRAY else spec.default,
             descriptors[spec.name]) for spec in PARAMETERS]


# --------------------------------------------------------------------------- values


@dataclass(frozen=True)
class NodeParams:
    """Validated parameter values; what the node applies at the next chunk boundary.

    ``__post_init__`` checks every field against :data:`SPECS` (ValueError with the
    reason) and normalises types: ints given for doubles become floats, joint_names a tuple.
    """

    model_path: str = SPECS["model_path"].default
    backend: str = SPECS["backend"].default
    precision: str = SPECS["precision"].default
    emulate_latency_ms: float = SPECS["emulate_latency_ms"].default
    device: str = SPECS["device"].default
    sampler: str = SPECS["sampler"].default
    num_steps: int = SPECS["num_steps"].default
    guidance_scale: float = SPECS["guidance_scale"].default
    ddim_eta: float = SPECS["ddim_eta"].default
    control_rate_hz: float = SPECS["control_rate_hz"].default
    action_horizon: int = SPECS["action_horizon"].default
    chunk_blending: str = SPECS["chunk_blending"].default
    inference_delay_steps: int = SPECS["inference_delay_steps"].default
    rtc_prefix_mode: str = SPECS["rtc_prefix_mode"].default
    output_mode: str = SPECS["output_mode"].default
    joint_names: Tuple[str, ...] = SPECS["joint_names"].default
    max_joint_velocity: float = SPECS["max_joint_velocity"].default
    max_joint_acceleration: float = SPECS["max_joint_acceleration"].default
    max_tracking_error: float = SPECS["max_tracking_error"].default
    unstamped_inputs: str = SPECS["unstamped_inputs"].default
    image_resize: str = SPECS["image_resize"].default
    observation_timeout_s: float = SPECS["observation_timeout_s"].default
    enabled: bool = SPECS["enabled"].default
    seed: int = SPECS["seed"].default

    def __post_init__(self):
        for f in fields(self):
            ok, reason, value = SPECS[f.name].check(getattr(self, f.name))
            if not ok:
                raise ValueError(reason)
            object.__setattr__(self, f.name, value)

    @classmethod
    def from_values(cls, values: Mapping[str, Any]) -> "NodeParams":
        """Build from a name -> value mapping; missing names take their defaults.
        Raises ValueError on an unknown name or an invalid value."""
        unknown = sorted(set(values) - set(SPECS))
        if unknown:
            raise ValueError(f"unknown parameter(s) {unknown}")
        return cls(**dict(values))

    def to_dict(self) -> Dict[str, Any]:
        return {f.name: getattr(self, f.name) for f in fields(self)}

    @property
    def dt(self) -> float:
        """Control period in seconds (1 / control_rate_hz)."""
        return 1.0 / self.control_rate_hz


if set(SPECS) != {f.name for f in fields(NodeParams)}:  # keep the table and the dataclass in step
    raise RuntimeError("NodeParams fields and PARAMETERS disagree")


def validate_update(
    current: Mapping[str, Any],
    changes: Iterable[Tuple[str, Any]],
    configured: bool = True,
) -> Tuple[bool, str, Dict[str, Any]]:
    """Check a batch of parameter changes against the table: all or nothing.

    current: name -> value (missing names take their defaults); changes: ``(name, value)``
    pairs applied in order. Returns ``(True, "", new_values)`` with every value normalised,
    or ``(False, reason, values unchanged)`` if **any** change is unknown, read-only
    (a non-★ parameter while ``configured``), of the wrong type, non-finite, out of range
    or not in its enum. ``current`` is never modified.
    """
    base = default_values()
    base.update(current)
    unchanged = dict(base)
    new_values = dict(base)
    for name, value in changes:
        spec = SPECS.get(name)
        if spec is None:
            return False, f"unknown parameter {name!r}", unchanged
        if configured and not spec.runtime:
            return False, (f"{name} is read-only while the node is configured "
                           "(cleanup the node to change it)"), unchanged
        ok, reason, coerced = spec.check(value)
        if not ok:
            return False, reason, unchanged
        new_values[name] = coerced
    try:
        params = NodeParams.from_values(new_values)
    except ValueError as exc:
        return False, str(exc), unchanged
    return True, "", params.to_dict()


def validate_ros_parameters(current: Mapping[str, Any], parameters: Sequence[Any],
                            configured: bool = True):
    """Adapter for ``node.add_on_set_parameters_callback``: rclpy ``Parameter`` list ->
    ``(SetParametersResult, new_values)``. Names outside the table (``use_sim_time``,
    QoS overrides, ...) are left to rclpy and pass through."""
    from rcl_interfaces.msg import SetParametersResult

    changes = [(p.name, p.value) for p in parameters if p.name in SPECS]
    ok, reason, new_values = validate_update(current, changes, configured)
    return SetParametersResult(successful=ok, reason=reason), new_values
