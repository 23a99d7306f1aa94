"""QoS profiles of the policy node (architecture.md "ROS 2 interface", references.md).

- Sensor subscriptions (joint states, cameras): best effort, keep last 5, volatile — the
  same as ROS's SensorDataQoS. A best-effort subscription also connects to reliable
  publishers, so it works with any camera driver or joint_state_broadcaster.
- Command publishers (JointTrajectory / Float64MultiArray), /diagnostics and the debug
  chunk: reliable, keep last 10, volatile. ros2_control's controllers subscribe
  reliably, and a best-effort publisher never matches a reliable subscription.
"""
from __future__ import annotations

from rclpy.qos import DurabilityPolicy, HistoryPolicy, QoSProfile, ReliabilityPolicy

SENSOR_DEPTH = 5
COMMAND_DEPTH = 10


def make_qos(reliable: bool, depth: int) -> QoSProfile:
    """Keep-last ``depth`` volatile profile, reliable or best effort."""
    if not isinstance(depth, int) or isinstance(depth, bool) or depth < 1:
        raise ValueError(f"QoS depth must be an int >= 1, got {depth!r}")
    return QoSProfile(
        history=HistoryPolicy.KEEP_LAST,
        depth=depth,
        reliability=ReliabilityPolicy.RELIABLE if reliable else ReliabilityPolicy.BEST_EFFORT,
        durability=DurabilityPolicy.VOLATILE,
    )


def sensor_qos(depth: int = SENSOR_DEPTH) -> QoSProfile:
    """Subscriptions to sensors: best effort, keep last ``depth`` (default 5)."""
    return make_qos(reliable=False, depth=depth)


def command_qos(depth: int = COMMAND_DEPTH) -> QoSProfile:
    """Command / diagnostics publishers: reliable, keep last ``depth`` (default 10)."""
    return make_qos(reliable=True, depth=depth)
