"""Message conversion at the ROS edge, on real rclpy message classes (reliability rows 3, 6, 17)."""
import math

import numpy as np
import pytest

pytest.importorskip("sensor_msgs.msg")
cv2 = pytest.importorskip("cv2")

from builtin_interfaces.msg import Time  # noqa: E402
from sensor_msgs.msg import CompressedImage, Image, JointState  # noqa: E402

from genpolicy_ros.ros import conversions as cv  # noqa: E402

JOINTS = ["shoulder", "elbow", "wrist"]


def _js(names, positions, velocity=(), effort=()):
    return JointState(name=list(names), position=[float(p) for p in positions],
                      velocity=[float(v) for v in velocity], effort=[float(e) for e in effort])


# ----------------------------------------------------------------------------- time

def test_stamp_round_trip_and_carry():
    for t in (0.0, 1.5, 1234.000000001, 1.9999999999):
        stamp = cv.seconds_to_stamp(t)
        assert 0 <= stamp.nanosec < 1_000_000_000
        assert abs(cv.stamp_to_seconds(stamp) - t) < 1e-9, (t, stamp)
    assert cv.seconds_to_stamp(1.9999999999) == Time(sec=2, nanosec=0)
    for bad in (-0.1, math.nan, math.inf):
        with pytest.raises(ValueError):
            cv.seconds_to_stamp(bad)


# ----------------------------------------------------------------------------- joints

def test_joint_state_reordered_and_extra_joints_map_by_name():
    msg = _js(["gripper", "wrist", "shoulder", "elbow"], [9.0, 3.0, 1.0, 2.0])
    positions, reason = cv.joint_state_to_positions(msg, JOINTS)
    assert reason == ""
    np.testing.assert_array_equal(positions, [1.0, 2.0, 3.0])
    assert positions.dtype == np.float64


def test_joint_state_velocities_optional_but_not_ragged():
    ok, _ = cv.joint_state_to_positions(_js(JOINTS, [1, 2, 3], velocity=[0, 0, 0]), JOINTS)
    assert ok is not None
    bad, reason = cv.joint_state_to_positions(_js(JOINTS, [1, 2, 3], velocity=[0, 0]), JOINTS)
    assert bad is None and "velocity" in reason
    bad, reason = cv.joint_state_to_positions(_js(JOINTS, [1, 2, 3], effort=[0]), JOINTS)
    assert bad is None and "effort" in reason


@pytest.mark.parametrize("msg, word", [
    (_js(["shoulder", "elbow"], [1.0, 2.0]), "wrist"),                       # missing joint
    (_js(JOINTS, [1.0, 2.0]), "ragged"),                                     # len(pos) != len(name)
    (_js(JOINTS + ["x"], [1.0, 2.0, 3.0, 4.0, 5.0]), "ragged"),
    (_js(["shoulder", "elbow", "wrist", "elbow"], [1, 2, 3, 4]), "duplicate"),
    (_js(JOINTS, [1.0, math.nan, 3.0]), "elbow"),                            # NaN names the joint
    (_js(JOINTS, [math.inf, 2.0, 3.0]), "non-finite"),
])
def test_joint_state_rejections_carry_reason(msg, word):
    positions, reason = cv.joint_state_to_positions(msg, JOINTS)
    assert positions is None
    assert word in reason, reason


def test_non_finite_unused_joint_is_ignored():
    msg = _js(JOINTS + ["unused"], [1, 2, 3, math.nan])
    positions, reason = cv.joint_state_to_positions(msg, JOINTS)
    assert reason == "" and np.all(np.isfinite(positions))


# ----------------------------------------------------------------------------- images

def _rgb(h=4, w=5, seed=0):
    return np.random.default_rng(seed).integers(0, 256, size=(h, w, 3), dtype=np.uint8)


@pytest.mark.parametrize("encoding", ["rgb8", "bgr8", "rgba8", "bgra8"])
def test_color_encodings_round_trip(encoding):
    rgb = _rgb()
    out, reason = cv.image_to_array(cv.array_to_image_msg(rgb, encoding), expected_size=(4, 5))
    assert reason == ""
    assert out.dtype == np.uint8 and out.shape == (4, 5, 3)
    np.testing.assert_array_equal(out, rgb)


def test_bgr_known_pixel_becomes_rgb():
    # A pure-red pixel written by hand in BGR byte order: (B, G, R) = (0, 0, 255).
    msg = Image(height=1, width=2, encoding="bgr8", step=6)
    msg.data = bytes([0, 0, 255, 10, 20, 30])
    out, reason = cv.image_to_array(msg)
    assert reason == ""
    assert out[0, 0].tolist() == [255, 0, 0], out[0, 0]
    assert out[0, 1].tolist() == [30, 20, 10], out[0, 1]


def test_mono8_replicated_to_three_channels():
    grey = np.arange(12, dtype=np.uint8).reshape(3, 4)
    out, reason = cv.image_to_array(cv.array_to_image_msg(grey, "mono8"))
    assert reason == ""
    for c in range(3):
        np.testing.assert_array_equal(out[:, :, c], grey)


@pytest.mark.parametrize("encoding, channels", [("rgb8", 3), ("bgr8", 3), ("mono8", 1),
                                                ("rgba8", 4)])
def test_row_padding_is_honoured(encoding, channels):
    h, w, pad = 3, 5, 7
    rng = np.random.default_rng(1)
    pixels = rng.integers(0, 256, size=(h, w, channels), dtype=np.uint8)
    padding = np.full((h, pad), 0xEE, dtype=np.uint8)  # garbage bytes that must be skipped
    rows = np.concatenate([pixels.reshape(h, w * channels), padding], axis=1)
    msg = Image(height=h, width=w, encoding=encoding, step=w * channels + pad)
    msg.data = rows.tobytes()
    out, reason = cv.image_to_array(msg)
    assert reason == ""
    expected = {"rgb8": pixels, "bgr8": pixels[..., ::-1], "rgba8": pixels[..., :3],
                "mono8": np.repeat(pixels, 3, axis=2)}[encoding]
    np.testing.assert_array_equal(out, expected)


@pytest.mark.parametrize("mutate, word", [
    (lambda m: setattr(m, "encoding", "16UC1"), "encoding"),
    (lambda m: setattr(m, "encoding", "yuv422"), "encoding"),
    (lambda m: setattr(m, "data", bytes(len(m.data) - 1)), "bytes"),
    (lambda m: setattr(m, "step", 2), "step"),
    (lambda m: setattr(m, "height", 0), "empty"),
])
def test_bad_images_rejected_with_reason(mutate, word):
    msg = cv.array_to_image_msg(_rgb())
    mutate(msg)
    out, reason = cv.image_to_array(msg)
    assert out is None and word in reason, reason


def test_wrong_size_rejected():
    out, reason = cv.image_to_array(cv.array_to_image_msg(_rgb(4, 5)), expected_size=(96, 96))
    assert out is None and "96x96" in reason, reason


def test_compressed_png_is_lossless_and_jpeg_close():
    # smooth image so JPEG's error is small
    y, x = np.mgrid[0:32, 0:48]
    rgb = np.stack([x * 5, y * 7, (x + y) * 3], axis=2).astype(np.uint8)
    png, reason = cv.compressed_image_to_array(cv.array_to_compressed_msg(rgb, "png"))
    assert reason == ""
    np.testing.assert_array_equal(png, rgb)
    jpeg, reason = cv.compressed_image_to_array(cv.array_to_compressed_msg(rgb, "jpeg", 95))
    assert reason == ""
    err = np.abs(jpeg.astype(int) - rgb.astype(int)).mean()
    assert err < 3.0, f"JPEG q95 mean abs error {err:.2f}"
    # channel order survives: a red image stays red
    red = np.zeros((8, 8, 3), np.uint8)
    red[..., 0] = 255
    out, _ = cv.compressed_image_to_array(cv.array_to_compressed_msg(red, "png"))
    assert out[0, 0].tolist() == [255, 0, 0]


def test_corrupt_compressed_rejected():
    good = cv.array_to_compressed_msg(_rgb(16, 16), "png")
    cases = {
        "garbage": bytes(range(256)) * 4,
        "truncated": bytes(good.data)[:20],
        "empty": b"",
    }
    for label, data in cases.items():
        msg = CompressedImage(format="png")
        msg.data = data
        out, reason = cv.compressed_image_to_array(msg)
        assert out is None and reason, (label, reason)
    out, reason = cv.compressed_image_to_array(good, expected_size=(8, 8))
    assert out is None and "8x8" in reason


# ----------------------------------------------------------------------------- commands

def test_joint_trajectory_times_strictly_increasing_from_offset():
    positions = np.linspace(0, 1, 8 * 3).reshape(8, 3)
    msg = cv.make_joint_trajectory(JOINTS, positions, dt=0.02, velocities=np.zeros((8, 3)))
    assert list(msg.joint_names) == JOINTS
    assert msg.header.stamp.sec == 0 and msg.header.stamp.nanosec == 0
    times = [cv.stamp_to_seconds(p.time_from_start) for p in msg.points]
    assert all(b > a for a, b in zip(times, times[1:])), times
    np.testing.assert_allclose(times, 0.02 * np.arange(1, 9), atol=1e-9)
    np.testing.assert_array_equal(np.array([p.positions for p in msg.points]), positions)
    assert len(msg.points[0].velocities) == 3
    # offset 0 starts at 0; explicit stamp is used when stamp_zero is False
    msg0 = cv.make_joint_trajectory(JOINTS, positions, 0.01, stamp_zero=False,
                                    stamp=Time(sec=5, nanosec=7), start_offset_steps=0)
    assert cv.stamp_to_seconds(msg0.points[0].time_from_start) == 0.0
    assert msg0.header.stamp == Time(sec=5, nanosec=7)
    msg32 = cv.make_joint_trajectory(JOINTS, positions, np.float32(0.02))  # numpy scalars ok
    assert len(msg32.points) == 8


@pytest.mark.parametrize("kwargs", [
    dict(positions=[[0.0, math.nan, 0.0]], dt=0.02),
    dict(positions=[[0.0, 0.0, 0.0]], dt=0.02, velocities=[[math.inf, 0, 0]]),
    dict(positions=[[0.0, 0.0]], dt=0.02),              # wrong D
    dict(positions=[[0.0, 0.0, 0.0]], dt=0.0),           # dt must be > 0
    dict(positions=[[0.0, 0.0, 0.0]], dt=math.nan),
    dict(positions=np.zeros((0, 3)), dt=0.02),           # no points
])
def test_joint_trajectory_refuses_bad_input(kwargs):
    with pytest.raises(ValueError):
        cv.make_joint_trajectory(JOINTS, **kwargs)
    with pytest.raises(ValueError):
        cv.make_joint_trajectory(["a", "a", "b"], [[0.0, 0.0, 0.0]], 0.02)
    with pytest.raises(ValueError):
        cv.make_joint_trajectory(JOINTS, [[0.0, 0.0, 0.0]], 0.02, stamp_zero=False)


def test_float64_array():
    msg = cv.make_float64_array(np.array([0.5, -1.0, 2.0], dtype=np.float32))
    assert list(msg.data) == [0.5, -1.0, 2.0]
    for bad in ([0.0, math.nan], [math.inf], [], [[1.0, 2.0]]):
        with pytest.raises(ValueError):
            cv.make_float64_array(bad)


# ----------------------------------------------------------------------------- fuzz

def _random_joint_state(rng):
    pool = JOINTS + ["extra", "gripper", "", "elbow"]
    if rng.random() < 0.5:  # near-valid: all joints shuffled with extras, then maybe corrupted
        names = list(rng.permutation(JOINTS + ["extra", "gripper"][: int(rng.integers(0, 3))]))
    else:
        names = [pool[i] for i in rng.integers(0, len(pool), size=int(rng.integers(0, 7)))]
    n = len(names)
    m = max(0, n + int(rng.integers(-2, 3)) * int(rng.random() < 0.3))
    specials = np.array([math.nan, math.inf, -math.inf, 1e308, -0.0, 0.0])
    pos = rng.normal(size=m) * 10.0 ** rng.integers(-3, 300)
    mask = rng.random(m) < 0.15
    pos[mask] = specials[rng.integers(0, len(specials), size=int(mask.sum()))]
    vel = rng.normal(size=int(rng.choice([0, n, n + 1])))
    return JointState(name=names, position=pos.tolist(), velocity=vel.tolist())


def _random_image(rng):
    enc = ["rgb8", "bgr8", "mono8", "rgba8", "bgra8", "16UC1", "", "RGB8", "jpeg"][
        int(rng.integers(0, 9))]
    h, w = int(rng.integers(0, 6)), int(rng.integers(0, 6))
    step = max(0, w * int(rng.integers(0, 5)) + int(rng.integers(-2, 4)))
    length = max(0, step * h + int(rng.integers(-3, 4)) * int(rng.random() < 0.5))
    return Image(height=h, width=w, encoding=enc, step=step,
                 is_bigendian=int(rng.integers(0, 2)),
                 data=rng.integers(0, 256, size=length, dtype=np.uint8).tobytes())


def test_ten_thousand_random_messages_never_raise_nor_leak_non_finite():
    rng = np.random.default_rng(17)
    accepted_js = accepted_img = 0
    for _ in range(5000):
        positions, reason = cv.joint_state_to_positions(_random_joint_state(rng), JOINTS)
        if positions is None:
            assert reason
        else:
            accepted_js += 1
            assert reason == "" and positions.shape == (3,) and np.all(np.isfinite(positions))
        size = None if rng.random() < 0.5 else (int(rng.integers(1, 6)), int(rng.integers(1, 6)))
        image, reason = cv.image_to_array(_random_image(rng), expected_size=size)
        if image is None:
            assert reason
        else:
            accepted_img += 1
            assert image.dtype == np.uint8 and image.ndim == 3 and image.shape[2] == 3
            assert size is None or image.shape[:2] == size
    # the generators must exercise both outcomes, or the test proves nothing
    assert 200 < accepted_js < 4800, f"accepted {accepted_js}/5000 JointStates"
    assert 100 < accepted_img < 4800, f"accepted {accepted_img}/5000 Images"
