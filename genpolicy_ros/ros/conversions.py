"""Message <-> array conversion at the ROS edge (plain NumPy / OpenCV, no cv_bridge).

Every *reading* function validates the message and never raises on bad input: it returns
``(value, "")`` on success and ``(None, reason)`` when the message must not be used
(reliability.md rows 3 and 6). Every *building* function refuses non-finite numbers with
``ValueError``: the node must never publish NaN/Inf (ros2_control's
joint_trajectory_controller does not check finiteness, references.md).

Conventions (docs/internals.md): images leave this module as ``uint8 [H, W, 3]`` RGB;
joint vectors are ``float64 [D]`` in the *model's* joint order, mapped by name.
"""
from __future__ import annotations

import math
import numbers
from typing import Optional, Sequence, Tuple

import numpy as np
from builtin_interfaces.msg import Duration, Time
from sensor_msgs.msg import CompressedImage, Image, JointState
from std_msgs.msg import Float64MultiArray
from trajectory_msgs.msg import JointTrajectory, JointTrajectoryPoint

_NS_PER_S = 1_000_000_000

# encoding -> (channels, index of R, G, B inside a pixel); mono has a single channel.
_ENCODINGS = {
    "rgb8": (3, (0, 1, 2)),
    "bgr8": (3, (2, 1, 0)),
    "rgba8": (4, (0, 1, 2)),
    "bgra8": (4, (2, 1, 0)),
    "mono8": (1, (0, 0, 0)),
}
SUPPORTED_ENCODINGS = tuple(_ENCODINGS)


# --------------------------------------------------------------------------- time


def stamp_to_seconds(stamp: Time) -> float:
    """``builtin_interfaces/Time`` (or Duration) -> seconds as a Python float."""
    return float(stamp.sec) + float(stamp.nanosec) * 1e-9


def _split_seconds(seconds: float) -> Tuple[int, int]:
    """Seconds -> (sec, nanosec) with 0 <= nanosec < 1e9, rounded to the nearest ns."""
    if not math.isfinite(seconds):
        raise ValueError(f"time must be finite, got {seconds!r}")
    total_ns = int(round(seconds * _NS_PER_S))
    sec, nanosec = divmod(total_ns, _NS_PER_S)  # floor division keeps nanosec >= 0
    return sec, nanosec


def seconds_to_stamp(seconds: float) -> Time:
    """Seconds (>= 0, finite) -> ``builtin_interfaces/Time``. Raises ValueError otherwise."""
    if not math.isfinite(seconds) or seconds < 0.0:
        raise ValueError(f"stamp must be finite and >= 0 s, got {seconds!r}")
    sec, nanosec = _split_seconds(seconds)
    return Time(sec=sec, nanosec=nanosec)


def seconds_to_duration(seconds: float) -> Duration:
    """Seconds (finite) -> ``builtin_interfaces/Duration``. Raises ValueError otherwise."""
    sec, nanosec = _split_seconds(seconds)
    return Duration(sec=sec, nanosec=nanosec)


# --------------------------------------------------------------------------- joints


def _check_joint_names(joint_names: Sequence[str]) -> None:
    if len(joint_names) == 0:
        raise ValueError("joint_names must not be empty")
    if any(not isinstance(n, str) or not n for n in joint_names):
        raise ValueError(f"joint_names must be non-empty strings, got {list(joint_names)!r}")
    if len(set(joint_names)) != len(joint_names):
        raise ValueError(f"joint_names contains duplicates: {list(joint_names)!r}")


def joint_state_to_positions(
    msg: JointState, joint_names: Sequence[str]
) -> Tuple[Optional[np.ndarray], str]:
    """Map a JointState onto ``joint_names`` **by name** -> ``(float64 [D], "")``.

    Accepted: any joint order, extra joints (ignored), empty ``velocity``/``effort``.
    Rejected with a reason (``(None, reason)``): ``len(position) != len(name)``, a
    ``velocity``/``effort`` array that is neither empty nor ``len(name)`` long, duplicate
    names, a required joint missing, a non-finite position of a required joint.
    Never raises on a malformed message (joint_trajectory_controller's rules, plus finiteness).
    """
    try:
        names = list(msg.name)
        position = np.asarray(msg.position, dtype=np.float64)  # [N]
        n = len(names)
        if position.shape != (n,):
            return None, f"ragged JointState: {n} names but {position.size} positions"
        for field in ("velocity", "effort"):
            size = len(getattr(msg, field))
            if size not in (0, n):
                return None, f"ragged JointState: {n} names but {size} {field} values"
        index = {name: i for i, name in enumerate(names)}
        if len(index) != n:
            return None, "JointState has duplicate joint names"
        missing = [j for j in joint_names if j not in index]
        if missing:
            return None, f"JointState lacks required joint(s) {missing}"
        positions = position[[index[j] for j in joint_names]]  # [D], model order
        if not np.all(np.isfinite(positions)):
            bad = [j for j, p in zip(joint_names, positions) if not math.isfinite(p)]
            return None, f"non-finite position for joint(s) {bad}"
        return positions, ""
    except Exception as exc:  # a malformed message must never crash the node
        return None, f"unreadable JointState: {type(exc).__name__}: {exc}"


# --------------------------------------------------------------------------- images


def _check_size(array: np.ndarray, expected_size: Optional[Tuple[int, int]]) -> str:
    if expected_size is not None and tuple(array.shape[:2]) != tuple(expected_size):
        return (f"image is {array.shape[0]}x{array.shape[1]} (HxW) but the model expects "
                f"{expected_size[0]}x{expected_size[1]}")
    return ""


def image_to_array(
    msg: Image, expected_size: Optional[Tuple[int, int]] = None
) -> Tuple[Optional[np.ndarray], str]:
    """``sensor_msgs/Image`` -> ``(uint8 [H, W, 3] RGB, "")`` or ``(None, reason)``.

    Supports rgb8, bgr8, rgba8, bgra8 (alpha dropped) and mono8 (replicated to 3 channels).
    Honours ``step`` (row stride >= width·channels, extra bytes per row are padding);
    ``is_bigendian`` is irrelevant for 8-bit encodings. ``expected_size`` is ``(H, W)``.
    The returned array is a fresh contiguous copy (the message buffer may be reused).
    """
    try:
        encoding = str(msg.encoding).lower()
        if encoding not in _ENCODINGS:
            return None, (f"unsupported image encoding {msg.encoding!r} "
                          f"(supported: {', '.join(SUPPORTED_ENCODINGS)})")
        channels, rgb_index = _ENCODINGS[encoding]
        height, width, step = int(msg.height), int(msg.width), int(msg.step)
        if height <= 0 or width <= 0:
            return None, f"empty image {height}x{width}"
        if step < width * channels:
            return None, f"image step {step} < width*channels = {width * channels}"
        data = np.frombuffer(msg.data, dtype=np.uint8)  # [step*H] raw bytes
        if data.size != step * height:
            return None, f"image data has {data.size} bytes, expected step*height = {step * height}"
        rows = data.reshape(height, step)[:, : width * channels]  # [H, W*C], padding cut
        pixels = rows.reshape(height, width, channels)  # [H, W, C]
        rgb = np.ascontiguousarray(pixels[:, :, list(rgb_index)])  # [H, W, 3] RGB copy
        reason = _check_size(rgb, expected_size)
        return (None, reason) if reason else (rgb, "")
    except Exception as exc:
        return None, f"unreadable Image: {type(exc).__name__}: {exc}"


def compressed_image_to_array(
    msg: CompressedImage, expected_size: Optional[Tuple[int, int]] = None
) -> Tuple[Optional[np.ndarray], str]:
    """``sensor_msgs/CompressedImage`` (JPEG/PNG) -> ``(uint8 [H, W, 3] RGB, "")`` or reason.

    Decoded with ``cv2.imdecode`` (format detected from the bytes, ``msg.format`` is only
    informational); grey images come back as 3 equal channels.
    """
    try:
        import cv2

        data = np.frombuffer(msg.data, dtype=np.uint8)  # [nbytes]
        if data.size == 0:
            return None, "empty CompressedImage"
        bgr = cv2.imdecode(data, cv2.IMREAD_COLOR)  # [H, W, 3] BGR or None
        if bgr is None or bgr.ndim != 3 or bgr.shape[2] != 3:
            return None, f"CompressedImage ({msg.format!r}, {data.size} bytes) failed to decode"
        rgb = np.ascontiguousarray(bgr[:, :, ::-1])  # [H, W, 3] RGB
        reason = _check_size(rgb, expected_size)
        return (None, reason) if reason else (rgb, "")
    except Exception as exc:
        return None, f"unreadable CompressedImage: {type(exc).__name__}: {exc}"


def array_to_image_msg(array: np.ndarray, encoding: str = "rgb8",
                       stamp: Optional[Time] = None, frame_id: str = "") -> Image:
    """``uint8 [H, W, 3]`` RGB (or ``[H, W]`` grey for mono8) -> ``sensor_msgs/Image``.

    ``encoding`` picks the wire layout (rgb8, bgr8, rgba8, bgra8, mono8); the input is
    always RGB (alpha written as 255). Rows are packed (``step = W·channels``).
    """
    if encoding not in _ENCODINGS:
        raise ValueError(f"unsupported encoding {encoding!r}")
    array = np.asarray(array)
    if array.dtype != np.uint8:
        raise ValueError(f"image must be uint8, got {array.dtype}")
    channels, _ = _ENCODINGS[encoding]
    if encoding == "mono8":
        if array.ndim != 2:
            raise ValueError(f"mono8 needs a [H, W] array, got shape {array.shape}")
        pixels = array  # [H, W]
    else:
        if array.ndim != 3 or array.shape[2] != 3:
            raise ValueError(f"{encoding} needs an RGB [H, W, 3] array, got shape {array.shape}")
        pixels = array[:, :, ::-1] if encoding.startswith("bgr") else array  # [H, W, 3]
        if channels == 4:
            alpha = np.full(array.shape[:2] + (1,), 255, dtype=np.uint8)  # [H, W, 1]
            pixels = np.concatenate([pixels, alpha], axis=2)  # [H, W, 4]
    height, width = array.shape[:2]
    msg = Image(height=height, width=width, encoding=encoding, is_bigendian=0,
                step=width * channels)
    msg.data = np.ascontiguousarray(pixels).tobytes()
    if stamp is not None:
        msg.header.stamp = stamp
    msg.header.frame_id = frame_id
    return msg


def array_to_compressed_msg(array: np.ndarray, fmt: str = "png", quality: int = 90,
                            stamp: Optional[Time] = None,
                            frame_id: str = "") -> CompressedImage:
    """``uint8 [H, W, 3]`` RGB -> ``sensor_msgs/CompressedImage`` (``fmt`` png or jpeg)."""
    import cv2

    array = np.asarray(array)
    if array.dtype != np.uint8 or array.ndim != 3 or array.shape[2] != 3:
        raise ValueError(f"need a uint8 RGB [H, W, 3] array, got {array.dtype} {array.shape}")
    fmt = fmt.lower()
    if fmt == "png":
        ext, params = ".png", []
    elif fmt in ("jpeg", "jpg"):
        ext, params, fmt = ".jpg", [cv2.IMWRITE_JPEG_QUALITY, int(quality)], "jpeg"
    else:
        raise ValueError(f"unsupported compressed format {fmt!r} (png or jpeg)")
    ok, encoded = cv2.imencode(ext, np.ascontiguousarray(array[:, :, ::-1]), params)
    if not ok:
        raise ValueError(f"cv2.imencode failed for {fmt}")
    msg = CompressedImage(format=fmt)
    msg.data = encoded.tobytes()
    if stamp is not None:
        msg.header.stamp = stamp
    msg.header.frame_id = frame_id
    return msg


# --------------------------------------------------------------------------- commands


def _finite_matrix(name: str, values, shape: Tuple[int, ...]) -> np.ndarray:
    array = np.asarray(values, dtype=np.float64)
    if array.shape != shape:
        raise ValueError(f"{name} must have shape {shape}, got {array.shape}")
    if not np.all(np.isfinite(array)):
        raise ValueError(f"{name} contains non-finite values; refusing to publish")
    return array


def make_joint_trajectory(
    joint_names: Sequence[str],
    positions,
    dt: float,
    velocities=None,
    stamp_zero: bool = True,
    stamp: Optional[Time] = None,
    start_offset_steps: float = 1.0,
) -> JointTrajectory:
    """Build a ``trajectory_msgs/JointTrajectory`` for joint_trajectory_controller.

    positions: ``[K, D]`` (D = len(joint_names)); velocities: optional ``[K, D]`` (with
    them the controller interpolates cubically, without them linearly).
    Point k gets ``time_from_start = (k + start_offset_steps) · dt``, strictly increasing.
    The default offset 1 means: the first row is the target reached one control period
    after the header stamp (row 0 of what is passed is the *next* action, never "now",
    which would ask the controller for an instantaneous jump).
    ``stamp_zero=True`` publishes ``header.stamp = 0`` ("start on receipt",
    ros2_control convention); otherwise ``stamp`` (e.g. now) is required.
    Raises ValueError on non-finite input, a shape mismatch, dt <= 0 or bad names.
    """
    _check_joint_names(joint_names)
    if isinstance(dt, bool) or not isinstance(dt, numbers.Real) or not (
            math.isfinite(dt) and dt >= 1e-6):
        raise ValueError(f"dt must be finite and >= 1e-6 s, got {dt!r}")
    if not (isinstance(start_offset_steps, numbers.Real) and math.isfinite(start_offset_steps)
            and start_offset_steps >= 0.0):
        raise ValueError(f"start_offset_steps must be finite and >= 0, got {start_offset_steps!r}")
    array = np.asarray(positions, dtype=np.float64)
    if array.ndim != 2 or array.shape[0] < 1:
        raise ValueError(f"positions must be [K>=1, D], got shape {array.shape}")
    shape = (array.shape[0], len(joint_names))
    pos = _finite_matrix("positions", array, shape)  # [K, D]
    vel = None if velocities is None else _finite_matrix("velocities", velocities, shape)
    if not stamp_zero and stamp is None:
        raise ValueError("stamp_zero=False needs an explicit stamp")

    msg = JointTrajectory(joint_names=list(joint_names))
    if not stamp_zero:
        msg.header.stamp = stamp
    points = []
    for k in range(pos.shape[0]):
        point = JointTrajectoryPoint(positions=pos[k].tolist())
        if vel is not None:
            point.velocities = vel[k].tolist()
        point.time_from_start = seconds_to_duration((k + start_offset_steps) * dt)
        points.append(point)
    msg.points = points
    return msg


def make_float64_array(positions) -> Float64MultiArray:
    """``[D]`` joint targets (model order) -> ``std_msgs/Float64MultiArray`` for
    forward_command_controller. Raises ValueError on non-finite or non-1-D input."""
    array = np.asarray(positions, dtype=np.float64)
    if array.ndim != 1 or array.size == 0:
        raise ValueError(f"positions must be a non-empty [D] vector, got shape {array.shape}")
    array = _finite_matrix("positions", array, array.shape)
    return Float64MultiArray(data=array.tolist())
