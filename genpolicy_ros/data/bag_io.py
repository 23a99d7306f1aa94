"""rosbag2 (MCAP) bags: writing, live recording and reading (the I/O under :mod:`.bags`).

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
- :func:`bag_topics`, :func:`bag_custom_data` — what a bag holds, without reading messages.
"""
from __future__ import annotations

import threading
from pathlib import Path
from typing import Dict, Iterable, Iterator, Mapping, Optional, Tuple, Union

DEFAULT_TYPESTORE = "ros2_jazzy"
BAG_VERSION = 8  # rosbag2 metadata version (Jazzy writes 8; Humble reads it with mcap)

PathLike = Union[str, Path]


def msgtype_name(msg_class) -> str:
    """``sensor_msgs.msg.JointState`` class -> ``"sensor_msgs/msg/JointState"``."""
    parts = msg_class.__module__.split(".")
    if len(parts) < 2 or parts[1] not in ("msg", "srv", "action"):
        raise ValueError(f"{msg_class!r} is not a ROS 2 interface class (module {msg_class.__module__})")
    return f"{parts[0]}/{parts[1]}/{msg_class.__name__}"


def get_typestore(name: str = DEFAULT_TYPESTORE):
    from rosbags.typesys import Stores
    from rosbags.typesys import get_typestore as _get

    try:
        return _get(Stores(name))
    except ValueError:
        raise ValueError(f"unknown rosbags typestore {name!r} (known: {[s.value for s in Stores]})") from None


def _reliable_qos():
    from rosbags.interfaces import Qos, QosDurability, QosHistory, QosLiveliness, QosReliability, QosTime

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


def bag_custom_data(path: PathLike) -> Dict[str, str]:
    """The ``custom_data`` strings of a bag's metadata.yaml (``{}`` when there are none)."""
    import yaml

    meta_file = Path(path) / "metadata.yaml"
    try:
        doc = yaml.safe_load(meta_file.read_text(encoding="utf-8")) or {}
    except (OSError, yaml.YAMLError) as exc:
        raise ValueError(f"{meta_file}: unreadable rosbag2 metadata ({exc})") from None
    data = (doc.get("rosbag2_bagfile_information") or {}).get("custom_data") or {}
    return {str(k): str(v) for k, v in data.items()} if isinstance(data, dict) else {}
