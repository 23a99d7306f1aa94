"""Demonstrations as rosbag2 (MCAP) recordings, and their conversion to episodes.

Written and read with the pure-Python ``rosbags`` library (``ros2 bag`` is not
installable here); the files are ordinary rosbag2 bags — a directory with
``metadata.yaml`` (rosbag2 format version 8, ``storage_identifier: mcap``) and one
``.mcap`` file — that ``ros2 bag info/play`` open. Messages are CDR-serialised exactly as
on the wire; message definitions come from rosbags' typestore (default: ROS 2 Jazzy; the
standard message types used here are identical from Humble to Kilted).

- :class:`BagWriter` — write messages (rclpy objects or raw CDR bytes) with a log time.
- :class:`BagRecorder` — record live topics of a running rclpy node (serialised
  subscriptions, like ``ros2 bag record``; the log time is the *receive* time on the node's
  clock, i.e. simulated time when the node has ``use_sim_time``); header stamps stay
  inside the messages.
- :func:`read_bag_messages` — iterate ``(topic, msgtype, log_time_ns, message)``.
- :func:`bag_to_episodes` — resample a recording onto a ``dt`` grid of **header stamps**
  and write the episode data set of :mod:`genpolicy_ros.data.episodes`.
- :func:`bags_to_dataset_dir` — the same with the sim's defaults, for ``genpolicy train --bag``.

Alignment (``bag_to_episodes``), per episode window ``[start, end]`` (ns, header-stamp
time)::

    grid g_k = start + k·dt            (k = 0, 1, ... while g_k <= end)
    row k    = latest state, image and action whose stamp is <= g_k (and >= start)

Stamps: JointState / Image / CompressedImage use ``header.stamp``; a JointTrajectory its
``header.stamp`` (0 = "on receipt" → the receive time); a Float64MultiArray has no header,
so its receive time is used. The action of a JointTrajectory is its first point (the
target the controller moves to next). Messages are sorted by stamp first, so arrival
order does not matter. Rows where a stream has no sample yet, or only one older than
``max_sample_age_s``, are dropped.

Episode windows: from the sim's ``~/episode`` messages (JSON with ``start_ns``/``end_ns``,
see :mod:`genpolicy_ros.sim.node`; only ``completed`` ones unless ``include_incomplete``).
A bag without them is cut where the joint-state stamps, in arrival order, jump forward by
more than ``max_gap_s`` or go backwards by more than ``max_gap_s`` (a replay loop); the
other streams are assigned to a segment by their receive time.
"""
from __future__ import annotations

import json
import logging
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, Iterable, Iterator, List, Mapping, Optional, Sequence, Tuple, Union

import numpy as np

from .episodes import METADATA_FILE, DatasetMetadata, Episode, EpisodeDataset, EPISODE_PATTERN

log = logging.getLogger(__name__)

NS_PER_S = 1_000_000_000
DEFAULT_TYPESTORE = "ros2_jazzy"
BAG_VERSION = 8  # rosbag2 metadata version (Jazzy writes 8; Humble reads it with mcap)

# The sim's topics (absolute names, as they appear in a bag recorded at the root namespace).
STATE_TOPIC = "/joint_states"
TRAJECTORY_TOPIC = "/joint_trajectory_controller/joint_trajectory"
FORWARD_TOPIC = "/forward_position_controller/commands"
IMAGE_TOPIC = "/camera/image_raw"
COMPRESSED_TOPIC = "/camera/image_raw/compressed"
EPISODE_TOPIC = "/genpolicy_sim/episode"
CLOCK_TOPIC = "/clock"

PathLike = Union[str, Path]


def msgtype_name(msg_class) -> str:
    """``sensor_msgs.msg.JointState`` class -> ``"sensor_msgs/msg/JointState"``."""
    parts = msg_class.__module__.split(".")
    if len(parts) < 2 or parts[1] not in ("msg", "srv", "action"):
        raise ValueError(f"{msg_class!r} is not a ROS 2 interface class (module {msg_class.__module__})")
    return f"{parts[0]}/{parts[1]}/{msg_class.__name__}"


def get_typestore(name: str = DEFAULT_TYPESTORE):
    from rosbags.typesys import Stores, get_typestore as _get

    try:
        return _get(Stores(name))
    except ValueError:
        raise ValueError(f"unknown rosbags typestore {name!r} (known: {[s.value for s in Stores]})") from None


def _reliable_qos():
    from rosbags.interfaces import (Qos, QosDurability, QosHistory, QosLiveliness, QosReliability,
                                    QosTime)

    return Qos(QosHistory.KEEP_LAST, 10, QosReliability.RELIABLE, QosDurability.VOLATILE,
               QosTime(0, 0), QosTime(0, 0), QosLiveliness.AUTOMATIC, QosTime(0, 0), False)


# --------------------------------------------------------------------------- writing
class BagWriter:
    """A new rosbag2 bag directory (MCAP storage). Use as a context manager.

    ``add_topic(topic, msgtype)`` once per topic (msgtype as ``"pkg/msg/Type"`` or an
    rclpy message class), then ``write(topic, msg, log_time_ns)`` with an rclpy message
    or ``write_raw(topic, cdr_bytes, log_time_ns)``. Thread-safe.
    """

    def __init__(self, path: PathLike, *, typestore: str = DEFAULT_TYPESTORE, storage: str = "mcap"):
        from rosbags.rosbag2 import StoragePlugin, Writer

        plugins = {"mcap": StoragePlugin.MCAP, "sqlite3": StoragePlugin.SQLITE3}
        if storage not in plugins:
            raise ValueError(f"storage must be one of {sorted(plugins)}, got {storage!r}")
        self.path = Path(path)
        self._typestore = get_typestore(typestore)
        self._writer = Writer(self.path, version=BAG_VERSION, storage_plugin=plugins[storage])
        self._writer.open()
        self._connections: Dict[str, object] = {}
        self._msgtypes: Dict[str, str] = {}
        self.counts: Dict[str, int] = {}
        self._lock = threading.Lock()
        self._closed = False

    def add_topic(self, topic: str, msgtype) -> None:
        if not isinstance(msgtype, str):
            msgtype = msgtype_name(msgtype)
        if not topic.startswith("/"):
            raise ValueError(f"bag topics are absolute names, got {topic!r}")
        with self._lock:
            if topic in self._connections:
                raise ValueError(f"topic {topic} was already added")
            if msgtype not in self._typestore.types:
                raise ValueError(f"message type {msgtype} is not in the rosbags typestore")
            self._msgtypes[topic] = msgtype
            self._connections[topic] = self._writer.add_connection(
                topic, msgtype, typestore=self._typestore, offered_qos_profiles=[_reliable_qos()])
            self.counts[topic] = 0

    def set_custom_data(self, key: str, value: str) -> None:
        """A string stored under ``custom_data`` in metadata.yaml."""
        self._writer.set_custom_data(key, value)

    def write_raw(self, topic: str, data: bytes, log_time_ns: int) -> bool:
        """Write CDR bytes; returns False (and drops the message) once closed."""
        with self._lock:
            if self._closed:
                return False
            self._writer.write(self._connections[topic], int(log_time_ns), data)
            self.counts[topic] += 1
            return True

    def write(self, topic: str, msg, log_time_ns: int) -> bool:
        """Serialise an rclpy message and write it.

        ``rclpy.serialization.serialize_message`` of these wheels returns a few stray bytes
        after some messages (8 after a JointState); they are cut so that every CDR reader,
        rosbags' strict one included, accepts the bag. (Bytes received from DDS are exact.)
        """
        from rclpy.serialization import serialize_message

        raw = serialize_message(msg)
        msgtype = self._msgtypes[topic]
        _, end = _deserialize_cdr_end(self._typestore, raw, msgtype)
        return self.write_raw(topic, raw[:end], log_time_ns)

    def close(self) -> None:
        with self._lock:
            if not self._closed:
                self._closed = True
                self._writer.close()

    def __enter__(self) -> "BagWriter":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


class BagRecorder:
    """Record live topics of an rclpy ``node`` into a new MCAP bag at ``path``.

    ``topics`` maps topic names (relative names are resolved in the node's namespace)
    to rclpy message classes. Subscriptions are serialised (``raw=True``: the CDR bytes
    are stored as they arrived, nothing is re-encoded) and reliable with a deep queue
    (they also receive best-effort publishers). The log time of each message is its
    receive time on ``node.get_clock()`` (simulated time if the node uses ``use_sim_time``).
    ``close()`` (or leaving the ``with`` block) removes the subscriptions and finalises the
    bag; messages arriving later are dropped.
    """

    def __init__(self, node, path: PathLike, topics: Mapping[str, type], *, depth: int = 1000,
                 typestore: str = DEFAULT_TYPESTORE, callback_group=None):
        from rclpy.qos import DurabilityPolicy, HistoryPolicy, QoSProfile, ReliabilityPolicy

        if not topics:
            raise ValueError("BagRecorder needs at least one topic")
        self.node = node
        self.bag = BagWriter(path, typestore=typestore)
        qos = QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=depth,
                         reliability=ReliabilityPolicy.RELIABLE, durability=DurabilityPolicy.VOLATILE)
        self._subscriptions = []
        self.topics: Dict[str, str] = {}  # resolved topic -> msgtype
        for topic, msg_class in topics.items():
            resolved = node.resolve_topic_name(topic)
            self.bag.add_topic(resolved, msg_class)
            self.topics[resolved] = msgtype_name(msg_class)
            self._subscriptions.append(node.create_subscription(
                msg_class, resolved, self._make_callback(resolved), qos, raw=True,
                callback_group=callback_group))

    def _make_callback(self, topic: str):
        clock = self.node.get_clock()

        def on_message(data: bytes) -> None:
            self.bag.write_raw(topic, data, clock.now().nanoseconds)

        return on_message

    @property
    def counts(self) -> Dict[str, int]:
        return dict(self.bag.counts)

    def close(self) -> None:
        for sub in self._subscriptions:
            self.node.destroy_subscription(sub)
        self._subscriptions = []
        self.bag.close()

    def __enter__(self) -> "BagRecorder":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


# --------------------------------------------------------------------------- reading
def read_bag_messages(path: PathLike, topics: Optional[Iterable[str]] = None, *,
                      typestore: str = DEFAULT_TYPESTORE) -> Iterator[Tuple[str, str, int, object]]:
    """Yield ``(topic, msgtype, log_time_ns, message)`` in log-time order.

    ``topics=None`` reads every topic. Messages are rosbags dataclasses (arrays as NumPy
    arrays). Types missing from the typestore are registered from the definitions stored
    in the bag.
    """
    from rosbags.rosbag2 import Reader

    store = get_typestore(typestore)
    wanted = None if topics is None else set(topics)
    with Reader(Path(path)) as reader:
        connections = [c for c in reader.connections if wanted is None or c.topic in wanted]
        if not connections:
            return
        _register_missing_types(store, connections)
        for conn, log_time, raw in reader.messages(connections=connections):
            yield conn.topic, conn.msgtype, int(log_time), deserialize_cdr(store, raw, conn.msgtype)


def deserialize_cdr(store, raw, msgtype: str):
    """CDR bytes -> rosbags message, tolerating trailing bytes after the message.

    ``rosbags``' own ``deserialize_cdr`` refuses more than 3 trailing bytes, but the Fast
    CDR shipped with these rclpy wheels reports a serialised length a few bytes longer
    than the data (for JointState: 8 bytes); rclpy and ``ros2 bag`` read such messages.
    """
    return _deserialize_cdr_end(store, raw, msgtype)[0]


def _deserialize_cdr_end(store, raw, msgtype: str):
    """(message, end offset of its CDR data within ``raw``)."""
    import struct

    from rosbags.serde import SerdeError

    raw = memoryview(raw)
    if len(raw) < 4 or bytes(raw[:2]) not in (b"\x00\x00", b"\x00\x01"):
        raise SerdeError(f"{msgtype}: invalid or unsupported CDR encapsulation")
    msgdef = store.get_msgdef(msgtype)
    func = msgdef.deserialize_cdr_le if raw[1] else msgdef.deserialize_cdr_be
    try:
        message, pos = func(raw[4:], 0, msgdef.cls, store)
    except (struct.error, ValueError, IndexError, UnicodeDecodeError) as exc:
        raise SerdeError(f"could not deserialize {msgtype}: {exc}") from exc
    return message, 4 + pos


def _register_missing_types(store, connections) -> None:
    from rosbags.typesys import get_types_from_idl, get_types_from_msg

    for conn in connections:
        if conn.msgtype in store.types:
            continue
        text = conn.msgdef.data
        types = get_types_from_idl(text) if text.startswith("=" * 80 + "\nIDL: ") else get_types_from_msg(
            text, conn.msgtype)
        store.register(types)


def bag_topics(path: PathLike) -> Dict[str, str]:
    """``{topic: msgtype}`` of a bag."""
    from rosbags.rosbag2 import Reader

    with Reader(Path(path)) as reader:
        return {c.topic: c.msgtype for c in reader.connections}


# --------------------------------------------------------------------------- conversion
def _stamp_ns(stamp) -> int:
    return int(stamp.sec) * NS_PER_S + int(stamp.nanosec)


@dataclass
class _Stream:
    """Samples of one signal: stamps [M] int64 ns, receive times [M], values (list)."""

    stamps: List[int] = field(default_factory=list)
    received: List[int] = field(default_factory=list)
    values: list = field(default_factory=list)

    def add(self, stamp: int, received: int, value) -> None:
        self.stamps.append(stamp)
        self.received.append(received)
        self.values.append(value)

    def select(self, keep: np.ndarray) -> "_Sorted":
        stamps = np.asarray(self.stamps, dtype=np.int64)[keep]
        idx = np.flatnonzero(keep)
        order = np.argsort(stamps, kind="stable")
        return _Sorted(stamps[order], [self.values[idx[i]] for i in order])


@dataclass
class _Sorted:
    stamps: np.ndarray  # [M] int64, non-decreasing
    values: list

    def latest_at_or_before(self, grid: np.ndarray) -> np.ndarray:
        """Index of the latest sample with stamp <= each grid time (-1 if none) [G]."""
        return np.searchsorted(self.stamps, grid, side="right") - 1


@dataclass
class ConversionReport:
    """What :func:`bag_to_episodes` did (also logged)."""

    episodes_written: int = 0
    rows: int = 0
    skipped_episodes: List[str] = field(default_factory=list)
    rejected_messages: Dict[str, int] = field(default_factory=dict)

    def reject(self, topic: str) -> None:
        self.rejected_messages[topic] = self.rejected_messages.get(topic, 0) + 1


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
    episode_topic: str = EPISODE_TOPIC,
    include_incomplete: bool = False,
    max_gap_s: float = 0.5,
    max_sample_age_s: float = 0.5,
    min_rows: int = 2,
    joint_limits: Optional[Tuple[Sequence[float], Sequence[float]]] = None,
    description: str = "",
    units: Optional[Dict[str, str]] = None,
    typestore: str = DEFAULT_TYPESTORE,
    exist_ok: bool = False,
) -> EpisodeDataset:
    """Convert recording(s) into an episode data set at ``out_dir`` (module docstring).

    joint_names: action dims (the command's joints, in this order — a Float64MultiArray
    is taken to be in this order); state_names: joints read **by name** from the
    JointState messages on ``state_topic``; camera: the data set's camera name, or None
    for no images; image_topic: Image or CompressedImage topic (default: the raw camera
    topic if recorded, else the compressed one); dt: grid period (s). Episodes never span
    two bags. Returns the data set; ``out_dir`` must not hold one unless ``exist_ok``.
    """
    from ..ros.conversions import compressed_image_to_array, image_to_array

    paths = [Path(bag_paths)] if isinstance(bag_paths, (str, Path)) else [Path(p) for p in bag_paths]
    if not paths:
        raise ValueError("bag_to_episodes needs at least one bag")
    if not (np.isfinite(dt) and dt > 0):
        raise ValueError(f"dt must be > 0 s, got {dt}")
    joint_names, state_names = list(joint_names), list(state_names)
    dt_ns = int(round(dt * NS_PER_S))
    report = ConversionReport()
    episodes: List[Episode] = []
    image_size: Optional[Tuple[int, int]] = None

    for path in paths:
        topics = bag_topics(path)
        img_topic = image_topic
        if camera is not None and img_topic is None:
            img_topic = IMAGE_TOPIC if IMAGE_TOPIC in topics else COMPRESSED_TOPIC
        for needed in [state_topic, action_topic] + ([img_topic] if camera is not None else []):
            if needed not in topics:
                raise ValueError(f"{path}: topic {needed} is not in the bag (it has {sorted(topics)})")

        states, actions, images = _Stream(), _Stream(), _Stream()
        statuses: List[Tuple[int, dict]] = []
        wanted = [state_topic, action_topic, episode_topic] + ([img_topic] if camera is not None else [])
        for topic, msgtype, received, msg in read_bag_messages(path, wanted, typestore=typestore):
            if topic == state_topic:
                q = _joint_state_values(msg, state_names)
                if q is None:
                    report.reject(topic)
                else:
                    states.add(_stamp_ns(msg.header.stamp), received, q)
            elif topic == action_topic:
                parsed = _action_values(msg, msgtype, joint_names, received)
                if parsed is None:
                    report.reject(topic)
                else:
                    actions.add(parsed[0], received, parsed[1])
            elif topic == img_topic:
                decode = compressed_image_to_array if msgtype.endswith("CompressedImage") else image_to_array
                frame, _ = decode(msg, image_size)
                if frame is None:
                    report.reject(topic)
                else:
                    image_size = image_size or tuple(frame.shape[:2])
                    images.add(_stamp_ns(msg.header.stamp), received, frame)
            elif topic == episode_topic and msgtype == "std_msgs/msg/String":
                try:
                    status = json.loads(msg.data)
                    statuses.append((received, status))
                except (ValueError, TypeError):
                    report.reject(topic)

        streams = {"state": states, "action": actions}
        if camera is not None:
            streams["image"] = images
        for label, window in _episode_windows(path, states, statuses, include_incomplete, max_gap_s, report):
            episode = _resample(streams, window, dt_ns, int(round(max_sample_age_s * NS_PER_S)))
            if episode is None or len(episode.timestamp) < min_rows:
                n = 0 if episode is None else len(episode.timestamp)
                report.skipped_episodes.append(f"{label}: {n} rows < min_rows={min_rows}")
                continue
            if camera is not None:
                episode.images = {camera: episode.images.pop("image")}
            episodes.append(episode)

    cameras = {camera: [int(image_size[0]), int(image_size[1])]} if camera is not None and image_size else {}
    if camera is not None and not cameras and episodes:
        raise ValueError(f"no decodable frames on the image topic of {[str(p) for p in paths]}")
    lower, upper = (None, None) if joint_limits is None else (list(joint_limits[0]), list(joint_limits[1]))
    meta = DatasetMetadata(
        joint_names=joint_names, state_names=state_names, dt=dt, cameras=cameras,
        units=units or {"timestamp": "s", "action": "rad", "state": "rad"},
        joint_lower_limits=lower, joint_upper_limits=upper,
        description=description or f"converted from rosbag2 {', '.join(p.name for p in paths)} "
                                   f"(action {action_topic}, state {state_topic}, dt {dt} s)",
    )
    dataset = EpisodeDataset.create(Path(out_dir), meta, exist_ok=exist_ok)
    for episode in episodes:
        dataset.append(episode)
        report.rows += len(episode.timestamp)
    report.episodes_written = len(episodes)
    dataset.report = report  # type: ignore[attr-defined]
    log.info("bag_to_episodes: %d episodes, %d rows; skipped %s; rejected %s", report.episodes_written,
             report.rows, report.skipped_episodes, report.rejected_messages)
    return dataset


def _joint_state_values(msg, names: Sequence[str]) -> Optional[np.ndarray]:
    """Positions of ``names`` from a (rosbags) JointState, by name; None if unusable."""
    msg_names = list(msg.name)
    position = np.asarray(msg.position, dtype=np.float64)  # [N]
    if position.shape != (len(msg_names),) or len(set(msg_names)) != len(msg_names):
        return None
    index = {n: i for i, n in enumerate(msg_names)}
    if any(n not in index for n in names):
        return None
    q = position[[index[n] for n in names]]  # [D_s]
    return q if np.all(np.isfinite(q)) else None


def _action_values(msg, msgtype: str, joint_names: Sequence[str], received: int
                   ) -> Optional[Tuple[int, np.ndarray]]:
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
        a = first[[names.index(n) for n in joint_names]]
        stamp = _stamp_ns(msg.header.stamp) or received
    else:
        raise ValueError(f"unsupported action message type {msgtype} "
                         "(std_msgs/msg/Float64MultiArray or trajectory_msgs/msg/JointTrajectory)")
    if a.shape != (len(joint_names),) or not np.all(np.isfinite(a)):
        return None
    return stamp, a


@dataclass
class _Window:
    start_ns: int
    end_ns: int
    received: Optional[Tuple[int, int]] = None  # receive-time span; None = any


def _episode_windows(path, states: _Stream, statuses, include_incomplete, max_gap_s, report):
    """Yield (label, _Window) for each episode of one bag."""
    if statuses:
        for received, status in statuses:
            label = f"{path.name} episode {status.get('episode', '?')}"
            try:
                start, end = int(status["start_ns"]), int(status["end_ns"])
            except (KeyError, TypeError, ValueError):
                report.reject("episode status without start_ns/end_ns")
                continue
            if not status.get("completed", True) and not include_incomplete:
                report.skipped_episodes.append(f"{label}: not completed")
                continue
            yield label, _Window(start, end)
        return
    # No episode messages: segments of the joint-state stream in arrival order.
    if not states.stamps:
        return
    gap = int(round(max_gap_s * NS_PER_S))
    stamps = np.asarray(states.stamps, dtype=np.int64)  # arrival order
    received = np.asarray(states.received, dtype=np.int64)
    starts = [0]
    high = stamps[0]
    for i in range(1, len(stamps)):
        if stamps[i] > high + gap or stamps[i] < high - gap:
            starts.append(i)
            high = stamps[i]
        else:
            high = max(high, stamps[i])
    bounds = starts + [len(stamps)]
    for k in range(len(starts)):
        seg = slice(bounds[k], bounds[k + 1])
        recv_lo = int(received[seg][0]) if k > 0 else np.iinfo(np.int64).min
        recv_hi = int(received[bounds[k + 1]]) - 1 if k + 1 < len(starts) else np.iinfo(np.int64).max
        yield (f"{path.name} segment {k}",
               _Window(int(stamps[seg].min()), int(stamps[seg].max()), (recv_lo, recv_hi)))


def _resample(streams: Dict[str, _Stream], window: _Window, dt_ns: int, max_age_ns: int) -> Optional[Episode]:
    """One episode on the grid start + k·dt of ``window`` (latest sample at or before)."""
    grid = np.arange(window.start_ns, window.end_ns + 1, dt_ns, dtype=np.int64)  # [G]
    keep_rows = np.ones(grid.shape, dtype=bool)
    picked = {}
    for name, stream in streams.items():
        stamps = np.asarray(stream.stamps, dtype=np.int64)
        inside = (stamps >= window.start_ns) & (stamps <= window.end_ns)
        if window.received is not None:
            recv = np.asarray(stream.received, dtype=np.int64)
            inside &= (recv >= window.received[0]) & (recv <= window.received[1])
        if not inside.any():
            return None
        s = stream.select(inside)
        idx = s.latest_at_or_before(grid)  # [G]
        ok = idx >= 0
        ok[ok] &= (grid[ok] - s.stamps[idx[ok]]) <= max_age_ns
        keep_rows &= ok
        picked[name] = (s, idx)
    if not keep_rows.any():
        return None
    rows = np.flatnonzero(keep_rows)
    values = {name: [s.values[i] for i in idx[rows]] for name, (s, idx) in picked.items()}
    images = {"image": np.stack(values["image"])} if "image" in values else {}  # [N, H, W, 3]
    return Episode(
        timestamp=grid[rows].astype(np.float64) / NS_PER_S,  # [N] s
        action=np.stack(values["action"]).astype(np.float32),  # [N, D_a]
        state=np.stack(values["state"]).astype(np.float32),  # [N, D_s]
        images=images,
    )


# --------------------------------------------------------------------------- training hook
def bags_to_dataset_dir(
    bags: Sequence[PathLike],
    out_dir: Optional[PathLike] = None,
    *,
    dt: float = 0.05,
    images: bool = False,
    action_topic: Optional[str] = None,
    **kwargs,
) -> Path:
    """Convert the sim's recordings (``genpolicy collect``) into an episode data set.

    Defaults of the reaching sim: actions = ``shoulder, elbow`` (from the JointTrajectory
    topic, or the Float64MultiArray one if only that was recorded), states = all four
    JointState joints as state (plus, with ``images``, the camera ``overhead``) and the joint
    limits of the arm; see :func:`sim_observation_defaults` for what a model observes.
    ``out_dir`` defaults to ``<first bag>_dataset`` next to it; a data set already there
    (``dataset.json`` + ``episode_*.npz``) is replaced — it is derived data. Returns its path.
    """
    from ..sim.reach_env import ALL_JOINTS, ARM_JOINTS, JOINT_LOWER, JOINT_UPPER

    bags = [Path(b) for b in ([bags] if isinstance(bags, (str, Path)) else bags)]
    if not bags:
        raise ValueError("bags_to_dataset_dir needs at least one bag")
    for bag in bags:
        if not (bag / "metadata.yaml").is_file():
            raise FileNotFoundError(f"{bag}: not a rosbag2 directory (no metadata.yaml)")
    out = Path(out_dir) if out_dir is not None else bags[0].with_name(bags[0].name + "_dataset")
    if out.exists():
        if any(p for p in out.iterdir() if p.name != METADATA_FILE and not EPISODE_PATTERN.match(p.name)):
            raise FileExistsError(f"{out} holds files other than an episode data set; refusing to replace it")
        for p in out.iterdir():
            p.unlink()
    if action_topic is None:
        topics = bag_topics(bags[0])
        action_topic = TRAJECTORY_TOPIC if TRAJECTORY_TOPIC in topics else FORWARD_TOPIC
    # Every recorded joint is kept; what a model observes is chosen at training time
    # (sim_observation_defaults).
    bag_to_episodes(bags, out, ARM_JOINTS, ALL_JOINTS, camera="overhead" if images else None, dt=dt,
                    action_topic=action_topic, joint_limits=(JOINT_LOWER.tolist(), JOINT_UPPER.tolist()),
                    units={"timestamp": "s", "action": "rad", "state": "rad|m"}, exist_ok=True, **kwargs)
    return out


def sim_observation_defaults(images: bool) -> dict:
    """``PolicyConfig`` sections for a model trained on the sim's recordings.

    State-based: it observes every joint, the target's included (``target_x``,
    ``target_y`` in JointState). Image+proprio: it observes the arm joints and *sees* the
    target in the camera; the recorded target position becomes a training-only
    auxiliary target (``core.config.AuxiliaryConfig``) that teaches the encoder where
    the target is. A config file's ``observation`` / ``auxiliary`` entries override these.
    """
    from ..sim.reach_env import ALL_JOINTS, ARM_JOINTS, TARGET_JOINTS

    if not images:
        return {"observation": {"state_names": list(ALL_JOINTS)}}
    return {"observation": {"state_names": list(ARM_JOINTS)},
            "auxiliary": {"state_names": list(TARGET_JOINTS)}}
