"""Commands the sim node accepts, as ros2_control's controllers do (rclpy messages in, arrays out).

:func:`parse_joint_trajectory` checks a ``trajectory_msgs/JointTrajectory`` the way
joint_trajectory_controller does (joints by name, exactly the commanded joints, no
duplicates or unknown names, every point ``len(positions) == len(joint_names)``, strictly
increasing ``time_from_start``) plus finiteness, which the real controller does not check;
:class:`LinearTrajectory` executes one by linear interpolation in node time.
"""
from __future__ import annotations

from typing import Optional, Sequence, Tuple

import numpy as np

NS_PER_S = 1_000_000_000
DEFAULT_JOINTS = ("shoulder", "elbow")  # the reach task's, for callers that name none


def parse_joint_trajectory(msg, joint_names: Sequence[str] = DEFAULT_JOINTS
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
