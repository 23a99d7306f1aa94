"""What the streams of a recording mean, for ``genpolicy train --bag``: a :class:`BagMapping`.

A bag from any robot converts once these are known: the action topic and its joints, the
state entries (JointState joints and non-joint inputs), the cameras and the grid period
``dt``. Each comes from the first source that has it (and the printed mapping says which):

1. a command-line option (``--action-joints``, ``--state-joints``, ``--state-input``,
   ``--cameras``, ``--action-topic``, ``--dt``);
2. the defaults of a task the user named (``--task reach``; passed in as plain values);
3. the mapping ``genpolicy collect`` recorded in the bag (``custom_data`` key
   ``genpolicy_ros.collect``);
4. the bag itself: the action topic is the JointTrajectory (else Float64MultiArray) topic,
   the action joints are the names in its messages, the state joints the names in the
   first JointState, each PointStamped / PoseStamped topic ``/name`` an input ``name`` with
   the entries ``name_x, name_y, name_z`` (+ ``_qw, _qx, _qy, _qz``), the cameras the image
   topics (``/camera/image_raw`` -> ``camera``, ``/camera/<c>/image_raw`` -> ``c``), and dt
   the median period of the commands.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, List, Mapping, Optional, Sequence, Tuple

import numpy as np

from .bag_io import bag_custom_data, bag_topics, read_bag_messages
from .bags import ACTION_TYPES, FORWARD_TOPIC, POINT_TYPE, POSE_TYPE, STATE_TOPIC, TRAJECTORY_TOPIC, bag_to_episodes
from .episodes import EPISODE_PATTERN, METADATA_FILE

COLLECT_METADATA_KEY = "genpolicy_ros.collect"  # custom_data written by `genpolicy collect`
IMAGE_TYPES = ("sensor_msgs/msg/Image", "sensor_msgs/msg/CompressedImage")
_FIELDS = {"point": ("x", "y", "z"), "pose": ("x", "y", "z", "qw", "qx", "qy", "qz")}
_DT_SAMPLES = 400  # command messages read to infer dt


@dataclass(frozen=True)
class BagMapping:
    """The meaning of a recording's streams (see the module docstring)."""

    action_topic: str
    action_joints: Tuple[str, ...]
    joint_state_names: Tuple[str, ...]  # read by name from JointState
    state_inputs: Dict[str, dict]  # {input: {"type": "point"|"pose", "names": [...]}}
    cameras: Dict[str, Optional[str]]  # camera -> recorded topic (None: the standard camera topics)
    dt: float
    joint_limits: Optional[Tuple[List[float], List[float]]] = None
    task: str = ""
    units: Optional[Dict[str, str]] = None
    state_topic: str = STATE_TOPIC
    sources: Dict[str, str] = field(default_factory=dict)  # field -> where its value came from

    @property
    def state_names(self) -> Tuple[str, ...]:
        """The data set's state entries: the JointState joints, then each input's names."""
        inputs = tuple(n for entry in self.state_inputs.values() for n in entry["names"])
        return tuple(n for n in self.joint_state_names if n not in inputs) + inputs

    def describe(self) -> str:
        """Human-readable mapping, one line per field with its source."""
        def line(label, value, key):
            return f"  {label:<14} {value}  ({self.sources.get(key, '?')})"

        inputs = "; ".join(f"{n} ({e['type']} /{n}): {', '.join(e['names'])}" for n, e in self.state_inputs.items())
        cams = ", ".join(f"{c} ({t or 'camera topics'})" for c, t in self.cameras.items())
        return "\n".join([
            "bag mapping:",
            line("action topic", self.action_topic, "action_topic"),
            line("action joints", ", ".join(self.action_joints), "action_joints"),
            line("state joints", ", ".join(self.joint_state_names) or "none", "joint_state_names"),
            line("inputs", inputs or "none", "state_inputs"),
            line("cameras", cams or "none", "cameras"),
            line("dt", f"{self.dt:g} s", "dt"),
            line("joint limits", "given" if self.joint_limits else "none (demonstrated range + 5 %)", "joint_limits"),
            line("task", self.task or "none", "task"),
        ])


def parse_state_input(text: str) -> Tuple[str, dict]:
    """``NAME=TYPE:n1,n2,...`` (``--state-input``) -> (name, {"type", "names"})."""
    try:
        name, rest = text.split("=", 1)
        kind, names = rest.split(":", 1)
    except ValueError:
        raise ValueError(f"--state-input {text!r}: expected NAME=TYPE:n1,n2 (e.g. target=point:target_x,target_y)") \
            from None
    entry = {"type": kind.strip(), "names": [n.strip() for n in names.split(",") if n.strip()]}
    if entry["type"] not in _FIELDS:
        raise ValueError(f"--state-input {text!r}: TYPE must be one of {list(_FIELDS)}")
    return name.strip(), entry


def infer_bag_mapping(bags: Sequence, *, images: bool = False, action_topic: Optional[str] = None,
                      action_joints: Optional[Sequence[str]] = None, state_joints: Optional[Sequence[str]] = None,
                      state_inputs: Optional[Mapping[str, dict]] = None,
                      cameras: Optional[Mapping[str, Optional[str]]] = None, dt: Optional[float] = None,
                      task_defaults: Optional[Mapping] = None) -> BagMapping:
    """The :class:`BagMapping` of ``bags`` (read from the first; see the module docstring).

    Keyword arguments are the explicit choices (None = not given); ``task_defaults`` the
    plain defaults of a task the user named (keys ``task``, ``action_joints``,
    ``joint_state_names``, ``state_inputs``, ``cameras``, ``dt``, ``joint_limits``, ``units``).
    ``images``: whether cameras are wanted at all (without it: none).
    """
    first = Path(bags[0])
    present = bag_topics(first)
    recorded = _recorded_mapping(first)
    task = dict(task_defaults or {})
    sources: Dict[str, str] = {}

    def pick(key, option, inferred=None, option_label="option"):
        for label, value in ((option_label, option), (f"task {task.get('task')}", task.get(key)),
                             ("recorded by genpolicy collect", recorded.get(key))):
            if value is not None:
                sources[key] = label
                return value
        if inferred is not None:
            value, why = inferred()
            sources[key] = f"inferred: {why}"
            return value
        sources[key] = "not given"
        return None

    topic = pick("action_topic", action_topic, lambda: _infer_action_topic(present))
    if topic not in present:
        raise ValueError(f"{first}: action topic {topic} is not in the bag (it has {sorted(present)})")
    joints = pick("action_joints", action_joints, lambda: _infer_action_joints(first, topic, present[topic]))
    state = pick("joint_state_names", state_joints, lambda: _infer_joint_state_names(first))
    inputs = pick("state_inputs", state_inputs, lambda: _infer_inputs(present))
    if images:
        cams = pick("cameras", cameras, lambda: _infer_cameras(present))
        if not cams:
            raise ValueError(f"{first}: images wanted but the bag has no Image/CompressedImage topic "
                             f"(it has {sorted(present)}); pass --cameras NAME=TOPIC")
    else:
        cams, sources["cameras"] = {}, "no images wanted"
    period = pick("dt", dt, lambda: _infer_dt(first, topic, present[topic]))
    limits = pick("joint_limits", None)
    units = pick("units", None)
    name = task.get("task") or recorded.get("task") or ""
    sources["task"] = "named" if task.get("task") else ("recorded by genpolicy collect" if name else "none")
    return BagMapping(action_topic=topic, action_joints=tuple(joints), joint_state_names=tuple(state),
                      state_inputs={k: {"type": v["type"], "names": list(v["names"])} for k, v in inputs.items()},
                      cameras=dict(cams), dt=float(period),
                      joint_limits=None if limits is None else (list(limits[0]), list(limits[1])),
                      task=name, units=dict(units) if units else None, sources=sources)


def _recorded_mapping(bag: Path) -> dict:
    """The mapping ``genpolicy collect`` stored in the bag (``{}`` when none); older bags
    recorded ``joint_names`` (the action joints) and ``state_names`` (JointState entries)."""
    text = bag_custom_data(bag).get(COLLECT_METADATA_KEY)
    if not text:
        return {}
    try:
        doc = json.loads(text)
    except ValueError:
        return {}
    mapping = dict(doc.get("mapping") or {})
    if not mapping and doc.get("joint_names"):  # before the mapping was recorded
        mapping = {"action_joints": doc["joint_names"], "joint_state_names": doc.get("state_names"),
                   "state_inputs": {}, "dt": doc.get("dt")}
        if doc.get("images"):
            mapping["cameras"] = {"overhead": None}
    if "joint_names" in mapping and "joint_state_names" not in mapping:
        mapping["joint_state_names"] = mapping.pop("joint_names")
    mapping.setdefault("task", doc.get("task"))
    return {k: v for k, v in mapping.items() if v is not None}


def _infer_action_topic(present: Mapping[str, str]):
    for standard in (TRAJECTORY_TOPIC, FORWARD_TOPIC):
        if standard in present:
            return standard, f"the {present[standard].split('/')[-1]} topic"
    for msgtype in ACTION_TYPES:
        found = sorted(t for t, m in present.items() if m == msgtype)
        if len(found) == 1:
            return found[0], f"the only {msgtype.split('/')[-1]} topic"
    raise ValueError(f"no command topic found (a JointTrajectory or Float64MultiArray topic); pass --action-topic "
                     f"(topics: {sorted(present)})")


def _infer_action_joints(bag: Path, topic: str, msgtype: str):
    if msgtype != "trajectory_msgs/msg/JointTrajectory":
        raise ValueError(f"{topic} ({msgtype}) does not name its joints: pass --action-joints a,b,...")
    for _, _, _, msg in read_bag_messages(bag, [topic]):
        if list(msg.joint_names):
            return list(msg.joint_names), "names in the trajectory messages"
    raise ValueError(f"{bag}: no JointTrajectory on {topic} names its joints; pass --action-joints")


def _infer_joint_state_names(bag: Path):
    for _, _, _, msg in read_bag_messages(bag, [STATE_TOPIC]):
        return list(msg.name), f"names in the first {STATE_TOPIC} message"
    raise ValueError(f"{bag}: no {STATE_TOPIC} messages")


def _infer_inputs(present: Mapping[str, str]):
    inputs = {}
    for topic, msgtype in sorted(present.items()):
        kind = {POINT_TYPE: "point", POSE_TYPE: "pose"}.get(msgtype)
        if kind:
            name = topic.lstrip("/")
            inputs[name] = {"type": kind, "names": [f"{name.replace('/', '_')}_{f}" for f in _FIELDS[kind]]}
    return inputs, "PointStamped / PoseStamped topics" if inputs else "no PointStamped / PoseStamped topics"


def _infer_cameras(present: Mapping[str, str]):
    cams: Dict[str, str] = {}
    for topic in sorted(t for t, m in present.items() if m in IMAGE_TYPES):
        base = topic[: -len("/compressed")] if topic.endswith("/compressed") else topic
        parts = base.strip("/").split("/")
        name = parts[1] if len(parts) == 3 and parts[0] == "camera" else parts[0]
        if name not in cams or not topic.endswith("/compressed"):  # raw preferred
            cams[name] = topic
    return cams, "image topics"


def _infer_dt(bag: Path, topic: str, msgtype: str):
    stamps = []
    for _, _, received, msg in read_bag_messages(bag, [topic]):
        stamp = received
        if msgtype == "trajectory_msgs/msg/JointTrajectory":
            stamp = int(msg.header.stamp.sec) * 1_000_000_000 + int(msg.header.stamp.nanosec) or received
        stamps.append(stamp)
        if len(stamps) >= _DT_SAMPLES:
            break
    steps = np.diff(np.sort(np.asarray(stamps, dtype=np.int64)))  # [M-1] ns
    steps = steps[steps > 0]
    if steps.size == 0:
        raise ValueError(f"{bag}: too few commands on {topic} to infer dt; pass --dt")
    dt = round(float(np.median(steps)) / 1e9, 4)
    return dt, f"median period of {steps.size + 1} commands"


def bags_to_dataset_dir(bags: Sequence, out_dir=None, *, mapping: Optional[BagMapping] = None, images: bool = False,
                        **kwargs) -> Path:
    """Convert recordings into an episode data set with ``mapping`` (default: inferred,
    :func:`infer_bag_mapping` with ``images``; further keyword arguments go to
    :func:`~genpolicy_ros.data.bags.bag_to_episodes`). ``out_dir`` defaults to
    ``<first bag>_dataset`` next to it; a data set already there (``dataset.json`` +
    ``episode_*.npz``) is replaced — it is derived data. Returns its path."""
    bags = [Path(b) for b in ([bags] if isinstance(bags, (str, Path)) else bags)]
    if not bags:
        raise ValueError("bags_to_dataset_dir needs at least one bag")
    for bag in bags:
        if not (bag / "metadata.yaml").is_file():
            raise FileNotFoundError(f"{bag}: not a rosbag2 directory (no metadata.yaml)")
    out = Path(out_dir) if out_dir is not None else bags[0].with_name(bags[0].name + "_dataset")
    convert_bags(bags, out, mapping or infer_bag_mapping(bags, images=images), **kwargs)
    return out


def convert_bags(bags: Sequence, out_dir, mapping: BagMapping, **kwargs):
    """:func:`bags_to_dataset_dir` with a given mapping -> the ``EpisodeDataset`` (its
    ``report``: episodes, rows, skipped episodes, rejected messages, notes)."""
    out = Path(out_dir)
    if out.exists():
        if any(p for p in out.iterdir() if p.name != METADATA_FILE and not EPISODE_PATTERN.match(p.name)):
            raise FileExistsError(f"{out} holds files other than an episode data set; refusing to replace it")
        for p in out.iterdir():
            p.unlink()
    return bag_to_episodes([Path(b) for b in bags], out, mapping.action_joints, mapping.state_names, dt=mapping.dt,
                           action_topic=mapping.action_topic, state_topic=mapping.state_topic,
                           cameras=mapping.cameras, state_inputs=mapping.state_inputs,
                           joint_limits=mapping.joint_limits, units=mapping.units, task=mapping.task, exist_ok=True,
                           **kwargs)
