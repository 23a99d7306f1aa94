"""Hostile messages for the fuzz test (test_fuzz_node.py; not a test module itself).

Every bad input of shared/design/reliability.md that arrives over a topic, as a factory
``make(rng, good, now_s) -> message``: ``good`` is a healthy message of the same kind
(the robot's current JointState, or a valid frame), ``now_s`` the publisher's clock.
Each table maps a kind name to ``(factory, expected)`` where ``expected`` is what the
node must do with it: ``"rejected"`` (counted with a reason, never used) or
``"accepted"`` (valid after all: reordered / extra joints, fitted frame sizes, ...).
"""
from __future__ import annotations

import math
from typing import Callable, Dict, Tuple

import numpy as np
from sensor_msgs.msg import CompressedImage, Image, JointState

from genpolicy_ros.ros import conversions as conv

Factory = Callable[[np.random.Generator, object, float], object]


def _stamp(msg, seconds: float):
    seconds = max(0.0, seconds)
    msg.header.stamp.sec = int(seconds)
    msg.header.stamp.nanosec = int(round((seconds - int(seconds)) * 1e9)) % 1_000_000_000
    return msg


def _js(good: JointState, names, positions, **fields) -> JointState:
    msg = JointState(name=list(names), position=[float(p) for p in positions], **fields)
    msg.header.stamp = good.header.stamp
    return msg


def _arm(good: JointState, values) -> JointState:
    """``good`` with the first two (arm) positions replaced."""
    return _js(good, good.name, [*values, *list(good.position)[2:]])


# --------------------------------------------------------------------------- joint states
def _nan_required(rng, good, now):
    return _arm(good, [math.nan, good.position[1]])


def _inf_required(rng, good, now):
    return _arm(good, [good.position[0], rng.choice([math.inf, -math.inf])])


def _nan_extra_joint(rng, good, now):  # a NaN on a joint the model does not use: harmless
    return _js(good, [*good.name, "gripper"], [*good.position, math.nan])


def _reordered(rng, good, now):
    order = rng.permutation(len(good.name))
    return _js(good, [good.name[i] for i in order], [good.position[i] for i in order])


def _extra_joints(rng, good, now):
    extra = [f"extra_{i}" for i in range(int(rng.integers(1, 30)))]
    return _js(good, [*good.name, *extra], [*good.position, *rng.normal(size=len(extra))])


def _missing_joint(rng, good, now):
    drop = rng.choice(["shoulder", "elbow"])
    keep = [i for i, n in enumerate(good.name) if n != drop]
    return _js(good, [good.name[i] for i in keep], [good.position[i] for i in keep])


def _ragged_position(rng, good, now):
    return _js(good, good.name, list(good.position)[:-1])


def _ragged_velocity(rng, good, now):
    return _js(good, good.name, good.position, velocity=[1.0] * int(rng.integers(1, len(good.name))))


def _ragged_effort(rng, good, now):
    return _js(good, good.name, good.position, effort=[0.0] * (len(good.name) + 3))


def _duplicate_names(rng, good, now):
    return _js(good, [*good.name, good.name[0]], [*good.position, 0.5])


def _empty(rng, good, now):
    return _js(good, [], [])


def _random_names(rng, good, now):
    n = int(rng.integers(0, 500))
    names = [f"q{k}" for k in rng.integers(0, 1000, size=n).tolist()]  # duplicates likely
    return _js(good, names, rng.normal(size=n) * 1e3)


def _stamp_zero(rng, good, now):
    return _stamp(_js(good, good.name, good.position), 0.0)


def _stamp_negative(rng, good, now):
    msg = _js(good, good.name, good.position)
    msg.header.stamp.sec = -int(rng.integers(1, 2**31 - 1))
    return msg


def _stamp_future(rng, good, now):
    return _stamp(_js(good, good.name, good.position), now + float(rng.choice([2.0, 60.0, 1e6])))


def _stamp_nanosec_overflow(rng, good, now):  # nanosec >= 1e9: 4.29 s in the future
    msg = _js(good, good.name, good.position)
    msg.header.stamp.sec = int(now)
    msg.header.stamp.nanosec = 4_294_967_295
    return msg


def _stamp_far_past_far_away(rng, good, now):  # issue 9 §1: one stale message far away
    return _stamp(_arm(good, rng.uniform(-2.4, 2.4, size=2)), now - float(rng.choice([3600.0, 1e6])))


def _stamp_epoch(rng, good, now):
    return _stamp(_arm(good, rng.uniform(-2.4, 2.4, size=2)), 1.0)


def _stamp_backwards(rng, good, now):
    return _stamp(_arm(good, np.asarray(good.position[:2]) + rng.uniform(-0.5, 0.5, size=2)),
                  now - float(rng.uniform(0.05, 0.3)))


def _huge(rng, good, now):
    return _arm(good, rng.choice([1e6, -1e6, 1e308, -1e308, 3.4e38], size=2))


def _bogus_plausible(rng, good, now):  # inside the limits, far from the commanded path
    return _arm(good, np.clip(np.asarray(good.position[:2]) + rng.choice([-0.9, 0.9], size=2), -2.4, 2.4))


JOINT_STATE_KINDS: Dict[str, Tuple[Factory, str]] = {
    "nan_position": (_nan_required, "rejected"),
    "inf_position": (_inf_required, "rejected"),
    "nan_on_unused_joint": (_nan_extra_joint, "accepted"),
    "reordered": (_reordered, "accepted"),
    "extra_joints": (_extra_joints, "accepted"),
    "missing_joint": (_missing_joint, "rejected"),
    "ragged_position": (_ragged_position, "rejected"),
    "ragged_velocity": (_ragged_velocity, "rejected"),
    "ragged_effort": (_ragged_effort, "rejected"),
    "duplicate_names": (_duplicate_names, "rejected"),
    "empty": (_empty, "rejected"),
    "random_names": (_random_names, "rejected"),
    "stamp_zero": (_stamp_zero, "rejected"),
    "stamp_negative": (_stamp_negative, "rejected"),
    "stamp_future": (_stamp_future, "rejected"),
    "stamp_nanosec_overflow": (_stamp_nanosec_overflow, "rejected"),
    "stamp_far_past_far_away": (_stamp_far_past_far_away, "rejected"),
    "stamp_epoch": (_stamp_epoch, "rejected"),
    "stamp_backwards": (_stamp_backwards, "rejected"),
    "huge_values": (_huge, "rejected"),
    # Accepted as an observation, then the tracking check holds (ERROR) until the healthy
    # robot's next consistent measurements: never a jump toward it.
    "bogus_plausible_position": (_bogus_plausible, "accepted"),
}


# --------------------------------------------------------------------------- raw images
def _frame(rng, size) -> np.ndarray:
    return rng.integers(0, 256, size=(*size, 3), dtype=np.uint8)  # [H, W, 3] RGB


def _raw(rng, stamp, size, **overrides) -> Image:
    msg = conv.array_to_image_msg(_frame(rng, size), "rgb8")
    msg.header.stamp = stamp
    for key, value in overrides.items():
        setattr(msg, key, value)
    return msg


def _wrong_encoding(rng, stamp, size):
    return _raw(rng, stamp, size, encoding=str(rng.choice(["32FC1", "16UC1", "yuv422", "", "RGB8 ", "bayer_rggb8"])))


def _other_size(rng, stamp, size):  # fitted by image_resize (auto: the model's preprocessing)
    h, w = int(rng.integers(8, 200)), int(rng.integers(8, 200))
    return _raw(rng, stamp, (h, w))


def _step_too_small(rng, stamp, size):
    return _raw(rng, stamp, size, step=size[1] * 3 - int(rng.integers(1, 10)))


def _step_too_large(rng, stamp, size):  # step claims padding the data does not have
    return _raw(rng, stamp, size, step=size[1] * 3 + 16)


def _zero_size(rng, stamp, size):
    return _raw(rng, stamp, size, height=0, width=int(rng.choice([0, size[1]])))


def _huge_header(rng, stamp, size):  # dimensions promise gigabytes, the data is tiny
    return _raw(rng, stamp, size, height=65535, width=65535, step=65535 * 3)


def _truncated_data(rng, stamp, size):
    msg = _raw(rng, stamp, size)
    msg.data = bytes(msg.data)[: int(rng.integers(0, len(msg.data)))]
    return msg


def _raw_stamp_zero(rng, stamp, size):
    msg = _raw(rng, stamp, size)
    msg.header.stamp.sec, msg.header.stamp.nanosec = 0, 0
    return msg


def _raw_stamp_future(rng, stamp, size):
    msg = _raw(rng, stamp, size)
    msg.header.stamp.sec += 30
    return msg


def _raw_stamp_backwards(rng, stamp, size):
    msg = _raw(rng, stamp, size)
    msg.header.stamp.sec -= 1
    return msg


RAW_IMAGE_KINDS: Dict[str, Tuple[Factory, str]] = {
    "wrong_encoding": (_wrong_encoding, "rejected"),
    "other_size": (_other_size, "accepted"),
    "step_too_small": (_step_too_small, "rejected"),
    "step_too_large": (_step_too_large, "rejected"),
    "zero_size": (_zero_size, "rejected"),
    "huge_header": (_huge_header, "rejected"),
    "truncated_data": (_truncated_data, "rejected"),
    "stamp_zero": (_raw_stamp_zero, "rejected"),
    "stamp_future": (_raw_stamp_future, "rejected"),
    "stamp_backwards": (_raw_stamp_backwards, "rejected"),
}


# --------------------------------------------------------------------------- compressed images
def _compressed(stamp, data: bytes, fmt: str = "png") -> CompressedImage:
    msg = CompressedImage(format=fmt)
    msg.header.stamp = stamp
    msg.data = data
    return msg


def _random_bytes(rng, stamp, size):
    return _compressed(stamp, bytes(rng.integers(0, 256, size=int(rng.integers(1, 4000)), dtype=np.uint8)),
                       str(rng.choice(["png", "jpeg", "", "rgb8; jpeg compressed bgr8"])))


def _png_header_then_garbage(rng, stamp, size):
    head = b"\x89PNG\r\n\x1a\n"
    return _compressed(stamp, head + bytes(rng.integers(0, 256, size=200, dtype=np.uint8)))


def _empty_compressed(rng, stamp, size):
    return _compressed(stamp, b"")


def _truncated_png(rng, stamp, size):
    data = conv.array_to_compressed_msg(_frame(rng, size), "png").data
    return _compressed(stamp, bytes(data)[: max(1, len(data) // 2)])


def _other_size_jpeg(rng, stamp, size):  # decodes fine; fitted to the model's size
    msg = conv.array_to_compressed_msg(_frame(rng, (int(rng.integers(8, 120)), int(rng.integers(8, 120)))), "jpeg")
    msg.header.stamp = stamp
    return msg


COMPRESSED_IMAGE_KINDS: Dict[str, Tuple[Factory, str]] = {
    "random_bytes": (_random_bytes, "rejected"),
    "png_header_then_garbage": (_png_header_then_garbage, "rejected"),
    "empty": (_empty_compressed, "rejected"),
    "truncated_png": (_truncated_png, "rejected"),
    "other_size_jpeg": (_other_size_jpeg, "accepted"),
}
