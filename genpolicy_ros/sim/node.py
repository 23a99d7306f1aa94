"""ROS 2 nodes of the simulated reaching task: the MuJoCo sim and its scripted expert.

``SimNode`` (default name ``genpolicy_sim``) steps :class:`ReachEnv` in a fixed loop on a
dedicated thread (absolute deadlines on the steady clock; when it falls behind it slows
down instead of bursting to catch up) and behaves towards the outside like a robot with
ros2_control::

    publishes   joint_states                       sensor_msgs/JointState   every tick
                camera/image_raw                   sensor_msgs/Image rgb8   camera_rate_hz
                camera/image_raw/compressed        sensor_msgs/CompressedImage (png|jpeg)
                /clock                             rosgraph_msgs/Clock      if publish_clock
                ~/episode                          std_msgs/String (JSON)   when an episode ends
    subscribes  joint_trajectory_controller/joint_trajectory  trajectory_msgs/JointTrajectory
                forward_position_controller/commands           std_msgs/Float64MultiArray
    service     ~/reset                            std_srvs/Trigger: new episode, next seed

Time base ("node time"): with ``publish_clock`` the node owns a simulated clock that
starts at ``CLOCK_START_S`` and advances one loop period per tick (also while
``rate_factor`` != 1); every header stamp, ``/clock`` and trajectory start time is on it.
Without it, stamps are the node's ROS time (``get_clock().now()``).

One tick (period ``1 / physics_rate_hz`` of simulated time)::

    now += period ─► new episode pending? ── yes ─► env.reset(seed_i); command := start pose
                                  └─ no ─► command := trajectory(now) or held command
                                           env.step(command, period)
                  ─► publish /clock, joint_states(stamp=now), camera frames if due
                  ─► env.time >= episode_s ─► publish ~/episode JSON; auto_reset → pending

Commands follow ros2_control: the **latest** valid message wins and is held forever
(position controller, no timeout). A JointTrajectory is checked like
joint_trajectory_controller does (joints by name, exactly the arm joints, no duplicates or
unknown names, every point ``len(positions) == len(joint_names)``, strictly increasing
``time_from_start``) plus finiteness, which the real controller does not check; it starts
at ``header.stamp`` (0 = on receipt) and is executed by *linear* interpolation from the
command in force at receipt through its points (velocities are ignored), then holds the
last point. Trajectories that end before now are rejected (as the controller does), and
so are trajectories stamped before the current episode began (late messages meant for
the previous episode: a reset is a new world, not a robot motion).
A Float64MultiArray must hold exactly 2 finite values (shoulder, elbow). Rejected messages
are logged with the reason and counted in ``stats["rejected_commands"]``; the arm keeps
its previous command.

The ``~/episode`` JSON: ``{"episode", "seed", "time", "start_time", "end_time",
"start_ns", "end_ns", "completed", "success", "final_distance", "mode", "target"}``;
``start_ns``/``end_ns`` are the header stamps (node time, integer ns) of the episode's
first and last joint_states, which :func:`genpolicy_ros.data.bags.bag_to_episodes` uses to
cut a recording into episodes. ``completed`` is false for an episode cut short by
``~/reset``.

``ExpertDriver`` (default name ``genpolicy_expert``) closes the loop with the scripted
:class:`~genpolicy_ros.sim.expert.ReachExpert`: it sees joint_states, starts a new expert
(random elbow mode) whenever the target moves (a new episode), and publishes at
``command_rate_hz`` of *header-stamp* time either a one-point JointTrajectory stamped
with the observation it reacted to (so a recording aligns action and state exactly), or
a Float64MultiArray. Its command for the observation at ``t`` is the expert's target at
``t + 1/command_rate_hz`` (as :func:`genpolicy_ros.sim.offline.collect_expert_episodes`);
a trajectory carries the expert's plan for ``horizon`` periods ahead (first point = that
command), so that late delivery still finds points in the future.
"""
from __future__ import annotations

import json
import math
import threading
import time
from dataclasses import dataclass
from typing import Optional, Sequence, Tuple

import numpy as np
from rcl_interfaces.msg import IntegerRange, FloatingPointRange, ParameterDescriptor
from rclpy.node import Node
from rosgraph_msgs.msg import Clock
from sensor_msgs.msg import CompressedImage, Image, JointState
from std_msgs.msg import Float64MultiArray, String
from std_srvs.srv import Trigger
from trajectory_msgs.msg import JointTrajectory

from ..ros.conversions import (
    array_to_compressed_msg,
    array_to_image_msg,
    joint_state_to_positions,
    make_float64_array,
    make_joint_trajectory,
)
from ..ros.qos import command_qos
from . import reach_env
from .expert import ReachExpert
from .reach_env import ALL_JOINTS, ARM_JOINTS, ReachEnv, ReachTaskConfig, obstacle_task

NS_PER_S = 1_000_000_000
CLOCK_START_S = 1.0  # simulated clock origin: stamp 0 means "now" to controllers
JOINT_STATES_TOPIC = "joint_states"
IMAGE_TOPIC = "camera/image_raw"
COMPRESSED_TOPIC = "camera/image_raw/compressed"
TRAJECTORY_TOPIC = "joint_trajectory_controller/joint_trajectory"
FORWARD_TOPIC = "forward_position_controller/commands"
EPISODE_TOPIC = "~/episode"
CAMERA_FRAME = "overhead_camera"


# --------------------------------------------------------------------------- parameters
@dataclass(frozen=True)
class SimParams:
    """The sim node's parameters (all read-only after start); validated on construction."""

    seed: int = 0
    episode_s: float = 3.0
    physics_rate_hz: float = 100.0  # loop / joint_states rate (simulated time); divides 500 Hz
    camera_rate_hz: float = 10.0  # 0 = no camera (no rendering)
    image_height: int = 64
    image_width: int = 64
    compressed_format: str = "jpeg"  # png | jpeg
    publish_clock: bool = False
    rate_factor: float = 1.0  # simulated seconds per wall second
    auto_reset: bool = True
    max_episodes: int = 0  # stop starting new episodes after this many (0 = never stop)
    obstacle: bool = False  # the obstacle variant of the task (reach_env.obstacle_task)

    def __post_init__(self):
        if self.seed < 0:
            raise ValueError(f"seed must be >= 0, got {self.seed}")
        substeps = self.task().physics_substeps_per_s / self.physics_rate_hz  # MuJoCo steps per tick
        if not (self.physics_rate_hz > 0 and substeps >= 1 and abs(substeps - round(substeps)) < 1e-9):
            raise ValueError(
                f"physics_rate_hz must divide the MuJoCo step rate {self.task().physics_substeps_per_s} Hz "
                f"(e.g. 50, 100, 250, 500), got {self.physics_rate_hz}")
        if not (0.0 <= self.camera_rate_hz <= self.physics_rate_hz):
            raise ValueError(
                f"camera_rate_hz must be in [0, physics_rate_hz={self.physics_rate_hz}], got {self.camera_rate_hz}")
        if self.compressed_format not in ("png", "jpeg"):
            raise ValueError(f"compressed_format must be 'png' or 'jpeg', got {self.compressed_format!r}")
        if not (0.01 <= self.rate_factor <= 100.0):
            raise ValueError(f"rate_factor must be in [0.01, 100], got {self.rate_factor}")
        if self.max_episodes < 0:
            raise ValueError(f"max_episodes must be >= 0, got {self.max_episodes}")
        if self.episode_s * self.physics_rate_hz < 2:
            raise ValueError("episode_s must span at least 2 physics ticks")
        self.task()  # validates episode_s and the image size

    def task(self) -> ReachTaskConfig:
        size = (self.image_height, self.image_width)
        if self.obstacle:
            return obstacle_task(episode_s=self.episode_s, image_size=size)
        return ReachTaskConfig(episode_s=self.episode_s, image_size=size)


def _descriptor(description: str, *, int_range=None, float_range=None) -> ParameterDescriptor:
    d = ParameterDescriptor(description=description, read_only=True)
    if int_range is not None:
        d.integer_range = [IntegerRange(from_value=int_range[0], to_value=int_range[1], step=1)]
    if float_range is not None:
        d.floating_point_range = [FloatingPointRange(from_value=float(float_range[0]),
                                                     to_value=float(float_range[1]), step=0.0)]
    return d


_DESCRIPTIONS = {
    "seed": ("episode i uses seed * 100003 + i", dict(int_range=(0, 2**31 - 1))),
    "episode_s": ("episode length in simulated seconds", dict(float_range=(0.05, 3600.0))),
    "physics_rate_hz": ("loop and joint_states rate (simulated time); divides 500 Hz",
                        dict(float_range=(1.0, 500.0))),
    "camera_rate_hz": ("camera frame rate, 0 = no camera", dict(float_range=(0.0, 2000.0))),
    "image_height": ("camera image height (pixels)", dict(int_range=(16, 4096))),
    "image_width": ("camera image width (pixels)", dict(int_range=(16, 4096))),
    "compressed_format": ("png or jpeg", {}),
    "publish_clock": ("publish /clock and stamp everything with simulated time", {}),
    "rate_factor": ("simulated seconds per wall-clock second", dict(float_range=(0.01, 100.0))),
    "auto_reset": ("start the next episode when one ends", {}),
    "max_episodes": ("start no new episode after this many ended (0 = unlimited)", dict(int_range=(0, 2**31 - 1))),
    "obstacle": ("obstacle variant: start beside the target, a post to avoid; touching it fails the episode", {}),
}


# --------------------------------------------------------------------------- commands
def parse_joint_trajectory(msg: JointTrajectory, joint_names: Sequence[str] = ARM_JOINTS
                           ) -> Tuple[Optional[Tuple[np.ndarray, np.ndarray]], str]:
    """Check a JointTrajectory the way joint_trajectory_controller does, plus finiteness.

    Returns ``((times_from_start_ns [K] int64, positions [K, D] in joint_names order), "")``
    or ``(None, reason)``. Never raises.
    """
    try:
        names = list(msg.joint_names)
        if not names:
            return None, "JointTrajectory has no joint_names"
        if len(set(names)) != len(names):
            return None, f"JointTrajectory has duplicate joint names {names}"
        unknown = [n for n in names if n not in joint_names]
        if unknown:
            return None, f"JointTrajectory names unknown joint(s) {unknown} (this robot: {list(joint_names)})"
        missing = [n for n in joint_names if n not in names]
        if missing:
            return None, f"JointTrajectory lacks joint(s) {missing} (partial goals are not accepted)"
        if not msg.points:
            return None, "JointTrajectory has no points"
        order = [names.index(n) for n in joint_names]
        times, rows = [], []
        for k, point in enumerate(msg.points):
            if len(point.positions) != len(names):
                return None, (f"ragged JointTrajectory: point {k} has {len(point.positions)} positions "
                              f"for {len(names)} joints")
            for field in ("velocities", "accelerations"):
                if len(getattr(point, field)) not in (0, len(names)):
                    return None, f"ragged JointTrajectory: point {k} has {len(getattr(point, field))} {field}"
            tfs = int(point.time_from_start.sec) * NS_PER_S + int(point.time_from_start.nanosec)
            if tfs < 0 or (times and tfs <= times[-1]):
                return None, f"time_from_start must be >= 0 and strictly increasing (point {k})"
            times.append(tfs)
            rows.append([float(point.positions[i]) for i in order])
        positions = np.asarray(rows, dtype=np.float64)  # [K, D]
        if not np.all(np.isfinite(positions)):
            return None, "JointTrajectory contains non-finite positions"
        return (np.asarray(times, dtype=np.int64), positions), ""
    except Exception as exc:  # a malformed message must never stop the sim
        return None, f"unreadable JointTrajectory: {type(exc).__name__}: {exc}"


class LinearTrajectory:
    """Piecewise-linear joint targets through knots (node time ns -> [D] positions)."""

    def __init__(self, knot_times_ns: np.ndarray, knot_positions: np.ndarray):
        self.t0 = int(knot_times_ns[0])
        self.times = (np.asarray(knot_times_ns, dtype=np.int64) - self.t0).astype(np.float64)  # [K] ns from t0
        self.positions = np.asarray(knot_positions, dtype=np.float64)  # [K, D]

    @classmethod
    def from_message(cls, start_ns: int, current: np.ndarray, tfs_ns: np.ndarray, positions: np.ndarray):
        """Start at ``start_ns`` from ``current`` [D]; reach ``positions[k]`` at start + tfs[k]."""
        times = start_ns + tfs_ns  # [K]
        if tfs_ns[0] > 0:  # interpolate from the command in force at the start
            times = np.concatenate([[start_ns], times])  # [K+1]
            positions = np.concatenate([current[None, :], positions], axis=0)  # [K+1, D]
        return cls(times, positions)

    @property
    def end_ns(self) -> int:
        return self.t0 + int(self.times[-1])

    def sample(self, now_ns: int) -> np.ndarray:
        """Target at ``now_ns`` [D]: first knot before the start, last knot after the end."""
        x = float(now_ns - self.t0)
        return np.array([np.interp(x, self.times, self.positions[:, j]) for j in range(self.positions.shape[1])])


# --------------------------------------------------------------------------- sim node
class SimNode(Node):
    """MuJoCo reaching task as a ROS 2 robot (see the module docstring for the interface)."""

    def __init__(self, node_name: str = "genpolicy_sim", *, start: bool = True, **node_kwargs):
        super().__init__(node_name, **node_kwargs)
        self._stop = threading.Event()
        self._thread: Optional[threading.Thread] = None
        self._lock = threading.Lock()  # guards the command state shared with the loop thread
        defaults = SimParams()
        values = {}
        for name, (description, ranges) in _DESCRIPTIONS.items():
            default = getattr(defaults, name)
            self.declare_parameter(name, default, _descriptor(description, **ranges))
            values[name] = self.get_parameter(name).value
        values["physics_rate_hz"] = float(values["physics_rate_hz"])
        self.params = SimParams(**values)
        p = self.params

        self._period_ns = int(round(NS_PER_S / p.physics_rate_hz))
        self._camera_period_ns = int(round(NS_PER_S / p.camera_rate_hz)) if p.camera_rate_hz > 0 else 0
        if p.camera_rate_hz > 0:
            reach_env.ensure_headless_gl()  # must precede the first `import mujoco`
        # The env (and its OpenGL context, current in one thread only) lives on the loop thread.
        self.env: Optional[ReachEnv] = None
        self._env_ready = threading.Event()
        self._env_error: Optional[BaseException] = None
        self._renderer = None

        sensor = command_qos(depth=10)  # reliable publishers match best-effort and reliable readers
        self._joint_pub = self.create_publisher(JointState, JOINT_STATES_TOPIC, sensor)
        self._image_pub = self._compressed_pub = None
        if self._camera_period_ns:
            self._image_pub = self.create_publisher(Image, IMAGE_TOPIC, sensor)
            self._compressed_pub = self.create_publisher(CompressedImage, COMPRESSED_TOPIC, sensor)
        self._clock_pub = self.create_publisher(Clock, "/clock", sensor) if p.publish_clock else None
        self._episode_pub = self.create_publisher(String, EPISODE_TOPIC, command_qos(depth=100))
        self.create_subscription(JointTrajectory, TRAJECTORY_TOPIC, self._on_trajectory, command_qos())
        self.create_subscription(Float64MultiArray, FORWARD_TOPIC, self._on_forward, command_qos())
        self.create_service(Trigger, "~/reset", self._on_reset)

        # State shared between the loop thread and the callbacks (guarded by _lock).
        self._command = np.zeros(2)  # [2] held position target
        self._trajectory: Optional[LinearTrajectory] = None
        self._reset_pending = True  # the first tick starts episode 0
        self._sim_ns = int(round(CLOCK_START_S * NS_PER_S)) - self._period_ns
        self._last_stamp_ns = 0
        self._episode = -1
        self._episode_seed = 0
        self._episode_start_ns = 0
        self._episode_open = False
        self._next_camera_ns = 0
        self.stats = {"ticks": 0, "late_ticks": 0, "rejected_commands": 0, "episodes_ended": 0,
                      "accepted_commands": 0}
        self.results: list = []  # the ~/episode dicts, in order

        self._thread = threading.Thread(target=self._loop, name="genpolicy_sim_loop", daemon=True)
        if start:
            self.start()

    # ------------------------------------------------------------------ life cycle
    def start(self) -> None:
        """Start the loop thread; returns once the env exists (raises if it could not be built)."""
        if not self._thread.is_alive() and not self._stop.is_set():
            self._thread.start()
            self._env_ready.wait(timeout=60.0)
            if self._env_error is not None:
                raise RuntimeError(f"the simulator could not start: {self._env_error}") from self._env_error

    def stop(self) -> None:
        """Stop the loop thread (idempotent); the last command simply stays applied."""
        self._stop.set()
        if self._thread is not None and self._thread.is_alive() and threading.current_thread() is not self._thread:
            self._thread.join(timeout=5.0)

    def destroy_node(self):
        self.stop()
        return super().destroy_node()

    # ------------------------------------------------------------------ time
    def now_ns(self) -> int:
        """Current node time in ns (simulated clock with publish_clock, else ROS time)."""
        if self.params.publish_clock:
            return self._sim_ns
        return self.get_clock().now().nanoseconds

    def _loop(self) -> None:
        try:
            # ReachEnv(render=True) would render on every step; the node renders only when a
            # camera frame is due, with its own renderer on the env's model and data.
            self.env = ReachEnv(self.params.task(), render=False)
            if self._camera_period_ns:
                import mujoco

                self._renderer = mujoco.Renderer(self.env.model, self.params.image_height,
                                                 self.params.image_width)
        except BaseException as exc:  # reported by start()
            self._env_error = exc
            self._env_ready.set()
            return
        self._env_ready.set()
        try:
            self._run_ticks()
        finally:
            if self._renderer is not None:
                self._renderer.close()
            self.env.close()

    def _render(self) -> np.ndarray:
        self._renderer.update_scene(self.env.data, camera=self.env.config.camera)
        return self._renderer.render().copy()  # [H, W, 3] uint8 RGB

    def _run_ticks(self) -> None:
        period_wall = 1.0 / (self.params.physics_rate_hz * self.params.rate_factor)
        deadline = time.monotonic()
        while not self._stop.is_set():
            try:
                self._tick()
            except Exception as exc:  # keep the sim alive; report loudly
                self.stats["tick_errors"] = self.stats.get("tick_errors", 0) + 1
                self.get_logger().error(f"sim tick failed: {type(exc).__name__}: {exc}",
                                        throttle_duration_sec=2.0)
            deadline += period_wall
            delay = deadline - time.monotonic()
            if delay > 0:
                self._stop.wait(delay)
            elif delay < -period_wall:  # fell behind: slow down, never burst to catch up
                self.stats["late_ticks"] += 1
                deadline = time.monotonic()

    # ------------------------------------------------------------------ one tick
    def _tick(self) -> None:
        p = self.params
        with self._lock:
            self._sim_ns += self._period_ns
            now = self._sim_ns if p.publish_clock else self.get_clock().now().nanoseconds
            start_episode = self._reset_pending
            self._reset_pending = False
            if start_episode:
                command = None
            else:
                if self._trajectory is not None:
                    self._command = self._trajectory.sample(now)
                    if now >= self._trajectory.end_ns:
                        self._trajectory = None
                command = self._command.copy()  # [2]

        if start_episode:
            if self._episode_open:  # cut short by ~/reset
                self._end_episode(self._last_stamp_ns, completed=False)
            self._episode += 1
            self._episode_seed = p.seed * 100_003 + self._episode
            obs = self.env.reset(seed=self._episode_seed)
            with self._lock:
                self._command = obs.joint_positions[:2].copy()
                self._trajectory = None
                self._episode_start_ns = now
            self._episode_open = True
            self._next_camera_ns = now
        else:
            obs = self.env.step(command, self._period_ns / NS_PER_S)

        stamp = _stamp(now)
        if self._clock_pub is not None:
            self._clock_pub.publish(Clock(clock=stamp))
        js = JointState(name=list(ALL_JOINTS), position=obs.joint_positions.tolist(),
                        velocity=obs.joint_velocities.tolist())
        js.header.stamp = stamp
        self._joint_pub.publish(js)
        self._last_stamp_ns = now
        if self._camera_period_ns and now >= self._next_camera_ns:
            frame = self._render()  # [H, W, 3] uint8 RGB of this tick's state
            self._image_pub.publish(array_to_image_msg(frame, "rgb8", stamp=stamp, frame_id=CAMERA_FRAME))
            self._compressed_pub.publish(array_to_compressed_msg(
                frame, p.compressed_format, stamp=stamp, frame_id=CAMERA_FRAME))
            self._next_camera_ns += self._camera_period_ns
            if self._next_camera_ns <= now:
                self._next_camera_ns = now + self._camera_period_ns
        self.stats["ticks"] += 1

        if self._episode_open and self.env.time >= p.episode_s - 0.5 * self._period_ns / NS_PER_S:
            self._end_episode(now, completed=True)
            more = p.max_episodes == 0 or self.stats["episodes_ended"] < p.max_episodes
            if p.auto_reset and more:
                with self._lock:
                    self._reset_pending = True

    def _end_episode(self, end_ns: int, completed: bool) -> None:
        result = self.env.evaluate()
        status = {
            "episode": self._episode,
            "seed": self._episode_seed,
            "time": end_ns / NS_PER_S,
            "start_time": self._episode_start_ns / NS_PER_S,
            "end_time": end_ns / NS_PER_S,
            "start_ns": int(self._episode_start_ns),
            "end_ns": int(end_ns),
            "completed": bool(completed),
            "success": result["success"],
            "final_distance": float(result["final_distance"]),
            "mode": result["mode"],
            "collided": bool(result.get("collided", False)),
            "target": [float(v) for v in self.env.target],
        }
        self._episode_open = False
        self.stats["episodes_ended"] += 1
        self.results.append(status)
        self._episode_pub.publish(String(data=json.dumps(status)))

    # ------------------------------------------------------------------ callbacks
    def _reject(self, reason: str) -> None:
        with self._lock:
            self.stats["rejected_commands"] += 1
        self.get_logger().warning(f"command rejected: {reason}", throttle_duration_sec=1.0)

    def _on_forward(self, msg: Float64MultiArray) -> None:
        data = np.asarray(list(msg.data), dtype=np.float64)  # [?]
        if data.shape != (len(ARM_JOINTS),):
            return self._reject(f"Float64MultiArray needs {len(ARM_JOINTS)} values {list(ARM_JOINTS)}, got {data.size}")
        if not np.all(np.isfinite(data)):
            return self._reject(f"Float64MultiArray has non-finite values {data.tolist()}")
        with self._lock:
            self._command = data
            self._trajectory = None
            self.stats["accepted_commands"] += 1

    def _on_trajectory(self, msg: JointTrajectory) -> None:
        parsed, reason = parse_joint_trajectory(msg, ARM_JOINTS)
        if parsed is None:
            return self._reject(reason)
        tfs_ns, positions = parsed
        stamp_ns = int(msg.header.stamp.sec) * NS_PER_S + int(msg.header.stamp.nanosec)
        with self._lock:
            now = self.now_ns()
            if 0 < stamp_ns < self._episode_start_ns:
                self.stats["rejected_commands"] += 1
                self.get_logger().warning("command rejected: JointTrajectory stamped before this episode began "
                                          "(a late message of the previous episode)", throttle_duration_sec=1.0)
                return
            start = now if stamp_ns == 0 else stamp_ns
            if start + int(tfs_ns[-1]) < now:
                self.stats["rejected_commands"] += 1
                late = (now - start - int(tfs_ns[-1])) / 1e6
                self.get_logger().warning(f"command rejected: JointTrajectory ended {late:.1f} ms before now")
                return
            current = self._trajectory.sample(now) if self._trajectory is not None else self._command
            self._trajectory = LinearTrajectory.from_message(start, current, tfs_ns, positions)
            self.stats["accepted_commands"] += 1

    def _on_reset(self, request, response):
        with self._lock:
            self._reset_pending = True
            episode = self._episode + 1
        response.success = True
        response.message = f"episode {episode} (seed {self.params.seed * 100_003 + episode}) starts at the next tick"
        return response

    # ------------------------------------------------------------------ for tests / tools
    def arm_command(self) -> np.ndarray:
        with self._lock:
            return self._command.copy()


def _stamp(ns: int):
    from builtin_interfaces.msg import Time

    sec, nanosec = divmod(int(ns), NS_PER_S)
    return Time(sec=sec, nanosec=nanosec)


# --------------------------------------------------------------------------- expert driver
class ExpertDriver(Node):
    """Drives the sim with the scripted multimodal expert (one random mode per episode)."""

    def __init__(self, node_name: str = "genpolicy_expert", *, seed: int = 0, command_rate_hz: float = 20.0,
                 output_mode: str = "trajectory", move_s: float = 1.6, horizon: int = 4, **node_kwargs):
        super().__init__(node_name, **node_kwargs)
        if output_mode not in ("trajectory", "forward"):
            raise ValueError(f"output_mode must be 'trajectory' or 'forward', got {output_mode!r}")
        if not (math.isfinite(command_rate_hz) and command_rate_hz > 0):
            raise ValueError(f"command_rate_hz must be > 0, got {command_rate_hz}")
        if not (isinstance(horizon, int) and horizon >= 1):
            raise ValueError(f"horizon must be an int >= 1, got {horizon!r}")
        self.output_mode = output_mode
        self.horizon = horizon
        self.move_s = float(move_s)
        self._period_ns = int(round(NS_PER_S / command_rate_hz))
        self._rng = np.random.default_rng(seed)
        self._expert: Optional[ReachExpert] = None
        self._start_ns = 0
        self._next_ns = 0
        self._last_ns = -1
        self.modes: list = []  # expert mode of each episode seen, in order
        self.commands_sent = 0
        if output_mode == "trajectory":
            self._pub = self.create_publisher(JointTrajectory, TRAJECTORY_TOPIC, command_qos())
        else:
            self._pub = self.create_publisher(Float64MultiArray, FORWARD_TOPIC, command_qos())
        self.create_subscription(JointState, JOINT_STATES_TOPIC, self._on_joint_state, command_qos(depth=10))

    def _on_joint_state(self, msg: JointState) -> None:
        q, reason = joint_state_to_positions(msg, ALL_JOINTS)
        if q is None:
            self.get_logger().warning(f"joint_states ignored: {reason}")
            return
        stamp_ns = int(msg.header.stamp.sec) * NS_PER_S + int(msg.header.stamp.nanosec)
        target = q[2:4]  # [2]
        new_episode = (self._expert is None or stamp_ns < self._last_ns
                       or not np.allclose(target, self._expert.target_xy, atol=1e-9, rtol=0.0))
        self._last_ns = stamp_ns
        if new_episode:
            self._expert = ReachExpert.random(q[:2], target.copy(), self._rng, move_s=self.move_s)
            self._start_ns = self._next_ns = stamp_ns
            self.modes.append(self._expert.mode)
        if stamp_ns < self._next_ns:
            return
        while self._next_ns <= stamp_ns:
            self._next_ns += self._period_ns
        period = self._period_ns / NS_PER_S
        t = (stamp_ns - self._start_ns) / NS_PER_S
        if self.output_mode == "trajectory":
            # The expert's plan at t + period, ..., t + H·period: late delivery (a busy
            # machine, rate_factor > 1) still leaves points ahead of the sim's clock.
            plan = self._expert.action(t + period * np.arange(1, self.horizon + 1))  # [H, 2]
            out = make_joint_trajectory(ARM_JOINTS, plan, period, stamp_zero=False, stamp=msg.header.stamp)
        else:
            out = make_float64_array(self._expert.action(t + period))  # [2]
        self._pub.publish(out)
        self.commands_sent += 1
