"""Demonstrations recorded as rosbag2 (MCAP), converted into episodes by header stamps.

- :func:`bag_to_episodes` — resample a recording onto a ``dt`` grid of **header stamps**
  (:mod:`.bag_alignment`) and write the episode data set of :mod:`genpolicy_ros.data.episodes`.
  What the streams mean (the action joints, the state entries, the cameras, the period) is
  given explicitly; :mod:`.bag_mapping` infers it from a bag and is what
  ``genpolicy train --bag`` uses.
- The bag I/O (:class:`BagWriter`, :class:`BagRecorder`, :func:`read_bag_messages`, ...)
  lives in :mod:`.bag_io` and is re-exported here.

Stamps: JointState / PointStamped / PoseStamped / Image / CompressedImage use
``header.stamp``; a JointTrajectory its ``header.stamp`` (0 = "on receipt" → the receive
time); a Float64MultiArray has no header, so its receive time is used. The action of a
JointTrajectory is its first point (the target the controller moves to next).

State entries are read **by name**: from JointState, and from the non-joint inputs
(``state_inputs``: ``{input: {"type": "point"|"pose", "names": [...]}}``, the topic of an
input is ``/<input>``; names map in order to x, y, z (point) or x, y, z, qw, qx, qy, qz
(pose)). A bag without an input's topic (recorded before the inputs existed, when e.g. the
reach target was two JointState entries) has that input's names read from JointState.
"""
from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, List, Mapping, Optional, Sequence, Tuple, Union

import numpy as np

from ..ros import topics as _topics
from .bag_alignment import NS_PER_S, Stream, episode_windows, resample
from .bag_io import (  # noqa: F401  (re-exported: the bag I/O's historical home)
    BAG_VERSION,
    DEFAULT_TYPESTORE,
    BagRecorder,
    BagWriter,
    PathLike,
    bag_custom_data,
    bag_topics,
    deserialize_cdr,
    get_typestore,
    msgtype_name,
    read_bag_messages,
)
from .episodes import DatasetMetadata, Episode, EpisodeDataset

log = logging.getLogger(__name__)

# The standard topics as they appear in a bag recorded at the root namespace.
STATE_TOPIC = _topics.absolute(_topics.JOINT_STATES)
TRAJECTORY_TOPIC = _topics.absolute(_topics.TRAJECTORY)
FORWARD_TOPIC = _topics.absolute(_topics.FORWARD)
IMAGE_TOPIC, COMPRESSED_TOPIC = (_topics.absolute(t) for t in _topics.camera_topics(["camera"])["camera"])
EPISODE_TOPIC = _topics.private(_topics.SIM_NODE, _topics.EPISODE)
CLOCK_TOPIC = _topics.CLOCK

POINT_TYPE = "geometry_msgs/msg/PointStamped"
POSE_TYPE = "geometry_msgs/msg/PoseStamped"
ACTION_TYPES = ("trajectory_msgs/msg/JointTrajectory", "std_msgs/msg/Float64MultiArray")


def _stamp_ns(stamp) -> int:
    return int(stamp.sec) * NS_PER_S + int(stamp.nanosec)


@dataclass
class ConversionReport:
    """What :func:`bag_to_episodes` did (also logged)."""

    episodes_written: int = 0
    rows: int = 0
    skipped_episodes: List[str] = field(default_factory=list)
    rejected_messages: Dict[str, int] = field(default_factory=dict)
    notes: List[str] = field(default_factory=list)  # e.g. inputs read from JointState in an older bag

    def reject(self, topic: str) -> None:
        self.rejected_messages[topic] = self.rejected_messages.get(topic, 0) + 1


def camera_topic_candidates(cameras: Sequence[str]) -> Dict[str, Tuple[str, str]]:
    """camera -> (raw topic, compressed topic) as recorded (the policy node's naming rule)."""
    return {c: (_topics.absolute(raw), _topics.absolute(comp)) for c, (raw, comp) in
            _topics.camera_topics(cameras).items()}


def bag_to_episodes(
    bag_paths: Union[PathLike, Sequence[PathLike]],
    out_dir: PathLike,
    joint_names: Sequence[str],
    state_names: Sequence[str],
    camera: Optional[str] = None,
    dt: float = 0.05,
    action_topic: str = TRAJECTORY_TOPIC,
    *,
    state_topic: str = STATE_TOPIC,
    image_topic: Optional[str] = None,
    cameras: Optional[Mapping[str, Optional[str]]] = None,
    state_inputs: Optional[Mapping[str, Mapping]] = None,
    episode_topic: str = EPISODE_TOPIC,
    include_incomplete: bool = False,
    max_gap_s: float = 0.5,
    max_sample_age_s: float = 0.5,
    min_rows: int = 2,
    joint_limits: Optional[Tuple[Sequence[float], Sequence[float]]] = None,
    description: str = "",
    units: Optional[Dict[str, str]] = None,
    task: str = "",
    typestore: str = DEFAULT_TYPESTORE,
    exist_ok: bool = False,
) -> EpisodeDataset:
    """Convert recording(s) into an episode data set at ``out_dir`` (module docstring).

    joint_names: action dims (the command's joints, in this order — a Float64MultiArray
    is taken to be in this order); state_names: every state entry, in order — those of a
    ``state_inputs`` entry from its topic (or JointState in a bag without it), the others
    **by name** from the JointState messages on ``state_topic``; cameras: ``{name: Image
    or CompressedImage topic, or None}`` (None: ``camera/image_raw`` if recorded, else its
    compressed topic; several cameras: ``camera/<name>/...``); ``camera`` / ``image_topic``
    name a single one; dt: grid period (s); task: recorded in dataset.json. Episodes never
    span two bags. Returns the data set; ``out_dir`` must not hold one unless ``exist_ok``.
    """
    from ..core.config import STATE_INPUT_TYPES, check_state_inputs
    from ..ros.conversions import compressed_image_to_array, image_to_array

    paths = [Path(bag_paths)] if isinstance(bag_paths, (str, Path)) else [Path(p) for p in bag_paths]
    if not paths:
        raise ValueError("bag_to_episodes needs at least one bag")
    if not (np.isfinite(dt) and dt > 0):
        raise ValueError(f"dt must be > 0 s, got {dt}")
    joint_names, state_names = list(joint_names), list(state_names)
    inputs = check_state_inputs(state_inputs or {}, state_names, "bag_to_episodes state_inputs")
    if cameras is None:
        cameras = {camera: image_topic} if camera is not None else {}
    cameras = dict(cameras)
    dt_ns = int(round(dt * NS_PER_S))
    report = ConversionReport()
    episodes: List[Episode] = []
    image_sizes: Dict[str, Tuple[int, int]] = {}
    column = {n: i for i, n in enumerate(state_names)}

    for path in paths:
        present = bag_topics(path)
        cam_topics = _camera_topics(path, cameras, present)
        input_topics = {}  # topic -> input name, for the inputs this bag records
        from_joint_state = [n for n in state_names]  # entries read from JointState in this bag
        for name, entry in inputs.items():
            topic = _topics.absolute(_topics.input_topic(name))
            if topic in present:
                input_topics[topic] = name
                from_joint_state = [n for n in from_joint_state if n not in entry["names"]]
            else:
                note = f"{path.name}: no {topic} topic: {entry['names']} read from JointState (older recording)"
                report.notes.append(note)
        for needed in [state_topic, action_topic]:
            if needed not in present:
                raise ValueError(f"{path}: topic {needed} is not in the bag (it has {sorted(present)})")

        streams = {"state": Stream(), "action": Stream()}
        streams.update({f"input:{name}": Stream() for name in input_topics.values()})
        streams.update({f"image:{cam}": Stream() for cam in cam_topics})
        image_of = {topic: cam for cam, topic in cam_topics.items()}
        statuses: List[Tuple[int, dict]] = []
        wanted = [state_topic, action_topic, episode_topic, *input_topics, *image_of]
        for topic, msgtype, received, msg in read_bag_messages(path, wanted, typestore=typestore):
            if topic == state_topic:
                q = joint_state_values(msg, from_joint_state)
                if q is None:
                    report.reject(topic)
                else:
                    streams["state"].add(_stamp_ns(msg.header.stamp), received, q)
            elif topic == action_topic:
                parsed = action_values(msg, msgtype, joint_names, received)
                if parsed is None:
                    report.reject(topic)
                else:
                    streams["action"].add(parsed[0], received, parsed[1])
            elif topic in input_topics:
                name = input_topics[topic]
                values = input_values(msg, msgtype, STATE_INPUT_TYPES[inputs[name]["type"]], len(inputs[name]["names"]))
                if values is None:
                    report.reject(topic)
                else:
                    streams[f"input:{name}"].add(_stamp_ns(msg.header.stamp), received, values)
            elif topic in image_of:
                cam = image_of[topic]
                decode = compressed_image_to_array if msgtype.endswith("CompressedImage") else image_to_array
                frame, _ = decode(msg, image_sizes.get(cam))
                if frame is None:
                    report.reject(topic)
                else:
                    image_sizes.setdefault(cam, tuple(frame.shape[:2]))
                    streams[f"image:{cam}"].add(_stamp_ns(msg.header.stamp), received, frame)
            elif topic == episode_topic and msgtype == "std_msgs/msg/String":
                try:
                    statuses.append((received, json.loads(msg.data)))
                except (ValueError, TypeError):
                    report.reject(topic)

        state_columns = [column[n] for n in from_joint_state]
        input_columns = {name: [column[n] for n in inputs[name]["names"]] for name in input_topics.values()}
        for label, window in episode_windows(path.name, streams["state"], statuses, include_incomplete, max_gap_s,
                                             report):
            aligned = resample(streams, window, dt_ns, int(round(max_sample_age_s * NS_PER_S)))
            n = 0 if aligned is None else len(aligned[0])
            if n < min_rows:
                report.skipped_episodes.append(f"{label}: {n} rows < min_rows={min_rows}")
                continue
            grid, values = aligned
            state = np.zeros((n, len(state_names)), dtype=np.float32)  # [N, D_s]
            state[:, state_columns] = np.stack(values["state"])  # [N, D_joint-state entries]
            for name, cols in input_columns.items():
                state[:, cols] = np.stack(values[f"input:{name}"])  # [N, len(names)]
            episodes.append(Episode(
                timestamp=grid.astype(np.float64) / NS_PER_S,  # [N] s
                action=np.stack(values["action"]).astype(np.float32),  # [N, D_a]
                state=state,
                images={cam: np.stack(values[f"image:{cam}"]) for cam in cam_topics},  # [N, H, W, 3] each
            ))

    missing = [cam for cam in cameras if cam not in image_sizes]
    if missing and episodes:
        raise ValueError(f"no decodable frames of camera(s) {missing} in {[str(p) for p in paths]}")
    lower, upper = (None, None) if joint_limits is None else (list(joint_limits[0]), list(joint_limits[1]))
    meta = DatasetMetadata(
        joint_names=joint_names, state_names=state_names, dt=dt,
        cameras={cam: [int(s) for s in size] for cam, size in image_sizes.items()},
        units=units or {"timestamp": "s", "action": "rad", "state": "rad"},
        joint_lower_limits=lower, joint_upper_limits=upper, state_inputs=inputs, task=task,
        description=description or f"converted from rosbag2 {', '.join(p.name for p in paths)} "
                                   f"(action {action_topic}, state {state_topic}, dt {dt} s)",
    )
    dataset = EpisodeDataset.create(Path(out_dir), meta, exist_ok=exist_ok)
    for episode in episodes:
        dataset.append(episode)
        report.rows += len(episode.timestamp)
    report.episodes_written = len(episodes)
    dataset.report = report  # type: ignore[attr-defined]
    log.info("bag_to_episodes: %d episodes, %d rows; skipped %s; rejected %s; %s", report.episodes_written,
             report.rows, report.skipped_episodes, report.rejected_messages, report.notes)
    return dataset


def _camera_topics(path: Path, cameras: Mapping[str, Optional[str]], present: Mapping[str, str]) -> Dict[str, str]:
    """camera -> the recorded topic its frames are read from (raw preferred)."""
    defaults = camera_topic_candidates(list(cameras))
    out = {}
    for cam, topic in cameras.items():
        if topic is None:
            raw, compressed = defaults[cam]
            topic = raw if raw in present else compressed
        if topic not in present:
            raise ValueError(f"{path}: camera {cam!r}: topic {topic} is not in the bag (it has {sorted(present)})")
        out[cam] = topic
    return out


def joint_state_values(msg, names: Sequence[str]) -> Optional[np.ndarray]:
    """Positions of ``names`` from a (rosbags) JointState, by name; None if unusable."""
    msg_names = list(msg.name)
    position = np.asarray(msg.position, dtype=np.float64)  # [N]
    if position.shape != (len(msg_names),) or len(set(msg_names)) != len(msg_names):
        return None
    index = {n: i for i, n in enumerate(msg_names)}
    if any(n not in index for n in names):
        return None
    q = position[[index[n] for n in names]]  # [len(names)]
    return q if np.all(np.isfinite(q)) else None


def input_values(msg, msgtype: str, fields: Sequence[str], count: int) -> Optional[np.ndarray]:
    """The first ``count`` of ``fields`` (x, y, z[, qw, qx, qy, qz]) of a PointStamped /
    PoseStamped -> [count]; None if unusable."""
    if msgtype == POINT_TYPE:
        source = {"x": msg.point.x, "y": msg.point.y, "z": msg.point.z}
    elif msgtype == POSE_TYPE:
        p, o = msg.pose.position, msg.pose.orientation
        source = {"x": p.x, "y": p.y, "z": p.z, "qw": o.w, "qx": o.x, "qy": o.y, "qz": o.z}
    else:
        return None
    if any(f not in source for f in fields[:count]):
        return None
    values = np.array([float(source[f]) for f in fields[:count]])  # [count]
    return values if np.all(np.isfinite(values)) else None


def action_values(msg, msgtype: str, joint_names: Sequence[str], received: int) -> Optional[Tuple[int, np.ndarray]]:
    """(stamp ns, action [D_a]) of a command message; None if unusable."""
    if msgtype == "std_msgs/msg/Float64MultiArray":
        a = np.asarray(msg.data, dtype=np.float64)  # [D_a]
        stamp = received
    elif msgtype == "trajectory_msgs/msg/JointTrajectory":
        names = list(msg.joint_names)
        if not msg.points or any(n not in names for n in joint_names):
            return None
        first = np.asarray(msg.points[0].positions, dtype=np.float64)  # [len(names)]
        if first.shape != (len(names),):
            return None
        a = first[[names.index(n) for n in joint_names]]  # [D_a]
        stamp = _stamp_ns(msg.header.stamp) or received
    else:
        raise ValueError(f"unsupported action message type {msgtype} (one of {list(ACTION_TYPES)})")
    if a.shape != (len(joint_names),) or not np.all(np.isfinite(a)):
        return None
    return stamp, a
