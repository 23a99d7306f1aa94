r"""Bag replay into the policy node, in lockstep with ``/clock``: the logic of ``genpolicy replay``.

:func:`replay_bag` plays a recording's ``joint_states`` (and, for image models, its camera
topic) with their **original header stamps** into a :class:`~genpolicy_ros.ros.policy_node.PolicyNode`
started with ``use_sim_time:=true``, a fixed ``seed`` and a fixed ``inference_delay_steps``,
publishes ``/clock`` from the bag's stamps, and records what the node publishes (its
commands and ``~/action_chunk``) into a new bag. :func:`compare_bags` reports the largest
difference between two such output bags.

Why lockstep. A free-running replay is not reproducible: the node's executor ticks on the
wall clock, so *which* bag time a tick, a chunk request or a chunk's arrival falls on
depends on the machine's load. To make one bag + one seed give one answer, the replay
owns the time line. Step ``k`` of the replay, at bag time ``t_k = t_first + k / control_rate``::

    1. publish /clock = t_k            wait until the node's ROS clock reads t_k
    2. publish every bag message with  wait until the node's observation buffer has
       header stamp in (t_{k-1}, t_k]  taken them all (counted, nothing is lost)
    3. run exactly ONE executor tick   (the node's own tick function, at now = t_k)
    4. if that tick requested a chunk: wait (wall time, as long as it takes) until the
                                       generation process has answered; the answer is
                                       handed to the engine at the next tick (t_{k+1})

So every chunk is requested at the same bag time from the same observations with the
same noise (``seed + request index``), arrives exactly one control period later (the
engine plans with that latency: its latency estimate is fixed to one period instead of
the measured wall-clock p95), and the safety filter sees the same sequence of ticks.
Identical bag + seed → identical actions, bit for bit on the same machine (CPU).

The node runs in this process (its generation still runs in its own child process) so
that the replay can drive its executor tick: ``PolicyNode.enter_lockstep()`` stops the
node's command-loop thread and ``PolicyNode.tick_once()`` runs one period per step.
``observation_timeout_s`` is raised to 5 s because wall time
between steps is not bag time (the steady-clock watchdog would otherwise fire while a
chunk is being generated on a slow machine).
"""
from __future__ import annotations

import collections
import json
import math
import threading
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Dict, List, Optional, Sequence

import numpy as np

from . import topics

NS_PER_S = 1_000_000_000
STATE_TOPIC = topics.absolute(topics.JOINT_STATES)
CLOCK_TOPIC = topics.CLOCK
POLICY_NODE = topics.POLICY_NODE
CHUNK_TOPIC = topics.private(POLICY_NODE, topics.ACTION_CHUNK)
COMMAND_TOPICS = {mode: topics.absolute(t) for mode, t in topics.COMMAND_TOPICS.items()}
REPLAY_METADATA_KEY = "genpolicy_ros.replay"


@dataclass(frozen=True)
class ReplayConfig:
    """Settings of one replay; validated on construction."""

    bag: str
    model_dir: str
    out: str
    seed: int = 0
    inference_delay_steps: int = 0
    control_rate_hz: float = 100.0
    sampler: Optional[str] = None
    num_steps: Optional[int] = None
    chunk_blending: str = "rtc"
    output_mode: str = "joint_trajectory"
    max_seconds: Optional[float] = None  # replay only the first seconds of the bag
    domain_id: Optional[int] = None
    step_timeout_s: float = 60.0  # wall time one step may wait (delivery, generation)
    progress: bool = False

    def __post_init__(self):
        if not Path(self.bag, "metadata.yaml").is_file():
            raise ValueError(f"{self.bag}: not a rosbag2 directory (no metadata.yaml)")
        if not Path(self.model_dir, "config.json").is_file():
            raise ValueError(f"{self.model_dir}: not a model directory (no config.json)")
        if Path(self.out).exists():
            raise ValueError(f"output bag {self.out} exists already; choose a new directory")
        if not (isinstance(self.seed, int) and 0 <= self.seed < 2**31):
            raise ValueError(f"seed must be an int in [0, 2^31), got {self.seed!r}")
        if not (isinstance(self.inference_delay_steps, int) and 0 <= self.inference_delay_steps <= 1000):
            raise ValueError("inference_delay_steps must be a fixed int in [0, 1000] for a reproducible replay, "
                             f"got {self.inference_delay_steps!r}")
        if not (1.0 <= self.control_rate_hz <= 1000.0):
            raise ValueError(f"control_rate_hz must be in [1, 1000], got {self.control_rate_hz}")
        if self.output_mode not in COMMAND_TOPICS:
            raise ValueError(f"output_mode must be one of {list(COMMAND_TOPICS)}, got {self.output_mode!r}")
        if self.max_seconds is not None and not (self.max_seconds > 0):
            raise ValueError(f"max_seconds must be > 0, got {self.max_seconds}")
        if self.domain_id is not None and not (0 <= self.domain_id <= 232):
            raise ValueError(f"domain_id must be in [0, 232], got {self.domain_id}")


@dataclass
class ReplayResult:
    out: str
    steps: int
    played: Dict[str, int]  # messages published per bag topic
    recorded: Dict[str, int]  # messages recorded per output topic
    chunks_requested: int
    bag_span_s: float
    wall_s: float
    settings: Dict[str, object] = field(default_factory=dict)

    def to_dict(self) -> dict:
        return asdict(self)


# --------------------------------------------------------------------------- reading the bag
def _stamp_ns(stamp) -> int:
    return int(stamp.sec) * NS_PER_S + int(stamp.nanosec)


def load_playback(bag, camera_topics: Sequence[str] = (), max_seconds: Optional[float] = None,
                  input_topics: Sequence[str] = ()) -> List[tuple]:
    """``[(header stamp ns, topic, msgtype, raw CDR bytes)]`` sorted by stamp (stable per topic).

    ``camera_topics``: candidate camera topics in order of preference; the first one the bag
    has is played (one transport only: the node uses one per camera anyway).
    ``input_topics``: the model's non-joint state inputs (PointStamped / PoseStamped); those
    the bag has are played (an older bag carries them inside JointState instead).
    ``max_seconds``: stop reading once the log time passes the first message + this + 1 s.
    """
    from rosbags.rosbag2 import Reader

    from ..data.bag_io import deserialize_cdr, get_typestore

    store = get_typestore()
    with Reader(Path(bag)) as reader:
        present = {c.topic: c for c in reader.connections}
        if STATE_TOPIC not in present:
            raise ValueError(f"{bag}: no {STATE_TOPIC} topic (topics: {sorted(present)})")
        wanted = [STATE_TOPIC]
        for topic in camera_topics:
            if topic in present:
                wanted.append(topic)
                break
        else:
            if camera_topics:
                raise ValueError(f"{bag}: the model needs a camera, but none of {list(camera_topics)} is recorded")
        wanted += [t for t in input_topics if t in present]
        rows = []
        order = 0
        first_log = None
        for conn, log_time, raw in reader.messages(connections=[present[t] for t in wanted]):
            first_log = log_time if first_log is None else first_log
            if max_seconds is not None and log_time - first_log > (max_seconds + 1.0) * NS_PER_S:
                break
            msg = deserialize_cdr(store, raw, conn.msgtype)
            rows.append((_stamp_ns(msg.header.stamp), order, conn.topic, conn.msgtype, bytes(raw)))
            order += 1
    rows.sort(key=lambda r: (r[0], r[1]))
    return [(stamp, topic, msgtype, raw) for stamp, _o, topic, msgtype, raw in rows if stamp > 0]


# --------------------------------------------------------------------------- lockstep helpers
class _FixedLatency:
    """Latency estimate of the lockstep replay: a chunk takes exactly one control period."""

    def __init__(self, period_s: float):
        self.period_s = period_s

    def estimate_s(self) -> float:
        return self.period_s

    def stats(self) -> dict:
        return {"p50_s": self.period_s, "p95_s": self.period_s, "max_s": self.period_s}


class _LockstepWorker:
    """Wraps the node's generation worker: the replay fetches replies itself (waiting as long
    as generation takes) and hands them to the engine at its next tick."""

    def __init__(self, inner):
        self.inner = inner
        self._events = collections.deque()

    @property
    def ready(self) -> bool:
        return self.inner.ready

    @property
    def busy(self) -> bool:
        return self.inner.busy

    def submit(self, request) -> None:
        self.inner.submit(request)

    def poll(self):
        return self._events.popleft() if self._events else None

    def fetch(self, timeout_s: float) -> None:
        """Wait until the inner worker delivers its next event and queue it."""
        deadline = time.monotonic() + timeout_s
        while True:
            event = self.inner.poll()
            if event is not None:
                self._events.append(event)
                return
            if time.monotonic() > deadline:
                raise TimeoutError(f"no chunk from the generation process within {timeout_s:.0f} s")
            time.sleep(0.0005)

    def __getattr__(self, name):
        return getattr(self.inner, name)


def _buffer_adds(engine) -> int:
    return int(sum(engine.buffer.stats()["add"].values()))


def _wait(predicate, timeout_s: float, what: str, period: float = 0.0002) -> None:
    deadline = time.monotonic() + timeout_s
    while not predicate():
        if time.monotonic() > deadline:
            raise TimeoutError(f"replay: timed out after {timeout_s:.0f} s waiting for {what}")
        time.sleep(period)


# --------------------------------------------------------------------------- replay
def replay_bag(cfg: ReplayConfig) -> ReplayResult:
    """Play ``cfg.bag`` into a policy node in lockstep and record its output into ``cfg.out``."""
    import rclpy
    from geometry_msgs.msg import PointStamped, PoseStamped
    from rclpy.context import Context
    from rclpy.executors import SingleThreadedExecutor
    from rclpy.lifecycle import TransitionCallbackReturn
    from rclpy.node import Node
    from rclpy.parameter import Parameter
    from rosgraph_msgs.msg import Clock
    from sensor_msgs.msg import CompressedImage, Image, JointState
    from std_msgs.msg import Float64MultiArray
    from trajectory_msgs.msg import JointTrajectory

    from ..core.checkpoint import read_model_config
    from ..data.bag_io import BagRecorder
    from .node_process import default_domain_id
    from .policy_node import PolicyNode
    from .qos import command_qos

    model_cfg, _ = read_model_config(cfg.model_dir)
    cams = topics.camera_topics(model_cfg.observation.camera_names)
    candidates = []
    for raw_topic, compressed_topic in cams.values():
        candidates = [topics.absolute(raw_topic), topics.absolute(compressed_topic)]  # one camera supported here
    inputs = {topics.absolute(topics.input_topic(name)): PointStamped if entry["type"] == "point" else PoseStamped
              for name, entry in model_cfg.observation.state_inputs.items()}
    playback = load_playback(cfg.bag, candidates, cfg.max_seconds, input_topics=list(inputs))
    if not playback:
        raise ValueError(f"{cfg.bag}: no stamped joint states to play")
    period_ns = int(round(NS_PER_S / cfg.control_rate_hz))
    t_first = next(s for s, topic, _, _ in playback if topic == STATE_TOPIC)
    t_last = playback[-1][0]
    if cfg.max_seconds is not None:
        t_last = min(t_last, t_first + int(cfg.max_seconds * NS_PER_S))
    n_steps = (t_last - t_first) // period_ns + 1

    domain_id = cfg.domain_id if cfg.domain_id is not None else default_domain_id()
    command_topic = COMMAND_TOPICS[cfg.output_mode]
    t_start = time.monotonic()
    context = Context()
    rclpy.init(context=context, domain_id=domain_id)
    node = player = recorder = executor = spin = None
    played: Dict[str, int] = collections.Counter()
    requested = 0
    progress = None
    try:
        overrides = [Parameter("model_path", value=str(Path(cfg.model_dir).resolve())),
                     Parameter("use_sim_time", value=True), Parameter("seed", value=cfg.seed),
                     Parameter("inference_delay_steps", value=cfg.inference_delay_steps),
                     Parameter("control_rate_hz", value=float(cfg.control_rate_hz)),
                     Parameter("chunk_blending", value=cfg.chunk_blending),
                     Parameter("output_mode", value=cfg.output_mode),
                     Parameter("observation_timeout_s", value=5.0),
                     Parameter("backend", value="torch"), Parameter("device", value="cpu")]
        if cfg.sampler is not None:
            overrides.append(Parameter("sampler", value=cfg.sampler))
        if cfg.num_steps is not None:
            overrides.append(Parameter("num_steps", value=cfg.num_steps))
        node = PolicyNode(POLICY_NODE, context=context, parameter_overrides=overrides)
        player = Node("genpolicy_replay", context=context, parameter_overrides=[Parameter("use_sim_time", value=True)])
        clock_pub = player.create_publisher(Clock, CLOCK_TOPIC, command_qos())
        types = {STATE_TOPIC: JointState, **inputs}
        for raw_topic, compressed_topic in cams.values():
            types.update({topics.absolute(raw_topic): Image, topics.absolute(compressed_topic): CompressedImage})
        publishers = {topic: player.create_publisher(types[topic], topic, command_qos(depth=100))
                      for topic in {t for _, t, _, _ in playback}}
        out_types = {command_topic: JointTrajectory if cfg.output_mode == "joint_trajectory" else Float64MultiArray,
                     CHUNK_TOPIC: JointTrajectory}
        recorder = BagRecorder(player, cfg.out, out_types)
        recorder.bag.set_custom_data(REPLAY_METADATA_KEY, json.dumps({
            "bag": str(Path(cfg.bag).resolve()), "model": str(Path(cfg.model_dir).resolve()), "seed": cfg.seed,
            "inference_delay_steps": cfg.inference_delay_steps, "control_rate_hz": cfg.control_rate_hz,
            "sampler": cfg.sampler, "num_steps": cfg.num_steps, "chunk_blending": cfg.chunk_blending,
            "output_mode": cfg.output_mode}))
        executor = SingleThreadedExecutor(context=context)
        executor.add_node(node)
        executor.add_node(player)
        spin = threading.Thread(target=executor.spin, name="genpolicy-replay-spin", daemon=True)
        spin.start()

        if node.trigger_configure() != TransitionCallbackReturn.SUCCESS:
            raise RuntimeError("configuring the policy node failed (see its log above)")
        # A recorded input the node does not subscribe to (it reads those names from JointState)
        # is not played: nothing would take it.
        unread = {t for t in inputs if t in publishers and node.count_subscribers(t) == 0}
        if unread:
            playback = [row for row in playback if row[1] not in unread]
            for t in unread:
                player.destroy_publisher(publishers.pop(t))
        # Discovery: our publishers see the node's subscriptions, the recorder sees its outputs.
        _wait(lambda: all(p.get_subscription_count() >= 1 for p in publishers.values())
              and player.count_publishers(CHUNK_TOPIC) >= 1 and node.count_subscribers(CHUNK_TOPIC) >= 1
              and player.count_publishers(command_topic) >= 1 and node.count_subscribers(command_topic) >= 1,
              20.0, "topic discovery", period=0.01)
        clock_pub.publish(Clock(clock=_time_msg(t_first - period_ns)))
        _wait(lambda: node.get_clock().now().nanoseconds == t_first - period_ns, 10.0, "the first /clock")
        if node.trigger_activate() != TransitionCallbackReturn.SUCCESS:
            raise RuntimeError("activating the policy node failed")
        node.enter_lockstep()
        engine = node.engine
        worker = _LockstepWorker(engine.worker)
        engine.worker = worker
        engine.latency = _FixedLatency(period_ns / NS_PER_S)

        if cfg.progress:
            from tqdm import tqdm

            progress = tqdm(total=int(n_steps), desc="replay", unit="step")
        cursor = 0
        for k in range(int(n_steps)):
            t_k = t_first + k * period_ns
            clock_pub.publish(Clock(clock=_time_msg(t_k)))
            _wait(lambda: node.get_clock().now().nanoseconds == t_k, cfg.step_timeout_s, f"/clock {t_k} ns")
            adds = _buffer_adds(engine)
            sent = 0
            while cursor < len(playback) and playback[cursor][0] <= t_k:
                _, topic, _, raw = playback[cursor]
                publishers[topic].publish(raw)
                played[topic] += 1
                sent += 1
                cursor += 1
            _wait(lambda: _buffer_adds(engine) >= adds + sent, min(cfg.step_timeout_s, 10.0),
                  f"the node to take {sent} message(s) at step {k} (if it rejected them, its log above "
                  "says why: joint names, image size or encoding)")
            before = engine.counters.requests
            node.tick_once()
            if engine.counters.requests > before:
                requested += 1
                worker.fetch(cfg.step_timeout_s)
            if progress is not None:
                progress.update(1)
        # One last tick merges a chunk fetched at the final step; then let the recorder drain.
        node.tick_once()
        _wait_quiet(recorder, 0.5, cfg.step_timeout_s)
        recorded = recorder.counts
    finally:
        if progress is not None:
            progress.close()
        if recorder is not None:
            recorder.close()
        if executor is not None:
            executor.shutdown(timeout_sec=2.0)
        if spin is not None:
            spin.join(2.0)
        for n in (player, node):
            if n is not None:
                n.destroy_node()
        rclpy.try_shutdown(context=context)
    return ReplayResult(out=str(Path(cfg.out).resolve()), steps=int(n_steps), played=dict(played),
                        recorded=dict(recorded), chunks_requested=requested,
                        bag_span_s=round((t_last - t_first) / NS_PER_S, 6), wall_s=round(time.monotonic() - t_start, 2),
                        settings={"seed": cfg.seed, "inference_delay_steps": cfg.inference_delay_steps,
                                  "control_rate_hz": cfg.control_rate_hz, "domain_id": domain_id})


def _wait_quiet(recorder, quiet_s: float, timeout_s: float) -> None:
    """Wait until no message has reached the recorder for ``quiet_s``."""
    deadline = time.monotonic() + timeout_s
    last, since = recorder.counts, time.monotonic()
    while time.monotonic() - since < quiet_s and time.monotonic() < deadline:
        time.sleep(0.02)
        now = recorder.counts
        if now != last:
            last, since = now, time.monotonic()


def _time_msg(ns: int):
    from builtin_interfaces.msg import Time

    sec, nanosec = divmod(int(ns), NS_PER_S)
    return Time(sec=sec, nanosec=nanosec)


# --------------------------------------------------------------------------- comparing outputs
def output_sequences(bag) -> Dict[str, dict]:
    """Per recorded topic: ``values`` (one row per message, flattened positions) and ``stamps``."""
    from ..data.bag_io import read_bag_messages

    seqs: Dict[str, dict] = {}
    for topic, msgtype, _log_time, msg in read_bag_messages(bag):
        entry = seqs.setdefault(topic, {"values": [], "stamps": []})
        if msgtype == "trajectory_msgs/msg/JointTrajectory":
            row = np.concatenate([np.asarray(p.positions, dtype=np.float64) for p in msg.points]) \
                if len(msg.points) else np.zeros(0)
            entry["stamps"].append(_stamp_ns(msg.header.stamp))
        else:
            row = np.asarray(msg.data, dtype=np.float64)
            entry["stamps"].append(0)
        entry["values"].append(row)
    return seqs


def compare_bags(a, b, tolerance: float = 1e-9) -> dict:
    """Largest |Δ| per topic between two replay outputs (messages aligned by order).

    ``identical`` is True when every topic has the same number of messages, the same
    header stamps and values within ``tolerance``.
    """
    sa, sb = output_sequences(a), output_sequences(b)
    report = {"a": str(a), "b": str(b), "tolerance": tolerance, "topics": {}}
    identical = set(sa) == set(sb)
    for topic in sorted(set(sa) | set(sb)):
        va = sa.get(topic, {"values": [], "stamps": []})
        vb = sb.get(topic, {"values": [], "stamps": []})
        n = min(len(va["values"]), len(vb["values"]))
        max_diff = 0.0
        shape_mismatch = 0
        for x, y in zip(va["values"][:n], vb["values"][:n]):
            if x.shape != y.shape:
                shape_mismatch += 1
                continue
            if x.size:
                max_diff = max(max_diff, float(np.max(np.abs(x - y))))
        stamps_equal = va["stamps"][:n] == vb["stamps"][:n]
        same = (len(va["values"]) == len(vb["values"]) and shape_mismatch == 0 and stamps_equal
                and max_diff <= tolerance)
        identical &= same
        report["topics"][topic] = {"count_a": len(va["values"]), "count_b": len(vb["values"]),
                                   "max_abs_diff": max_diff if math.isfinite(max_diff) else None,
                                   "stamps_equal": stamps_equal, "shape_mismatches": shape_mismatch,
                                   "identical": same}
    report["identical"] = bool(identical)
    return report
