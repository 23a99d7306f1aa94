"""Policy configuration: nested, self-validating dataclasses with a JSON round trip.

One ``PolicyConfig`` describes everything needed to rebuild a policy (and is what
``config.json`` of a model directory holds): the action and observation specs the robot
must match, horizons, the generative-model settings (flow matching or diffusion), the
network and encoder hyper-parameters.

Every dataclass validates itself in ``__post_init__`` and raises ``ValueError`` with a
message naming the offending field (``PolicyConfig.horizon.T_a: ...``). ``from_dict``
rejects unknown and missing keys and any ``format_version`` other than
:data:`FORMAT_VERSION`. Instances are frozen; use ``dataclasses.replace`` to derive one.
"""
from __future__ import annotations

import dataclasses
import json
import math
from dataclasses import dataclass, field
from typing import Mapping

FORMAT_VERSION = 1

POLICY_KINDS = ("flow", "diffusion", "regression")
TIME_DISTRIBUTIONS = ("uniform", "logit_normal", "beta")
COUPLINGS = ("independent", "ot_cond", "ot_blind")
ODE_METHODS = ("euler", "midpoint", "heun", "rk4")
BETA_SCHEDULES = ("linear", "scaled_linear", "squaredcos_cap_v2")
PREDICTION_TYPES = ("epsilon", "sample", "v_prediction")
DIFFUSION_SAMPLERS = ("ddim", "ddpm")
SPACINGS = ("leading", "trailing", "linspace")
NETWORKS = ("unet1d", "dit")
#: Non-joint low-dimensional inputs (``ObservationSpec.state_inputs``): message type and the
#: message fields that an input's names map to, in order (1..len(fields) names).
STATE_INPUT_TYPES = {
    "point": ("x", "y", "z"),  # geometry_msgs/PointStamped: point.x, .y, .z
    "pose": ("x", "y", "z", "qw", "qx", "qy", "qz"),  # geometry_msgs/PoseStamped: position, orientation w, x, y, z
}


class ConfigError(ValueError):
    """A configuration value is invalid; the message names the field."""


# --------------------------------------------------------------------------- helpers
def _set(obj, name: str, value) -> None:
    object.__setattr__(obj, name, value)


def _is_int(v) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _is_real(v) -> bool:
    return (isinstance(v, (int, float)) and not isinstance(v, bool)) and math.isfinite(float(v))


def _need(cond: bool, where: str, msg: str) -> None:
    if not cond:
        raise ConfigError(f"{where}: {msg}")


def _names(obj, attr: str, *, allow_empty: bool) -> tuple:
    where = f"{type(obj).__name__}.{attr}"
    value = getattr(obj, attr)
    _need(isinstance(value, (list, tuple)), where, f"must be a list of strings, got {value!r}")
    value = tuple(value)
    _need(allow_empty or len(value) > 0, where, "must not be empty")
    for n in value:
        _need(isinstance(n, str) and n != "", where, f"entries must be non-empty strings, got {n!r}")
    dupes = sorted({n for n in value if value.count(n) > 1})
    _need(not dupes, where, f"duplicate names {dupes}")
    _set(obj, attr, value)
    return value


def _floats(obj, attr: str) -> tuple:
    where = f"{type(obj).__name__}.{attr}"
    value = getattr(obj, attr)
    _need(isinstance(value, (list, tuple)), where, f"must be a list of numbers, got {value!r}")
    for v in value:
        _need(_is_real(v), where, f"entries must be finite numbers, got {v!r}")
    value = tuple(float(v) for v in value)
    _set(obj, attr, value)
    return value


IMAGE_PREPROCESS = ("resize", "center_crop_resize")  # runtime/images.py IMAGE_FITS minus "reject"


def _choice(obj, attr: str, choices) -> None:
    value = getattr(obj, attr)
    _need(value in choices, f"{type(obj).__name__}.{attr}", f"must be one of {list(choices)}, got {value!r}")


def _pos_int(obj, attr: str, minimum: int = 1) -> None:
    value = getattr(obj, attr)
    _need(_is_int(value) and value >= minimum, f"{type(obj).__name__}.{attr}",
          f"must be an int >= {minimum}, got {value!r}")


def _json_dict(obj, attr: str) -> None:
    where = f"{type(obj).__name__}.{attr}"
    value = getattr(obj, attr)
    _need(isinstance(value, Mapping), where, f"must be a dict, got {type(value).__name__}")
    for k in value:
        _need(isinstance(k, str), where, f"keys must be strings, got {k!r}")
    try:
        text = json.dumps(dict(value), allow_nan=False)
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"{where}: must be JSON-serialisable with finite numbers ({exc})") from None
    _set(obj, attr, json.loads(text))  # a private, plain copy (lists instead of tuples)


def check_state_inputs(value, state_names, where: str) -> dict:
    """Validate ``{input_name: {"type": "point"|"pose", "names": [...]}}`` -> a plain copy.

    Each input's names map in order to the fields of its type (:data:`STATE_INPUT_TYPES`);
    every name must be one of ``state_names`` and belong to one input only. Raises
    :class:`ConfigError` naming ``where`` and the input.
    """
    _need(isinstance(value, Mapping), where, f"must be a dict of input name -> {{type, names}}, got {value!r}")
    out, owner = {}, {}
    for name, entry in value.items():
        at = f"{where}[{name!r}]"
        _need(isinstance(name, str) and name != "" and not name.startswith("/"), where,
              f"input names must be non-empty relative topic names, got {name!r}")
        _need(isinstance(entry, Mapping) and set(entry) == {"type", "names"}, at,
              f"must be {{\"type\": ..., \"names\": [...]}}, got {entry!r}")
        kind = entry["type"]
        _need(kind in STATE_INPUT_TYPES, f"{at}.type", f"must be one of {list(STATE_INPUT_TYPES)}, got {kind!r}")
        names = entry["names"]
        fields = STATE_INPUT_TYPES[kind]
        _need(isinstance(names, (list, tuple)) and 1 <= len(names) <= len(fields), f"{at}.names",
              f"a {kind} input maps 1..{len(fields)} names to {list(fields)} in order, got {names!r}")
        for n in names:
            _need(isinstance(n, str) and n != "", f"{at}.names", f"entries must be non-empty strings, got {n!r}")
            _need(n in state_names, f"{at}.names", f"{n!r} is not one of the state names {list(state_names)}")
            _need(n not in owner, f"{at}.names", f"{n!r} is already an entry of input {owner.get(n)!r}")
            owner[n] = name
        out[name] = {"type": kind, "names": list(names)}
    return out


# --------------------------------------------------------------------------- specs
@dataclass(frozen=True)
class ActionSpec:
    """The robot action: absolute joint position targets, in this joint order."""

    joint_names: tuple
    lower_limits: tuple
    upper_limits: tuple

    def __post_init__(self):
        names = _names(self, "joint_names", allow_empty=False)
        lo = _floats(self, "lower_limits")
        hi = _floats(self, "upper_limits")
        _need(len(lo) == len(names), "ActionSpec.lower_limits",
              f"has {len(lo)} entries but joint_names has {len(names)}")
        _need(len(hi) == len(names), "ActionSpec.upper_limits",
              f"has {len(hi)} entries but joint_names has {len(names)}")
        bad = [n for n, a, b in zip(names, lo, hi) if not a < b]
        _need(not bad, "ActionSpec.lower_limits", f"must be < upper_limits; violated for joints {bad}")

    @property
    def dim(self) -> int:
        return len(self.joint_names)


@dataclass(frozen=True)
class ObservationSpec:
    """Low-dimensional state entries (in order, at least one: the encoder always has a
    proprio branch) and cameras (each an RGB image of ``image_size``).

    ``state_inputs``: where state entries that are not joints come from, as
    ``{input_name: {"type": "point"|"pose", "names": [...]}}`` (:data:`STATE_INPUT_TYPES`):
    a ``point`` input is a ``geometry_msgs/PointStamped`` whose x, y, z are the names in
    order (1-3 names), a ``pose`` input a ``geometry_msgs/PoseStamped`` (position x, y, z,
    orientation qw, qx, qy, qz; 1-7 names). The input's ROS topic is its name (relative,
    remappable). Every name listed is one of ``state_names``; the state names of no input
    are read from JointState by name (:attr:`joint_state_names`). Default ``{}``: everything
    from JointState (the format of older models).
    """

    state_names: tuple
    camera_names: tuple = ()
    image_size: tuple = (96, 96)  # (H, W) of every camera image fed to the encoder
    state_inputs: dict = field(default_factory=dict)
    # How recorded frames were brought to image_size for training (runtime/images.py):
    # "resize" (whole frame scaled) or "center_crop_resize"; the node applies the same.
    image_preprocess: str = "resize"

    def __post_init__(self):
        names = _names(self, "state_names", allow_empty=False)
        _names(self, "camera_names", allow_empty=True)
        _choice(self, "image_preprocess", IMAGE_PREPROCESS)
        size = self.image_size
        _need(isinstance(size, (list, tuple)) and len(size) == 2 and all(_is_int(s) and s > 0 for s in size),
              "ObservationSpec.image_size", f"must be (H, W) with positive ints, got {size!r}")
        _set(self, "image_size", tuple(size))
        _set(self, "state_inputs", check_state_inputs(self.state_inputs, names, "ObservationSpec.state_inputs"))

    @property
    def state_dim(self) -> int:
        return len(self.state_names)

    @property
    def joint_state_names(self) -> tuple:
        """The state entries read from JointState (those of no ``state_inputs`` entry), in order."""
        from_inputs = {n for entry in self.state_inputs.values() for n in entry["names"]}
        return tuple(n for n in self.state_names if n not in from_inputs)


@dataclass(frozen=True)
class HorizonConfig:
    """Receding horizon (Diffusion Policy, Chi et al. 2023): observe T_o, predict T_p, execute T_a."""

    T_o: int = 2
    T_p: int = 16
    T_a: int = 8
    dt: float = 0.1  # seconds between consecutive chunk rows (1 / control rate of the data)

    def __post_init__(self):
        _pos_int(self, "T_o")
        _pos_int(self, "T_p")
        _pos_int(self, "T_a")
        _need(self.T_a <= self.T_p, "HorizonConfig.T_a", f"must be <= T_p ({self.T_p}), got {self.T_a}")
        _need(_is_real(self.dt) and self.dt > 0, "HorizonConfig.dt", f"must be a finite number > 0, got {self.dt!r}")
        _set(self, "dt", float(self.dt))


@dataclass(frozen=True)
class FlowConfig:
    """Conditional flow matching (Lipman et al. 2023; OT-CFM, Tong et al. 2023).

    Convention: t = 0 noise, t = 1 data. ``coupling``: ``independent`` (plain CFM),
    ``ot_cond`` (minibatch OT with the condition in the cost, C²OT arXiv 2503.10636),
    ``ot_blind`` (OT ignoring the condition; an ablation known to break conditioning).
    """

    time_distribution: str = "uniform"
    time_params: dict = field(default_factory=dict)
    coupling: str = "independent"
    ot_cond_weight: float = 10.0  # λ of the condition term in the OT cost (coupling.ot_coupling)
    flow_time_scale: float = 100.0
    default_method: str = "euler"
    default_steps: int = 10

    def __post_init__(self):
        _choice(self, "time_distribution", TIME_DISTRIBUTIONS)
        _json_dict(self, "time_params")
        for k, v in self.time_params.items():
            _need(_is_real(v), "FlowConfig.time_params", f"value of {k!r} must be a finite number, got {v!r}")
        _choice(self, "coupling", COUPLINGS)
        _need(_is_real(self.ot_cond_weight) and self.ot_cond_weight >= 0, "FlowConfig.ot_cond_weight",
              f"must be a finite number >= 0, got {self.ot_cond_weight!r}")
        _need(_is_real(self.flow_time_scale) and self.flow_time_scale > 0, "FlowConfig.flow_time_scale",
              f"must be a finite number > 0, got {self.flow_time_scale!r}")
        _choice(self, "default_method", ODE_METHODS)
        _pos_int(self, "default_steps")
        _set(self, "ot_cond_weight", float(self.ot_cond_weight))
        _set(self, "flow_time_scale", float(self.flow_time_scale))


@dataclass(frozen=True)
class DiffusionConfig:
    """DDPM training (Ho et al. 2020) with DDIM (Song et al. 2021) or DDPM sampling."""

    num_train_steps: int = 100
    beta_schedule: str = "squaredcos_cap_v2"
    beta_start: float = 1e-4
    beta_end: float = 0.02
    prediction_type: str = "epsilon"
    clip_sample: bool = True
    default_sampler: str = "ddim"
    default_steps: int = 10
    spacing: str = "leading"
    eta: float = 0.0

    def __post_init__(self):
        _pos_int(self, "num_train_steps", minimum=2)
        _choice(self, "beta_schedule", BETA_SCHEDULES)
        for name in ("beta_start", "beta_end"):
            v = getattr(self, name)
            _need(_is_real(v) and 0 < v < 1, f"DiffusionConfig.{name}", f"must be in (0, 1), got {v!r}")
            _set(self, name, float(v))
        _need(self.beta_start <= self.beta_end, "DiffusionConfig.beta_start",
              f"must be <= beta_end ({self.beta_end}), got {self.beta_start}")
        _choice(self, "prediction_type", PREDICTION_TYPES)
        _need(isinstance(self.clip_sample, bool), "DiffusionConfig.clip_sample",
              f"must be true or false, got {self.clip_sample!r}")
        _choice(self, "default_sampler", DIFFUSION_SAMPLERS)
        _pos_int(self, "default_steps")
        _need(self.default_steps <= self.num_train_steps, "DiffusionConfig.default_steps",
              f"must be <= num_train_steps ({self.num_train_steps}), got {self.default_steps}")
        _choice(self, "spacing", SPACINGS)
        _need(_is_real(self.eta) and 0 <= self.eta <= 1, "DiffusionConfig.eta",
              f"must be in [0, 1] (0 = deterministic DDIM), got {self.eta!r}")
        _set(self, "eta", float(self.eta))


@dataclass(frozen=True)
class NetworkConfig:
    """Denoiser network: ``build_denoiser(name, **params)`` (dims are filled in by the policy)."""

    name: str = "unet1d"
    params: dict = field(default_factory=dict)

    def __post_init__(self):
        _choice(self, "name", NETWORKS)
        _json_dict(self, "params")


@dataclass(frozen=True)
class EncoderConfig:
    """Extra keyword arguments of ``ObsEncoderConfig`` (state_dim, T_o, cameras and image
    size come from the observation spec and horizons)."""

    params: dict = field(default_factory=dict)

    def __post_init__(self):
        _json_dict(self, "params")


@dataclass(frozen=True)
class AuxiliaryConfig:
    """Training-only state supervision ("privileged" information of the demonstrations).

    ``state_names``: entries of the training data's state that the policy does *not*
    observe at run time (e.g. an object position known in simulation but only seen in
    the camera by the deployed policy). A linear head on the observation tokens predicts
    them (normalised to [−1, 1]) and ``weight`` × that MSE is added to the training loss,
    which teaches the encoder to locate them in the image. The head is never used at run
    time; with no names (the default) there is no head and no extra loss.

    ``from_images``: the head reads only the cameras' part of the tokens, not the
    proprioception. Needed where the joints already betray the target once the
    demonstrator moves towards it (ALOHA: an expert planned from the cube pose), so that a
    head on the whole token learns it from the joints and the camera encoder never learns
    to locate it (models/aloha_image_flow, docs/aloha.md).
    """

    state_names: tuple = ()
    weight: float = 1.0
    from_images: bool = False

    def __post_init__(self):
        _names(self, "state_names", allow_empty=True)
        _need(isinstance(self.from_images, bool), "AuxiliaryConfig.from_images",
              f"must be true or false, got {self.from_images!r}")
        _need(_is_real(self.weight) and self.weight >= 0, "AuxiliaryConfig.weight",
              f"must be a finite number >= 0, got {self.weight!r}")
        _set(self, "weight", float(self.weight))


@dataclass(frozen=True)
class PolicyConfig:
    """Everything needed to rebuild a :class:`~genpolicy_ros.core.policy.GenerativePolicy`.

    ``kind``: ``flow`` (flow matching), ``diffusion`` (DDPM/DDIM) or ``regression`` (the
    MSE baseline: same network, fixed zero input and timestep 0).
    ``cond_dropout``: probability of replacing the condition by the learned null
    embedding during training (classifier-free guidance, Ho & Salimans 2022).
    """

    action: ActionSpec
    observation: ObservationSpec
    kind: str = "flow"
    horizon: HorizonConfig = field(default_factory=HorizonConfig)
    flow: FlowConfig = field(default_factory=FlowConfig)
    diffusion: DiffusionConfig = field(default_factory=DiffusionConfig)
    network: NetworkConfig = field(default_factory=NetworkConfig)
    encoder: EncoderConfig = field(default_factory=EncoderConfig)
    auxiliary: AuxiliaryConfig = field(default_factory=AuxiliaryConfig)
    cond_dropout: float = 0.1
    seed: int = 0

    def __post_init__(self):
        for name, cls in _NESTED.items():
            _need(isinstance(getattr(self, name), cls), f"PolicyConfig.{name}",
                  f"must be a {cls.__name__}, got {type(getattr(self, name)).__name__}")
        _choice(self, "kind", POLICY_KINDS)
        _need(_is_real(self.cond_dropout) and 0 <= self.cond_dropout < 1, "PolicyConfig.cond_dropout",
              f"must be in [0, 1), got {self.cond_dropout!r}")
        _set(self, "cond_dropout", float(self.cond_dropout))
        _need(_is_int(self.seed), "PolicyConfig.seed", f"must be an int, got {self.seed!r}")
        both = sorted(set(self.auxiliary.state_names) & set(self.observation.state_names))
        _need(not both, "PolicyConfig.auxiliary.state_names",
              f"must not repeat observed state entries (observation.state_names); both name {both}")
        _need(not (self.auxiliary.from_images and not self.observation.camera_names),
              "PolicyConfig.auxiliary.from_images", "needs cameras (observation.camera_names)")

    @property
    def default_sampler(self) -> str:
        """``flow`` for flow policies, ``ddim``/``ddpm`` for diffusion, ``regression`` otherwise."""
        if self.kind == "flow":
            return "flow"
        if self.kind == "diffusion":
            return self.diffusion.default_sampler
        return "regression"

    # ------------------------------------------------------------------- round trip
    def to_dict(self) -> dict:
        """Plain JSON-ready dict, with ``format_version`` first."""
        out = {"format_version": FORMAT_VERSION}
        out.update(_to_plain(self))
        return out

    @classmethod
    def from_dict(cls, data: Mapping) -> "PolicyConfig":
        if not isinstance(data, Mapping):
            raise ConfigError(f"PolicyConfig: expected a JSON object, got {type(data).__name__}")
        data = dict(data)
        if "format_version" not in data:
            raise ConfigError("PolicyConfig.format_version: missing (this build reads version "
                              f"{FORMAT_VERSION})")
        version = data.pop("format_version")
        if not _is_int(version) or version != FORMAT_VERSION:
            raise ConfigError(f"PolicyConfig.format_version: unsupported version {version!r}; "
                              f"this build reads version {FORMAT_VERSION} only")
        return _from_plain(cls, data, "PolicyConfig")

    def to_json(self, indent: int = 2) -> str:
        return json.dumps(self.to_dict(), indent=indent, allow_nan=False)

    @classmethod
    def from_json(cls, text: str) -> "PolicyConfig":
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise ConfigError(f"PolicyConfig: invalid JSON ({exc})") from None
        return cls.from_dict(data)


_NESTED = {
    "action": ActionSpec,
    "observation": ObservationSpec,
    "horizon": HorizonConfig,
    "flow": FlowConfig,
    "diffusion": DiffusionConfig,
    "network": NetworkConfig,
    "encoder": EncoderConfig,
    "auxiliary": AuxiliaryConfig,
}


def _to_plain(obj) -> dict:
    out = {}
    for f in dataclasses.fields(obj):
        v = getattr(obj, f.name)
        if dataclasses.is_dataclass(v):
            out[f.name] = _to_plain(v)
        elif isinstance(v, tuple):
            out[f.name] = list(v)
        elif isinstance(v, dict):
            out[f.name] = json.loads(json.dumps(v))
        else:
            out[f.name] = v
    return out


def _from_plain(cls, data: Mapping, where: str):
    if not isinstance(data, Mapping):
        raise ConfigError(f"{where}: expected a JSON object, got {type(data).__name__}")
    fields = {f.name: f for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - set(fields))
    if unknown:
        raise ConfigError(f"{where}: unknown keys {unknown} (known: {sorted(fields)})")
    kwargs = {}
    for name, value in data.items():
        nested = _NESTED.get(name) if cls is PolicyConfig else None
        kwargs[name] = _from_plain(nested, value, f"{where}.{name}") if nested else value
    missing = [n for n, f in fields.items() if n not in kwargs
               and f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING]
    if missing:
        raise ConfigError(f"{where}: missing required keys {missing}")
    return cls(**kwargs)
