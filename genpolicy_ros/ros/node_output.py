"""What the policy node says: the command (to a ros2_control controller) and the debug chunk.

Both publishers are lifecycle publishers (ros2/demos' lifecycle talker): they publish only
between activate and deactivate. Output messages, in ``joint_names`` order (the model's
when the parameter is unset):

- ``JointTrajectory`` on ``joint_trajectory_controller/joint_trajectory``:
  ``header.stamp = 0`` ("start on receipt", ros2_control convention) and **one point** at
  ``time_from_start = 1 / control_rate_hz`` with the command as position and the safety
  filter's velocity (``(command − previous command) · control_rate_hz``) for cubic
  interpolation in joint_trajectory_controller;
- ``Float64MultiArray`` on ``forward_position_controller/commands``: the positions.

Nothing is published before the policy's first action after an activation (reliability.md
row 15); from then on every tick publishes, holds included (a hold is a braking stop, see
runtime/safety_filter.py). Non-finite values are never published (checked again right
before publishing, on top of the safety filter's guarantee). On deactivate / shutdown
:meth:`CommandOutput.stop` keeps publishing the braking stop until the velocity is zero, then
one final hold.
"""
from __future__ import annotations

import time
from typing import Optional, Sequence

import numpy as np
from std_msgs.msg import Float64MultiArray
from trajectory_msgs.msg import JointTrajectory

from . import conversions as conv
from . import topics
from .qos import command_qos

TRAJECTORY_TOPIC = topics.TRAJECTORY
FORWARD_TOPIC = topics.FORWARD
ACTION_CHUNK_TOPIC = topics.ACTION_CHUNK
_WARN_THROTTLE_S = 2.0
_MAX_STOP_S = 2.0  # a braking stop takes v/a (0.1 s at the defaults); never block longer


class CommandOutput:
    """The command and debug-chunk publishers; see the module docstring.

    Args:
        node: the lifecycle node.
        out_names: joint names of the output, in output order.
        out_index: ``[D_a]`` model joint index of each output position.
        trajectory_mode: JointTrajectory (True) or Float64MultiArray (False).
    """

    def __init__(self, node, out_names: Sequence[str], out_index: np.ndarray, trajectory_mode: bool) -> None:
        self._node = node
        self.out_names = tuple(out_names)
        self._out_index = np.asarray(out_index, dtype=int)
        self.trajectory_mode = trajectory_mode
        msg_type, topic = (JointTrajectory, TRAJECTORY_TOPIC) if trajectory_mode else (Float64MultiArray,
                                                                                      FORWARD_TOPIC)
        self._pub = node.create_lifecycle_publisher(msg_type, topic, command_qos())
        self._chunk_pub = node.create_lifecycle_publisher(JointTrajectory, ACTION_CHUNK_TOPIC, command_qos())
        self.started = False  # the policy's first action since activation went out
        self.last_published: Optional[np.ndarray] = None  # [D_a] output order
        self.published = 0
        self.publish_errors = 0
        self.nonfinite_blocked = 0
        self.last_chunk_meta: dict = {}

    @property
    def is_activated(self) -> bool:
        return self._pub.is_activated

    def destroy(self) -> None:
        for pub in (self._pub, self._chunk_pub):
            self._node.destroy_lifecycle_publisher(pub)

    # ------------------------------------------------------------------ commands
    def publish_result(self, result, period_s: float) -> None:
        """One tick's :class:`~genpolicy_ros.runtime.engine.TickResult` -> a command message."""
        if result.command is None:
            return
        if not self.started:
            if result.status.is_hold:
                return  # nothing before the policy's first action (reliability row 15)
            self.started = True
        out = np.asarray(result.command, dtype=np.float64)[self._out_index]  # [D_a] output order
        velocity = np.zeros_like(out) if result.velocity is None else \
            np.asarray(result.velocity, dtype=np.float64)[self._out_index]  # [D_a]
        self.publish(out, velocity, period_s)

    def publish(self, positions: np.ndarray, velocity: np.ndarray, period_s: float, final: bool = False) -> None:
        if not (np.isfinite(positions).all() and np.isfinite(velocity).all()):
            self.nonfinite_blocked += 1  # never reached with a working safety filter
            self._node.get_logger().error("non-finite command blocked before publishing",
                                          throttle_duration_sec=_WARN_THROTTLE_S)
            return
        try:
            if self.trajectory_mode:
                msg = conv.make_joint_trajectory(self.out_names, positions[None, :], period_s,
                                                 velocities=velocity[None, :], stamp_zero=True)
            else:
                msg = conv.make_float64_array(positions)
            self._pub.publish(msg)
        except Exception as exc:  # noqa: BLE001 - e.g. context shut down mid-publish
            self.publish_errors += 1
            self._node.get_logger().error(f"publishing the command failed: {exc}",
                                          throttle_duration_sec=_WARN_THROTTLE_S)
            return
        self.published += 1
        self.last_published = positions
        if final:
            self._node.get_logger().info(f"final hold published: {positions.tolist()}")

    def stop(self, engine, clock, period_s: float) -> None:
        """Deactivate / shutdown: publish the braking stop until the velocity is zero, then
        one final hold (zero velocity). Publishes nothing if no action went out yet."""
        if not self.started or engine is None or not self.is_activated:
            return
        deadline = time.monotonic() + _MAX_STOP_S
        while time.monotonic() < deadline:
            result = engine.stop_tick(clock())
            if result.command is None:
                break
            self.publish_result(result, period_s)
            if result.velocity is None or not np.any(result.velocity):
                break
            time.sleep(period_s)
        if self.last_published is not None:
            self.publish(self.last_published, np.zeros_like(self.last_published), period_s, final=True)

    # ------------------------------------------------------------------ debug chunk
    def publish_chunk(self, chunk) -> None:
        """A merged :class:`~genpolicy_ros.runtime.chunk.ActionChunk` on ``~/action_chunk``
        (stamped with its ``t0``), and its metadata kept for /diagnostics."""
        self.last_chunk_meta = dict(chunk.meta or {})
        pub = self._chunk_pub
        if not pub.is_activated or pub.get_subscription_count() == 0:
            return
        try:
            actions = np.asarray(chunk.actions, dtype=np.float64)[:, self._out_index]  # [T_p, D_a]
            msg = conv.make_joint_trajectory(self.out_names, actions, chunk.dt, stamp_zero=False,
                                             stamp=conv.seconds_to_stamp(max(chunk.t0, 0.0)),
                                             start_offset_steps=0.0)
            pub.publish(msg)
        except Exception as exc:  # noqa: BLE001 - debug output must never disturb the loop
            self._node.get_logger().warning(f"~/action_chunk not published: {exc}",
                                            throttle_duration_sec=_WARN_THROTTLE_S)
