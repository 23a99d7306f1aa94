"""Policy node with a camera model over real DDS: frames are converted, checked and
rejected with a reason (reliability row 6); raw and compressed transports.

The model sees one camera ``overhead`` (64x64): the node subscribes ``camera/image_raw``
and ``camera/image_raw/compressed`` and uses whichever delivers (the other is ignored
until the used one is silent for ``observation_timeout_s``).
"""
import ast
import time

import numpy as np
import pytest

pytest.importorskip("rclpy")
pytest.importorskip("cv2")
pytestmark = pytest.mark.ros

from rclpy.parameter import Parameter  # noqa: E402
from sensor_msgs.msg import CompressedImage, Image  # noqa: E402

from genpolicy_ros.ros import conversions as conv  # noqa: E402
from genpolicy_ros.ros.policy_node import PolicyNode  # noqa: E402
from genpolicy_ros.runtime.rate_loop import RateLoop  # noqa: E402

import policy_node_harness as H  # noqa: E402  (test/ros is on pytest's pythonpath)

DOMAIN_ID = 73
TIMEOUT_S = 0.3
SIZE = (64, 64)


class Camera:
    """Publishes frames at 20 Hz stamped on the robot's clock; ``make`` picks the message."""

    def __init__(self, robot):
        self.robot = robot
        self.raw = robot.node.create_publisher(Image, "camera/image_raw", H.sensor_qos())
        self.compressed = robot.node.create_publisher(CompressedImage, "camera/image_raw/compressed",
                                                      H.sensor_qos())
        self.rng = np.random.default_rng(0)
        self.make = self.good_raw
        self.loop = RateLoop(20.0, self._tick, name="fake_camera")

    def frame(self, size=SIZE) -> np.ndarray:
        return self.rng.integers(0, 256, size=(*size, 3), dtype=np.uint8)  # [H, W, 3] RGB

    def stamp(self):
        return self.robot.node.get_clock().now().to_msg()

    def good_raw(self):
        return self.raw, conv.array_to_image_msg(self.frame(), "rgb8", stamp=self.stamp())

    def _tick(self, tick):
        made = self.make()
        if made is not None:
            pub, msg = made
            pub.publish(msg)


@pytest.fixture(scope="module")
def env(tmp_path_factory):
    model = H.make_model_dir(tmp_path_factory.mktemp("model") / "camera", cameras=("overhead",), image_size=SIZE)
    harness = H.RosHarness(DOMAIN_ID)
    node = PolicyNode(context=harness.context, diagnostics_period_s=0.2, parameter_overrides=[
        Parameter("model_path", value=model), Parameter("control_rate_hz", value=100.0),
        Parameter("backend", value="torch"), Parameter("device", value="cpu"),
        Parameter("observation_timeout_s", value=TIMEOUT_S)])
    robot = harness.start(node)
    harness.camera = Camera(robot)
    assert robot.transition(H.CONFIGURE) and robot.transition(H.ACTIVATE)
    yield harness
    harness.camera.loop.stop()
    harness.close()


def _rejections(robot, source):
    diag = robot.latest_diag()
    return ast.literal_eval(diag["rejected_by_source"]).get(source, 0), diag


def test_joint_states_alone_publish_nothing_until_camera_frames_arrive(env):
    robot, camera = env.robot, env.camera
    robot.start()
    time.sleep(0.8)
    assert robot.n_commands() == 0, "commands published without the camera observation"
    camera.loop.start()
    assert H.wait_for(lambda: robot.n_commands() > 0, 15.0), "no commands with joint states + camera frames"
    diag = robot.latest_diag()
    assert int(diag["chunks_total"]) > 0 and diag["generation_errors"] == "0", diag


@pytest.mark.parametrize("bad, reason", [
    ("encoding", "unsupported image encoding"),
    ("size", "model expects 64x64"),
])
def test_bad_raw_frames_are_rejected_with_a_reason_and_the_node_holds(env, bad, reason):
    robot, camera = env.robot, env.camera
    before, _ = _rejections(robot, "camera/overhead/raw")
    if bad == "size":  # the default (auto = the model's resize) would fit the frame: refuse instead
        assert env.node.set_parameters([Parameter("image_resize", value="reject")])[0].successful

    def make():
        if bad == "encoding":
            msg = conv.array_to_image_msg(camera.frame(), "rgb8", stamp=camera.stamp())
            msg.encoding = "32FC1"
        else:
            msg = conv.array_to_image_msg(camera.frame((48, 48)), "rgb8", stamp=camera.stamp())
        return camera.raw, msg

    camera.make = make
    time.sleep(TIMEOUT_S + 0.4)
    # /diagnostics comes at 1 Hz: wait for a report that has counted the bad frames.
    H.wait_for(lambda: _rejections(robot, "camera/overhead/raw")[0] - before >= 8, 5.0)
    after, diag = _rejections(robot, "camera/overhead/raw")
    assert after - before >= 8, f"only {after - before} bad frames rejected"
    assert reason in diag["last_rejected_reason"], diag["last_rejected_reason"]
    held = robot.next_commands(10)
    assert np.ptp(held, axis=0).max() == 0.0, "without valid frames the node must hold"
    camera.make = camera.good_raw
    env.node.set_parameters([Parameter("image_resize", value="auto")])
    chunks = int(diag["chunks_total"])
    assert H.wait_for(lambda: int(robot.latest_diag()["chunks_total"]) > chunks + 1, 10.0), \
        "generation did not resume with good frames"


@pytest.mark.parametrize("mode", ["auto", "center_crop_resize"])
def test_a_real_camera_resolution_is_fitted_to_the_model(env, mode):
    """Issue 9 §5: a 480x640 camera feeds a 64x64 model (auto = the model's recorded
    preprocessing, here resize); frames are accepted and generation goes on."""
    robot, camera = env.robot, env.camera
    assert env.node.set_parameters([Parameter("image_resize", value=mode)])[0].successful
    before, _ = _rejections(robot, "camera/overhead/raw")
    camera.make = lambda: (camera.raw, conv.array_to_image_msg(camera.frame((480, 640)), "rgb8",
                                                                stamp=camera.stamp()))
    time.sleep(TIMEOUT_S + 0.4)
    chunks = int(robot.latest_diag()["chunks_total"])
    assert H.wait_for(lambda: int(robot.latest_diag()["chunks_total"]) > chunks + 1, 10.0), \
        "no chunk from fitted 480x640 frames"
    after, _ = _rejections(robot, "camera/overhead/raw")
    assert after == before, "fitted frames must not be rejected"
    camera.make = camera.good_raw
    env.node.set_parameters([Parameter("image_resize", value="auto")])


def test_corrupt_compressed_frames_are_rejected_and_good_ones_used(env):
    robot, camera = env.robot, env.camera
    camera.make = lambda: None  # raw goes silent: the compressed transport takes over
    time.sleep(TIMEOUT_S + 0.2)
    before, _ = _rejections(robot, "camera/overhead/compressed")

    def corrupt():
        msg = CompressedImage(format="png")
        msg.header.stamp = camera.stamp()
        msg.data = bytes(camera.rng.integers(0, 256, size=500, dtype=np.uint8))
        return camera.compressed, msg

    camera.make = corrupt
    time.sleep(0.6)
    H.wait_for(lambda: _rejections(robot, "camera/overhead/compressed")[0] - before >= 5, 5.0)
    after, diag = _rejections(robot, "camera/overhead/compressed")
    assert after - before >= 5, f"only {after - before} corrupt frames rejected"
    assert "failed to decode" in diag["last_rejected_reason"], diag["last_rejected_reason"]
    chunks = int(diag["chunks_total"])
    camera.make = lambda: (camera.compressed, conv.array_to_compressed_msg(camera.frame(), "png",
                                                                             stamp=camera.stamp()))
    assert H.wait_for(lambda: int(robot.latest_diag()["chunks_total"]) > chunks + 1, 10.0), \
        f"generation did not resume with valid compressed frames: {robot.latest_diag()}"
