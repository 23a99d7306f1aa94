"""``SimNode``: a registered task's MuJoCo simulation as a ROS 2 robot (default name ``genpolicy_sim``).

The node steps the task's environment (``task`` parameter, :mod:`genpolicy_ros.tasks`;
default ``reach``) in a fixed loop on a dedicated thread (absolute deadlines on the steady
clock; when it falls behind it slows down instead of bursting to catch up) and behaves
towards the outside like a robot with ros2_control::

    publishes   joint_states                       sensor_msgs/JointState   every tick (the env's joints)
                <input>  (e.g. target)             geometry_msgs/PointStamped | PoseStamped, every tick,
                                                   one per non-joint input, same stamp as joint_states
                camera/image_raw (+ /compressed)   sensor_msgs/Image rgb8 (+ CompressedImage png|jpeg) at
                                                   camera_rate_hz; several cameras: camera/<name>/image_raw
                /clock                             rosgraph_msgs/Clock      if publish_clock
                ~/episode                          std_msgs/String (JSON)   when an episode ends
    subscribes  joint_trajectory_controller/joint_trajectory  trajectory_msgs/JointTrajectory
                forward_position_controller/commands           std_msgs/Float64MultiArray
    service     ~/reset                            std_srvs/Trigger: new episode, next seed

With ``legacy_target_joints`` (default false) the inputs' entries are *also* published as
JointState entries after the joints (the reach task: ``shoulder, elbow, target_x,
target_y``), the format policies read before the inputs had topics of their own (models
trained before, whose config.json declares no ``state_inputs``).

Time base ("node time"): with ``publish_clock`` the node owns a simulated clock that
starts at ``CLOCK_START_S`` and advances one loop period per tick (also while
``rate_factor`` != 1); every header stamp, ``/clock`` and trajectory start time is on it.
Without it, stamps are the node's ROS time (``get_clock().now()``).

One tick (period ``1 / physics_rate_hz`` of simulated time)::

    now += period ─► new episode pending? ── yes ─► env.reset(seed_i); command := hold the start pose
                                  └─ no ─► command := trajectory(now) or held command
                                           env.step(command, period, with_image=camera due)
                  ─► publish /clock, inputs(stamp=now), joint_states(stamp=now), camera frames if due
                  ─► env.time >= episode_s ─► publish ~/episode JSON; auto_reset → pending

Commands follow ros2_control: the **latest** valid message wins and is held forever
(position controller, no timeout). A JointTrajectory is checked like
joint_trajectory_controller does (:func:`~genpolicy_ros.sim.commands.parse_joint_trajectory`:
exactly the task's action joints, by name) plus finiteness; it starts at ``header.stamp``
(0 = on receipt) and is executed by *linear* interpolation from the command in force at
receipt through its points (velocities are ignored), then holds the last point.
Trajectories that end before now are rejected (as the controller does), and so are
trajectories stamped before the current episode began (late messages meant for the
previous episode: a reset is a new world, not a robot motion). A Float64MultiArray must
hold exactly one finite value per action joint, in the task's order. Rejected messages
are logged with the reason and counted in ``stats["rejected_commands"]``; the robot keeps
its previous command.

The ``~/episode`` JSON: ``{"episode", "seed", "task", "time", "start_time", "end_time",
"start_ns", "end_ns", "completed"}``, everything ``env.evaluate()`` reports (``success``;
the reach task adds ``final_distance``, ``mode`` and, with the obstacle, ``collided``,
``min_clearance``; a task with stages its ``stages`` dict), and each non-joint input's
final value under its name (reach: ``"target": [x, y]``). ``start_ns``/``end_ns`` are the
header stamps (node time, integer ns) of the episode's first and last joint_states, which
:func:`genpolicy_ros.data.bags.bag_to_episodes` uses to cut a recording into episodes.
``completed`` is false for an episode cut short by ``~/reset``. ``wall_s`` and
``real_time_factor`` (simulated seconds of the episode per wall second) say how fast it ran.

Lock-step simulated time: with ``publish_clock`` the clock advances exactly one period per
tick, however long the tick took. When the simulator cannot keep up (rendering several
cameras in software), it runs slower than ``rate_factor`` and every stamp, ``/clock``
included, stays consistent with the physics, as Gazebo does below real time; nodes with
``use_sim_time:=true`` see a slower world, not a jumpy one. Without ``publish_clock`` the
stamps are wall time and a slow tick would stretch 1/physics_rate_hz of physics over more
wall time than the stamps claim: use the clock whenever the real-time factor is below 1.

The scripted expert that drives it for ``genpolicy collect`` is
:class:`~genpolicy_ros.sim.expert_driver.ExpertDriver`.
"""
from __future__ import annotations

import dataclasses
import json
import math
import threading
import time
from typing import Optional

import numpy as np
from rclpy.node import Node
from rosgraph_msgs.msg import Clock
from sensor_msgs.msg import CompressedImage, Image, JointState
from std_msgs.msg import Float64MultiArray, String
from std_srvs.srv import Trigger
from trajectory_msgs.msg import JointTrajectory

from ..ros import topics
from ..ros.conversions import array_to_compressed_msg, array_to_image_msg
from ..ros.input_messages import MESSAGE_TYPES, input_message
from ..ros.qos import command_qos
from .commands import LinearTrajectory, parse_joint_trajectory
from .expert_driver import ExpertDriver  # noqa: F401  (re-exported: its historical home)
from .node_params import DESCRIPTIONS, SimParams, descriptor
from .reach_env import ensure_headless_gl

NS_PER_S = 1_000_000_000
CLOCK_START_S = 1.0  # simulated clock origin: stamp 0 means "now" to controllers


def _json_value(value):
    """``value`` with non-finite floats as None and arrays as lists (the episode JSON)."""
    if isinstance(value, dict):
        return {str(k): _json_value(v) for k, v in value.items()}
    if isinstance(value, np.ndarray):
        value = value.tolist()
    if isinstance(value, (list, tuple)):
        return [_json_value(v) for v in value]
    if isinstance(value, (bool, np.bool_)):
        return bool(value)
    if isinstance(value, (int, np.integer)):
        return int(value)
    if isinstance(value, (float, np.floating)):
        return float(value) if math.isfinite(value) else None
    return value


class SimNode(Node):
    """A task's simulation as a ROS 2 robot (see the module docstring for the interface)."""

    def __init__(self, node_name: str = topics.SIM_NODE, *, start: bool = True, **node_kwargs):
        super().__init__(node_name, **node_kwargs)
        self._stop = threading.Event()
        self._thread: Optional[threading.Thread] = None
        self._lock = threading.Lock()  # guards the command state shared with the loop thread
        defaults = {f.name: f.default for f in dataclasses.fields(SimParams)}  # as declared (0 = the task's)
        values = {}
        for name in DESCRIPTIONS:
            self.declare_parameter(name, defaults[name], descriptor(name))
            values[name] = self.get_parameter(name).value
        values["physics_rate_hz"] = float(values["physics_rate_hz"])
        values["episode_s"] = float(values["episode_s"])
        self.params = SimParams(**values)
        self.task = self.params.task_spec()
        p, task = self.params, self.task

        self._period_ns = int(round(NS_PER_S / p.physics_rate_hz))
        self._camera_period_ns = int(round(NS_PER_S / p.camera_rate_hz)) if p.camera_rate_hz > 0 else 0
        self._cameras = task.camera_names if self._camera_period_ns else ()
        if self._cameras:
            ensure_headless_gl()  # must precede the first `import mujoco`
        # The env (and its OpenGL context, current in one thread only) lives on the loop thread.
        self.env = None
        self._env_ready = threading.Event()
        self._env_error: Optional[BaseException] = None
        self._joint_state_names = list(task.joint_names)
        if p.legacy_target_joints:
            self._joint_state_names += [n for i in task.state_inputs for n in i.names]

        sensor = command_qos(depth=10)  # reliable publishers match best-effort and reliable readers
        self._joint_pub = self.create_publisher(JointState, topics.JOINT_STATES, sensor)
        self._input_pubs = {i.name: self.create_publisher(MESSAGE_TYPES[i.type], topics.input_topic(i.name), sensor)
                            for i in task.state_inputs}
        self._camera_pubs = {}
        for camera, (raw, compressed) in topics.camera_topics(self._cameras).items():
            self._camera_pubs[camera] = (self.create_publisher(Image, raw, sensor),
                                         self.create_publisher(CompressedImage, compressed, sensor))
        self._clock_pub = self.create_publisher(Clock, topics.CLOCK, sensor) if p.publish_clock else None
        self._episode_pub = self.create_publisher(String, topics.EPISODE, command_qos(depth=100))
        self.create_subscription(JointTrajectory, topics.TRAJECTORY, self._on_trajectory, command_qos())
        self.create_subscription(Float64MultiArray, topics.FORWARD, self._on_forward, command_qos())
        self.create_service(Trigger, topics.RESET_SERVICE, self._on_reset)

        # State shared between the loop thread and the callbacks (guarded by _lock).
        self._command = np.zeros(len(task.action_names))  # [D_a] held position target
        self._trajectory: Optional[LinearTrajectory] = None
        self._reset_pending = True  # the first tick starts episode 0
        self._sim_ns = int(round(CLOCK_START_S * NS_PER_S)) - self._period_ns
        self._last_stamp_ns = 0
        self._episode = -1
        self._episode_seed = 0
        self._episode_start_ns = 0
        self._episode_start_wall = 0.0
        self._episode_open = False
        self._next_camera_ns = 0
        self._last_obs = None
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
            self.env = self.task.make_env(render=bool(self._cameras), **self.params.env_overrides())
        except BaseException as exc:  # reported by start()
            self._env_error = exc
            self._env_ready.set()
            return
        self._env_ready.set()
        try:
            self._run_ticks()
        finally:
            self.env.close()

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
                command = self._command.copy()  # [D_a]

        camera_due = bool(self._cameras) and (start_episode or now >= self._next_camera_ns)
        if start_episode:
            if self._episode_open:  # cut short by ~/reset
                self._end_episode(self._last_stamp_ns, completed=False)
            self._episode += 1
            self._episode_seed = self.task.episode_seed(p.seed, self._episode)
            obs = self.env.reset(seed=self._episode_seed)
            with self._lock:
                self._command = self.task.hold_command(obs)
                self._trajectory = None
                self._episode_start_ns = now
            self._episode_start_wall = time.monotonic()
            self._episode_open = True
            self._next_camera_ns = now
        else:
            obs = self.env.step(command, self._period_ns / NS_PER_S, with_image=camera_due)
        self._last_obs = obs
        self._publish(obs, now, camera_due)
        self.stats["ticks"] += 1

        if self._episode_open and self.env.time >= p.episode_length_s - 0.5 * self._period_ns / NS_PER_S:
            self._end_episode(now, completed=True)
            more = p.max_episodes == 0 or self.stats["episodes_ended"] < p.max_episodes
            if p.auto_reset and more:
                with self._lock:
                    self._reset_pending = True

    def _publish(self, obs, now: int, camera_due: bool) -> None:
        stamp = _stamp(now)
        if self._clock_pub is not None:
            self._clock_pub.publish(Clock(clock=stamp))
        for spec in self.task.state_inputs:  # before joint_states: a reader keyed on it finds them there
            self._input_pubs[spec.name].publish(input_message(spec.type, obs.inputs[spec.name], stamp=stamp))
        positions = list(np.asarray(obs.joint_positions, dtype=float))
        velocities = list(np.asarray(obs.joint_velocities, dtype=float))
        if self.params.legacy_target_joints:
            for spec in self.task.state_inputs:
                values = np.asarray(obs.inputs[spec.name], dtype=float).reshape(-1)  # [len(names)]
                positions += values.tolist()
                velocities += [0.0] * values.size
        js = JointState(name=self._joint_state_names, position=positions, velocity=velocities)
        js.header.stamp = stamp
        self._joint_pub.publish(js)
        self._last_stamp_ns = now
        if camera_due:
            for camera, (raw_pub, compressed_pub) in self._camera_pubs.items():
                frame = obs.images[camera]  # [H, W, 3] uint8 RGB of this tick's state
                frame_id = f"{camera}_camera"
                raw_pub.publish(array_to_image_msg(frame, "rgb8", stamp=stamp, frame_id=frame_id))
                compressed_pub.publish(array_to_compressed_msg(frame, self.params.compressed_format, stamp=stamp,
                                                               frame_id=frame_id))
            self._next_camera_ns += self._camera_period_ns
            if self._next_camera_ns <= now:
                self._next_camera_ns = now + self._camera_period_ns

    def _end_episode(self, end_ns: int, completed: bool) -> None:
        status = {
            "episode": self._episode,
            "seed": self._episode_seed,
            "task": self.task.name,
            "time": end_ns / NS_PER_S,
            "start_time": self._episode_start_ns / NS_PER_S,
            "end_time": end_ns / NS_PER_S,
            "start_ns": int(self._episode_start_ns),
            "end_ns": int(end_ns),
            "completed": bool(completed),
        }
        wall_s = time.monotonic() - self._episode_start_wall
        # simulated seconds per wall second over the episode (< 1: the sim could not keep up,
        # e.g. rendering; with publish_clock every stamp is simulated time, so nothing else changes)
        status["wall_s"] = round(wall_s, 3)
        status["real_time_factor"] = round(self.env.time / wall_s, 3) if wall_s > 0 else None
        status.update(_json_value(self.env.evaluate()))
        if self._last_obs is not None:
            status.update({name: _json_value(values) for name, values in self._last_obs.inputs.items()})
        self._episode_open = False
        self.stats["episodes_ended"] += 1
        self.results.append(status)
        self._episode_pub.publish(String(data=json.dumps(status, allow_nan=False)))

    # ------------------------------------------------------------------ callbacks
    def _reject(self, reason: str) -> None:
        with self._lock:
            self.stats["rejected_commands"] += 1
        self.get_logger().warning(f"command rejected: {reason}", throttle_duration_sec=1.0)

    def _on_forward(self, msg: Float64MultiArray) -> None:
        names = self.task.action_names
        data = np.asarray(list(msg.data), dtype=np.float64)  # [?]
        if data.shape != (len(names),):
            return self._reject(f"Float64MultiArray needs {len(names)} values {list(names)}, got {data.size}")
        if not np.all(np.isfinite(data)):
            return self._reject(f"Float64MultiArray has non-finite values {data.tolist()}")
        with self._lock:
            self._command = data
            self._trajectory = None
            self.stats["accepted_commands"] += 1

    def _on_trajectory(self, msg: JointTrajectory) -> None:
        parsed, reason = parse_joint_trajectory(msg, self.task.action_names)
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
        response.message = (f"episode {episode} (seed {self.task.episode_seed(self.params.seed, episode)}) "
                            "starts at the next tick")
        return response

    # ------------------------------------------------------------------ for tests / tools
    def arm_command(self) -> np.ndarray:
        with self._lock:
            return self._command.copy()


def _stamp(ns: int):
    from builtin_interfaces.msg import Time

    sec, nanosec = divmod(int(ns), NS_PER_S)
    return Time(sec=sec, nanosec=nanosec)
