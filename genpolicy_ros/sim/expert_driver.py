"""``ExpertDriver`` (default name ``genpolicy_expert``): a task's scripted expert over ROS 2.

It closes the loop around the sim node the way a policy would: it reads ``joint_states``
(the task's joints, by name) and the task's non-joint inputs (``<input>`` PointStamped /
PoseStamped topics), pairs them **by header stamp** (an observation is complete once the
joint state and every input of that stamp arrived, in any order), starts the task's
expert (``TaskSpec.make_expert``) at the first observation of each episode, and publishes
at ``command_rate_hz`` of *header-stamp* time either a JointTrajectory stamped with the
observation it reacted to (so a recording aligns action and state exactly), or a
Float64MultiArray. Its command for the observation at ``t`` is the expert's target at
``t + 1/command_rate_hz`` (as :func:`genpolicy_ros.sim.offline.collect_expert_episodes`);
a trajectory carries the expert's plan for ``horizon`` periods ahead (first point = that
command), so that late delivery still finds points in the future.

A new episode begins at the first observation after the sim's ``~/episode`` message (the
end of the previous one), when the stamps go backwards, or when the expert says the
observation is not of its episode (``expert.follows(obs)`` False; the reach expert: a new
target).
"""
from __future__ import annotations

import json
import math
from typing import Dict, Optional

import numpy as np
from rclpy.node import Node
from sensor_msgs.msg import JointState
from std_msgs.msg import Float64MultiArray, String
from trajectory_msgs.msg import JointTrajectory

from ..ros import topics
from ..ros.conversions import joint_state_to_positions, make_float64_array, make_joint_trajectory
from ..ros.input_messages import MESSAGE_TYPES, input_message_values
from ..ros.qos import command_qos
from ..tasks import DEFAULT_TASK, get_task
from .protocol import StepResult

NS_PER_S = 1_000_000_000
_MAX_PENDING = 1000  # incomplete observations kept (by stamp) before the oldest are dropped


class ExpertDriver(Node):
    """Drives the sim with the task's scripted expert (see the module docstring)."""

    def __init__(self, node_name: str = "genpolicy_expert", *, task: str = DEFAULT_TASK, seed: int = 0,
                 command_rate_hz: Optional[float] = None, output_mode: str = "trajectory", horizon: int = 4,
                 sim_node: str = topics.SIM_NODE, **kwargs):
        expert_kwargs = {k: kwargs.pop(k) for k in ("move_s",) if k in kwargs}  # the reach expert's duration
        super().__init__(node_name, **kwargs)
        self.task = get_task(task)
        command_rate_hz = 1.0 / self.task.control_dt if command_rate_hz is None else command_rate_hz
        if output_mode not in ("trajectory", "forward"):
            raise ValueError(f"output_mode must be 'trajectory' or 'forward', got {output_mode!r}")
        if not (math.isfinite(command_rate_hz) and command_rate_hz > 0):
            raise ValueError(f"command_rate_hz must be > 0, got {command_rate_hz}")
        if not (isinstance(horizon, int) and horizon >= 1):
            raise ValueError(f"horizon must be an int >= 1, got {horizon!r}")
        warm_up = getattr(self.task.make_expert, "warm_up", None)
        if warm_up is not None:  # e.g. compile the robot model for the IK now, not at the first observation
            warm_up()
        self.output_mode = output_mode
        self.horizon = horizon
        self._expert_kwargs = expert_kwargs
        self._period_ns = int(round(NS_PER_S / command_rate_hz))
        self._rng = np.random.default_rng(seed)
        self._expert = None
        self._start_ns = 0
        self._next_ns = 0
        self._last_ns = -1
        self._ended_at: Optional[int] = None  # end_ns of the last ~/episode not yet followed by a new expert
        self._pending: Dict[int, dict] = {}  # stamp ns -> parts of that observation received so far
        self._parts = {"joints"} | {i.name for i in self.task.state_inputs}
        self.modes: list = []  # expert mode of each episode seen, in order
        self.commands_sent = 0
        if output_mode == "trajectory":
            self._pub = self.create_publisher(JointTrajectory, topics.TRAJECTORY, command_qos())
        else:
            self._pub = self.create_publisher(Float64MultiArray, topics.FORWARD, command_qos())
        self.create_subscription(JointState, topics.JOINT_STATES, self._on_joint_state, command_qos(depth=10))
        for spec in self.task.state_inputs:
            self.create_subscription(MESSAGE_TYPES[spec.type], topics.input_topic(spec.name),
                                     self._input_callback(spec.name, spec.type, len(spec.names)),
                                     command_qos(depth=10))
        self.create_subscription(String, topics.private(sim_node, topics.EPISODE), self._on_episode,
                                 command_qos(depth=100))

    # ------------------------------------------------------------------ inputs
    def _on_joint_state(self, msg: JointState) -> None:
        q, reason = joint_state_to_positions(msg, self.task.joint_names)
        if q is None:
            self.get_logger().warning(f"joint_states ignored: {reason}")
            return
        self._add(int(msg.header.stamp.sec) * NS_PER_S + int(msg.header.stamp.nanosec), "joints", q, msg.header.stamp)

    def _input_callback(self, name: str, kind: str, count: int):
        def on_input(msg) -> None:
            values, reason = input_message_values(msg, kind, count)
            if values is None:
                self.get_logger().warning(f"{name} ignored: {reason}")
                return
            self._add(int(msg.header.stamp.sec) * NS_PER_S + int(msg.header.stamp.nanosec), name, values,
                      msg.header.stamp)

        return on_input

    def _on_episode(self, msg: String) -> None:
        try:
            end_ns = int(json.loads(msg.data)["end_ns"])
        except (ValueError, KeyError, TypeError):
            self.get_logger().warning("~/episode message without end_ns ignored")
            return
        if self._expert is None or end_ns >= self._start_ns:  # else: late, the next expert already started
            self._ended_at = end_ns

    def _add(self, stamp_ns: int, part: str, values: np.ndarray, stamp) -> None:
        entry = self._pending.setdefault(stamp_ns, {"stamp": stamp})
        entry[part] = values
        if self._parts <= set(entry):
            del self._pending[stamp_ns]
            for older in [s for s in self._pending if s < stamp_ns]:  # never completed: superseded
                del self._pending[older]
            self._on_observation(stamp_ns, entry)
        elif len(self._pending) > _MAX_PENDING:
            del self._pending[min(self._pending)]

    # ------------------------------------------------------------------ the expert
    def _on_observation(self, stamp_ns: int, parts: dict) -> None:
        joints = parts["joints"]  # [len(task.joint_names)]
        obs = StepResult(time_s=stamp_ns / NS_PER_S, joint_positions=joints, joint_velocities=np.zeros_like(joints),
                         inputs={i.name: parts[i.name] for i in self.task.state_inputs})
        follows = getattr(self._expert, "follows", None)
        new_episode = (self._expert is None or stamp_ns < self._last_ns
                       or (self._ended_at is not None and stamp_ns > self._ended_at)
                       or (follows is not None and not follows(obs)))
        self._last_ns = stamp_ns
        if new_episode:
            self._expert = self.task.make_expert(obs, self._rng, **self._expert_kwargs)
            self._start_ns = self._next_ns = stamp_ns
            self._ended_at = None
            self.modes.append(getattr(self._expert, "mode", ""))
        if stamp_ns < self._next_ns:
            return
        while self._next_ns <= stamp_ns:
            self._next_ns += self._period_ns
        period = self._period_ns / NS_PER_S
        t = (stamp_ns - self._start_ns) / NS_PER_S
        if self.output_mode == "trajectory":
            # The expert's plan at t + period, ..., t + H·period: late delivery (a busy
            # machine, rate_factor > 1) still leaves points ahead of the sim's clock.
            plan = self._expert.action(t + period * np.arange(1, self.horizon + 1))  # [H, D_a]
            out = make_joint_trajectory(self.task.action_names, plan, period, stamp_zero=False, stamp=parts["stamp"])
        else:
            out = make_float64_array(self._expert.action(t + period))  # [D_a]
        self._pub.publish(out)
        self.commands_sent += 1
