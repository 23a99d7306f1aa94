"""Non-joint state inputs as messages: values <-> ``geometry_msgs/PointStamped`` / ``PoseStamped``.

An input of type ``point`` maps its names in order to ``point.x, .y, .z``; one of type
``pose`` to ``pose.position.x, .y, .z, pose.orientation.w, .x, .y, .z``
(``core.config.STATE_INPUT_TYPES``). Fields no name maps to are written as 0 (orientation:
the identity, w = 1).
"""
from __future__ import annotations

from typing import Optional, Sequence, Tuple

import numpy as np
from geometry_msgs.msg import PointStamped, PoseStamped

from ..core.config import STATE_INPUT_TYPES

MESSAGE_TYPES = {"point": PointStamped, "pose": PoseStamped}


def input_message(kind: str, values: Sequence[float], stamp=None, frame_id: str = "world"):
    """``values`` [k] (k <= the type's fields) -> a PointStamped / PoseStamped."""
    fields = STATE_INPUT_TYPES[kind]
    data = [float(v) for v in np.asarray(values, dtype=np.float64).reshape(-1)]
    if not 1 <= len(data) <= len(fields):
        raise ValueError(f"a {kind} input carries 1..{len(fields)} values, got {len(data)}")
    full = dict.fromkeys(fields, 0.0)
    if kind == "pose":
        full["qw"] = 1.0
    full.update(zip(fields, data))
    msg = MESSAGE_TYPES[kind]()
    if stamp is not None:
        msg.header.stamp = stamp
    msg.header.frame_id = frame_id
    if kind == "point":
        msg.point.x, msg.point.y, msg.point.z = full["x"], full["y"], full["z"]
    else:
        p, o = msg.pose.position, msg.pose.orientation
        p.x, p.y, p.z = full["x"], full["y"], full["z"]
        o.w, o.x, o.y, o.z = full["qw"], full["qx"], full["qy"], full["qz"]
    return msg


def input_message_values(msg, kind: str, count: int) -> Tuple[Optional[np.ndarray], str]:
    """The first ``count`` fields of a PointStamped / PoseStamped -> ``([count] float64, "")``,
    or ``(None, reason)`` for a non-finite value. Never raises on a malformed message."""
    try:
        if kind == "point":
            source = (msg.point.x, msg.point.y, msg.point.z)
        else:
            p, o = msg.pose.position, msg.pose.orientation
            source = (p.x, p.y, p.z, o.w, o.x, o.y, o.z)
        values = np.array([float(v) for v in source[:count]], dtype=np.float64)  # [count]
    except Exception as exc:  # noqa: BLE001 - a malformed message is refused, never raised
        return None, f"unreadable {kind} message: {type(exc).__name__}: {exc}"
    if not np.all(np.isfinite(values)):
        return None, f"non-finite {kind} values {values.tolist()}"
    return values, ""
