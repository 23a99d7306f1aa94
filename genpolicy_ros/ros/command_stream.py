"""Command-stream timing over real DDS, as a controller sees it.

``genpolicy bench MODEL --ros-seconds N`` (or ``python -m genpolicy_ros.ros.command_stream
MODEL``) starts ``genpolicy node --autostart`` in a process of its own — the way it runs
on a robot — and plays the robot from this process: JointState at ``robot_rate_hz`` (the
arm joints track the last command, like a position-controlled arm; other state names read
0), and camera frames at the model's rate when the model has cameras. The node generates
chunks in its generation child all the while; the probe subscribes to the command topic
and measures, after ``warmup_s``, for ``seconds``:

* ``interarrival_ms`` — gaps between consecutive commands on the middleware's receive
  timestamps (``MessageInfo.received_timestamp``, stamped by the DDS layer when the sample
  arrives, so the probe's own Python scheduling does not enter), p50/p99/max;
* ``jitter_ms`` — ``|gap - period|`` of the same gaps, p50/p99/max: the target of the ROS
  issue is p99 <= 1 ms at 100 Hz while generation runs;
* the same two on the publisher's source timestamps and on the probe callback's monotonic
  clock (what a Python controller would see), for comparison;
* the command rate, non-finite commands, the node's CPU use (node + generation child) and
  the node's own ``/diagnostics`` at the end (executor lateness, generation latency).

Where the installed rclpy cannot hand ``MessageInfo`` to a callback (Humble; see
:mod:`.message_info`), the middleware figures are reported as unavailable and the
callback clock is used.

Everything here is a measurement, not a test: the tests assert the stream's rate and
content, never its timing.
"""
from __future__ import annotations

import argparse
import json
import math
import os
import sys
import threading
import time
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Dict, Iterator, List, Optional, Sequence, Tuple

import numpy as np

from .node_process import NodeProcess, node_command, process_cpu_seconds

OUTPUT_MODES = ("joint_trajectory", "forward_command")
NODE_NAME = "genpolicy"
FORMAT = "genpolicy-command-stream/1"
DIAG_KEYS = ("backend", "executor_rate_hz", "executor_lateness_p50_ms", "executor_lateness_p99_ms",
             "executor_lateness_max_ms", "executor_missed_ticks", "latency_p50_ms", "latency_p95_ms",
             "chunks_total", "holds", "hold_reason", "generation_errors", "non_finite")


@dataclass(frozen=True)
class StreamProbeConfig:
    """What to measure; validated on construction."""

    model_dir: str
    seconds: float = 20.0  # measured window
    warmup_s: float = 2.0  # after the first command, before measuring
    rate_hz: float = 100.0  # the node's control_rate_hz
    robot_rate_hz: float = 100.0  # JointState rate of the probe robot
    output_mode: str = "forward_command"
    backend: str = "auto"
    domain_id: Optional[int] = None  # default: 170 + pid % 30
    startup_timeout_s: float = 120.0
    node_args: tuple = ()  # extra `genpolicy node` options, e.g. ("--executor", "events")
    node_params: tuple = ()  # extra node parameters as (name, value) pairs, e.g. (("cpu_split", True),)
    camera_rate_hz: Optional[float] = None  # camera models: frames per second (None: the model's 1 / dt)
    camera_size: Optional[Tuple[int, int]] = None  # (H, W) of the frames (None: the model's image_size)

    def __post_init__(self):
        for name in ("seconds", "rate_hz", "robot_rate_hz", "startup_timeout_s"):
            value = getattr(self, name)
            if not (isinstance(value, (int, float)) and math.isfinite(value) and value > 0):
                raise ValueError(f"{name} must be a finite number > 0, got {value!r}")
        if not (math.isfinite(self.warmup_s) and self.warmup_s >= 0):
            raise ValueError(f"warmup_s must be >= 0, got {self.warmup_s!r}")
        if not 1.0 <= self.rate_hz <= 1000.0:
            raise ValueError(f"rate_hz must be in [1, 1000], got {self.rate_hz}")
        if self.output_mode not in OUTPUT_MODES:
            raise ValueError(f"output_mode must be one of {OUTPUT_MODES}, got {self.output_mode!r}")
        if self.domain_id is not None and not 0 <= int(self.domain_id) <= 232:
            raise ValueError(f"domain_id must be in [0, 232], got {self.domain_id}")
        if self.camera_rate_hz is not None and not (math.isfinite(self.camera_rate_hz)
                                                    and 0 < self.camera_rate_hz <= 1000):
            raise ValueError(f"camera_rate_hz must be in (0, 1000], got {self.camera_rate_hz!r}")
        size = self.camera_size
        if size is not None and not (len(size) == 2 and all(isinstance(v, int) and 0 < v <= 8192 for v in size)):
            raise ValueError(f"camera_size must be (H, W) with 0 < H, W <= 8192, got {self.camera_size!r}")


def _parse_param(text: str) -> Tuple[str, str]:
    """``NAME:=VALUE`` -> (name, value text, passed on as rcl reads ``-p NAME:=VALUE``)."""
    name, sep, value = text.partition(":=")
    if not sep or not name.strip():
        raise ValueError(f"--param wants NAME:=VALUE, got {text!r}")
    return name.strip(), value.strip()


def gap_statistics(times_s: Sequence[float], period_s: float) -> Dict[str, Optional[float]]:
    """Gaps between consecutive arrival times (s) → p50/p99/max of the gap and of
    ``|gap - period|`` in ms. Fewer than 2 times → all None."""
    t = np.asarray(times_s, dtype=float)  # [n]
    if t.size < 2:
        return {"interarrival_p50_ms": None, "interarrival_p99_ms": None, "interarrival_max_ms": None,
                "jitter_p50_ms": None, "jitter_p99_ms": None, "jitter_max_ms": None}
    gaps_ms = np.diff(t) * 1e3  # [n-1]
    dev_ms = np.abs(gaps_ms - period_s * 1e3)  # [n-1]
    return {"interarrival_p50_ms": float(np.percentile(gaps_ms, 50)),
            "interarrival_p99_ms": float(np.percentile(gaps_ms, 99)),
            "interarrival_max_ms": float(gaps_ms.max()),
            "jitter_p50_ms": float(np.percentile(dev_ms, 50)),
            "jitter_p99_ms": float(np.percentile(dev_ms, 99)),
            "jitter_max_ms": float(dev_ms.max())}


class _ProbeRobot:
    """The probe's node: JointState (+ camera) out, commands and /diagnostics in."""

    def __init__(self, context, model_cfg, cfg: StreamProbeConfig):
        from diagnostic_msgs.msg import DiagnosticArray
        from rclpy.node import Node
        from sensor_msgs.msg import Image, JointState
        from std_msgs.msg import Float64MultiArray
        from trajectory_msgs.msg import JointTrajectory

        from ..runtime.rate_loop import RateLoop
        from . import topics
        from .conversions import array_to_image_msg
        from .input_messages import MESSAGE_TYPES, input_message
        from .policy_node import FORWARD_TOPIC, TRAJECTORY_TOPIC, camera_topics
        from .qos import command_qos, sensor_qos

        self._JointState = JointState
        self._input_message = input_message
        self._to_image = array_to_image_msg
        self.node = Node("genpolicy_stream_probe", context=context)
        self.lock = threading.Lock()
        self.joints = list(model_cfg.action.joint_names)
        self.state_names = list(model_cfg.observation.state_names)
        self.position = np.zeros(len(self.joints))  # [A] measured arm position (= last command)
        self.recording = False
        self.received_ns: List[int] = []  # middleware receive stamps
        self.source_ns: List[int] = []  # publisher stamps
        self.callback_s: List[float] = []  # probe callback, monotonic
        self.commands = 0
        self.nonfinite = 0
        self.diagnostics: Dict[str, str] = {}
        self._js_pub = self.node.create_publisher(JointState, "joint_states", sensor_qos())
        # The model's non-joint inputs (e.g. the reach target as a PointStamped): without them the
        # node never has a full observation and never generates. Constant, plausible values.
        self._inputs = [(self.node.create_publisher(MESSAGE_TYPES[spec["type"]], topics.input_topic(name),
                                                    sensor_qos()), spec["type"], np.full(len(spec["names"]), 0.1))
                        for name, spec in model_cfg.observation.state_inputs.items()]  # values [k]
        self.joint_state_names = list(model_cfg.observation.joint_state_names)
        if cfg.output_mode == "joint_trajectory":
            self._subscribe(JointTrajectory, TRAJECTORY_TOPIC, self._trajectory_positions)
        else:
            self._subscribe(Float64MultiArray, FORWARD_TOPIC, lambda msg: np.asarray(msg.data, dtype=float))
        self.node.create_subscription(DiagnosticArray, "/diagnostics", self._on_diag, command_qos())
        self._loops = [RateLoop(cfg.robot_rate_hz, self._publish_state, name="probe-joint-states")]
        self._cameras = []
        h, w = cfg.camera_size or model_cfg.observation.image_size
        self._rng = np.random.default_rng(0)
        for camera, (raw, _) in camera_topics(model_cfg.observation.camera_names).items():
            self._cameras.append((self.node.create_publisher(Image, raw, sensor_qos()), (h, w)))
        if self._cameras:
            self._loops.append(RateLoop(cfg.camera_rate_hz or 1.0 / model_cfg.horizon.dt, self._publish_frames,
                                        name="probe-camera"))

    def _subscribe(self, msg_type, topic, positions) -> None:
        from .message_info import subscribe_with_info
        from .qos import command_qos

        self.message_info = subscribe_with_info(self.node, msg_type, topic,
                                                lambda msg, info: self._record(positions(msg), info),
                                                command_qos(depth=500))

    def _trajectory_positions(self, msg) -> np.ndarray:
        index = {n: i for i, n in enumerate(msg.joint_names)}
        return np.array([msg.points[-1].positions[index[j]] for j in self.joints], dtype=float)

    def _record(self, pos: np.ndarray, info) -> None:
        now = time.monotonic()
        with self.lock:
            self.commands += 1
            if not np.all(np.isfinite(pos)):
                self.nonfinite += 1
                return
            self.position = pos
            if not self.recording:
                return
            self.callback_s.append(now)
            if info is not None:
                self.received_ns.append(int(info["received_timestamp"]))
                self.source_ns.append(int(info["source_timestamp"]))

    def _on_diag(self, msg) -> None:
        for status in msg.status:
            if status.name.split(":")[0].strip("/").endswith(NODE_NAME):
                with self.lock:
                    self.diagnostics = {kv.key: kv.value for kv in status.values}

    def _publish_state(self, tick) -> None:
        with self.lock:
            pos = dict(zip(self.joints, self.position.tolist()))
        names = self.joint_state_names
        msg = self._JointState(name=names, position=[float(pos.get(n, 0.0)) for n in names])
        msg.header.stamp = self.node.get_clock().now().to_msg()
        self._js_pub.publish(msg)
        for pub, kind, values in self._inputs:
            pub.publish(self._input_message(kind, values, stamp=msg.header.stamp))

    def _publish_frames(self, tick) -> None:
        stamp = self.node.get_clock().now().to_msg()
        for pub, (h, w) in self._cameras:
            frame = self._rng.integers(0, 256, size=(h, w, 3), dtype=np.uint8)  # [H, W, 3] RGB
            pub.publish(self._to_image(frame, "rgb8", stamp=stamp))

    def start(self) -> None:
        for loop in self._loops:
            loop.start()

    def stop(self) -> None:
        for loop in self._loops:
            loop.stop()


@contextmanager
def node_and_probe(cfg: StreamProbeConfig, probe_type=None, log=print, **probe_kwargs) -> Iterator[tuple]:
    """``genpolicy node --autostart`` in a process of its own and the probe robot
    (``probe_type(context, model_cfg, cfg, **probe_kwargs)``, default :class:`_ProbeRobot`)
    spinning in this one, on one ROS domain. Yields ``(node_process, probe, domain_id)``
    once the first command has arrived; stops both on exit."""
    import rclpy
    from rclpy.context import Context
    from rclpy.executors import SingleThreadedExecutor

    from ..core.checkpoint import read_model_config

    model_cfg, _ = read_model_config(cfg.model_dir)
    domain_id = int(cfg.domain_id) if cfg.domain_id is not None else 170 + os.getpid() % 30
    params = {"model_path": str(Path(cfg.model_dir).resolve()), "control_rate_hz": float(cfg.rate_hz),
              "output_mode": cfg.output_mode, "backend": cfg.backend, **dict(cfg.node_params)}
    context = Context()
    rclpy.init(context=context, domain_id=domain_id)
    node = NodeProcess(node_command(params, extra=["--autostart", *cfg.node_args]), domain_id)
    probe = executor = spin = None
    try:
        probe = (probe_type or _ProbeRobot)(context, model_cfg, cfg, **probe_kwargs)
        executor = SingleThreadedExecutor(context=context)
        executor.add_node(probe.node)
        spin = threading.Thread(target=executor.spin, name="genpolicy-probe-spin", daemon=True)
        spin.start()
        probe.start()
        deadline = time.monotonic() + cfg.startup_timeout_s
        while probe.commands == 0:
            if not node.alive() or time.monotonic() > deadline:
                raise RuntimeError("the policy node sent no command:\n" + node.log_tail())
            time.sleep(0.05)
        log(f"node commanding at {cfg.rate_hz:g} Hz")
        yield node, probe, domain_id
    finally:
        if probe is not None:
            probe.stop()
        if executor is not None:
            executor.shutdown(timeout_sec=2.0)
        if spin is not None:  # the spin thread is out of its wait set before the node goes
            spin.join(2.0)
        node.stop()
        if probe is not None:
            probe.node.destroy_node()
        rclpy.try_shutdown(context=context)


def _maps_torch(pid: int) -> Optional[bool]:
    """Whether process ``pid`` has libtorch mapped (Linux /proc; None elsewhere)."""
    try:
        return "libtorch" in Path(f"/proc/{pid}/maps").read_text()
    except OSError:
        return None


def measure_command_stream(cfg: StreamProbeConfig, log=print) -> dict:
    """Run the node in a child process, probe its command stream; the report (see module doc)."""
    with node_and_probe(cfg, log=log) as (node, probe, domain_id):
        log(f"warm-up {cfg.warmup_s:g} s, measuring {cfg.seconds:g} s")
        time.sleep(cfg.warmup_s)
        cpu0, wall0 = process_cpu_seconds(node.pid), time.monotonic()
        with probe.lock:
            probe.recording = True
            n0, bad0 = probe.commands, probe.nonfinite
        time.sleep(cfg.seconds)
        with probe.lock:
            probe.recording = False
            n1, bad1 = probe.commands, probe.nonfinite
            received, source, callback = list(probe.received_ns), list(probe.source_ns), list(probe.callback_s)
        cpu1, wall1 = process_cpu_seconds(node.pid), time.monotonic()
        time.sleep(1.2)  # one more /diagnostics period
        with probe.lock:
            diag = {k: probe.diagnostics.get(k) for k in DIAG_KEYS}
        loaded_torch = _maps_torch(node.pid)  # the real-time process must never import torch
    period = 1.0 / cfg.rate_hz
    duration = wall1 - wall0
    report = {
        "format": FORMAT, "model": str(Path(cfg.model_dir).resolve()), "settings": asdict(cfg),
        "domain_id": domain_id,
        "executor": ("rclpy EventsExecutor" if "events" in cfg.node_args else "rclpy SingleThreadedExecutor")
        + " (node), generation in a child process",
        "duration_s": duration, "commands": n1 - n0, "rate_hz_measured": (n1 - n0) / duration,
        "nonfinite_commands": bad1 - bad0,
        "node_cpu_percent": 100.0 * (cpu1 - cpu0) / duration,
        "middleware": gap_statistics(np.asarray(received, dtype=float) * 1e-9, period) if received else None,
        "source": gap_statistics(np.asarray(source, dtype=float) * 1e-9, period) if source else None,
        "probe_callback": gap_statistics(callback, period),
        "message_info": probe.message_info,
        "node_diagnostics": diag,
        "node_loaded_torch": loaded_torch,
    }
    if not probe.message_info:
        report["middleware_unavailable"] = "this rclpy cannot pass MessageInfo to subscription callbacks"
    return report


def format_report(r: dict) -> str:
    """A few readable lines of :func:`measure_command_stream`'s report."""
    def row(name, g):
        if not g or g.get("jitter_p99_ms") is None:
            return f"  {name:15} unavailable"
        return (f"  {name:15} gap p50 {g['interarrival_p50_ms']:.3f}  p99 {g['interarrival_p99_ms']:.3f}  "
                f"max {g['interarrival_max_ms']:.3f}   |gap-period| p50 {g['jitter_p50_ms']:.3f}  "
                f"p99 {g['jitter_p99_ms']:.3f}  max {g['jitter_max_ms']:.3f}")

    s = r["settings"]
    d = r["node_diagnostics"]
    return "\n".join([
        f"ROS command stream @ {s['rate_hz']:g} Hz ({s['output_mode']}), node in its own process: "
        f"{r['commands']} commands in {r['duration_s']:.1f} s = {r['rate_hz_measured']:.2f} Hz, "
        f"{r['nonfinite_commands']} non-finite, node CPU {r['node_cpu_percent']:.0f} % (incl. generation child)",
        "  timings in ms",
        row("middleware rx", r.get("middleware")),
        row("publisher", r.get("source")),
        row("probe callback", r.get("probe_callback")),
        f"  node: backend {d.get('backend')}, loop lateness p99 {d.get('executor_lateness_p99_ms')} ms, "
        f"missed ticks {d.get('executor_missed_ticks')}, generation p95 {d.get('latency_p95_ms')} ms, "
        f"chunks {d.get('chunks_total')}, holds {d.get('holds')}"])


def main(argv: Optional[Sequence[str]] = None) -> int:
    p = argparse.ArgumentParser(prog="python -m genpolicy_ros.ros.command_stream",
                                description="Measure the policy node's command stream over real DDS.")
    p.add_argument("model", help="model directory")
    p.add_argument("--seconds", type=float, default=20.0)
    p.add_argument("--warmup", type=float, default=2.0)
    p.add_argument("--rate", type=float, default=100.0)
    p.add_argument("--robot-rate", type=float, default=100.0)
    p.add_argument("--output-mode", default="forward_command", choices=OUTPUT_MODES)
    p.add_argument("--backend", default="auto")
    p.add_argument("--domain-id", type=int, default=None)
    p.add_argument("--json", default=None, help="write the report here (default: stdout only)")
    p.add_argument("--node-arg", action="append", default=[], metavar="ARG",
                   help="extra option for `genpolicy node` (repeatable), e.g. --node-arg=--executor --node-arg=events")
    p.add_argument("--param", action="append", default=[], metavar="NAME:=VALUE",
                   help="node parameter (repeatable), e.g. --param cpu_split:=true --param num_steps:=40")
    args = p.parse_args(argv)
    try:
        node_params = tuple(_parse_param(text) for text in args.param)
        cfg = StreamProbeConfig(model_dir=args.model, seconds=args.seconds, warmup_s=args.warmup,
                                rate_hz=args.rate, robot_rate_hz=args.robot_rate, output_mode=args.output_mode,
                                backend=args.backend, domain_id=args.domain_id, node_args=tuple(args.node_arg),
                                node_params=node_params)
        report = measure_command_stream(cfg, log=lambda m: print(m, file=sys.stderr))
    except (ValueError, RuntimeError) as exc:
        print(f"command stream: {exc}", file=sys.stderr)
        return 2
    print(format_report(report))
    if args.json:
        Path(args.json).write_text(json.dumps(report, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
